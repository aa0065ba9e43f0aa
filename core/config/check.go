package config

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/rawbytes"
	"github.com/knadh/koanf/v2"
)

// Warner is implemented by plugin configs that are valid but contain
// something the plugin ignores (a protocol name that names nothing, say).
// Warnings is pure; `weir validate` prints the warnings and `--strict`
// makes them errors; `weir run` logs them.
type Warner interface {
	Warnings() []string
}

// Files is implemented by plugin configs whose behaviour depends on the
// content of files (a WASM module, an RPC plugin binary): a hot reload
// replaces the stage when one of them changed, even if the config did not.
// Paths are resolved against baseDir.
type Files interface {
	Files(baseDir string) []string
}

// RawSource is implemented by source configs that can hand on raw records
// (undecoded IPFIX messages, ipfix.AppendRaw), e.g. source.ipfix with
// raw: true.
type RawSource interface {
	EmitsRaw() bool
}

// RawStage is implemented by processor and exporter configs that handle raw
// records (proxy stamps them, export.ipfix re-exports them, export.kafka
// ships them). Any other stage reads decoded fields, which raw records do
// not have.
type RawStage interface {
	HandlesRaw() bool
}

// Warnings returns every stage's warnings, each prefixed with its config
// path, and a warning for each stage that would see raw records without
// handling them.
func (c *Config) Warnings() []string {
	var out []string
	raw := ""
	for _, list := range [][]Stage{c.Pipeline.Sources, c.Pipeline.Processors, c.Pipeline.Exporters} {
		for _, s := range list {
			if w, ok := s.Config.(Warner); ok {
				for _, msg := range w.Warnings() {
					out = append(out, fmt.Sprintf("%s: %s", s.Path, msg))
				}
			}
			if r, ok := s.Config.(RawSource); ok && r.EmitsRaw() && raw == "" {
				raw = s.Path
			}
		}
	}
	if raw == "" {
		return out
	}
	for _, list := range [][]Stage{c.Pipeline.Processors, c.Pipeline.Exporters} {
		for _, s := range list {
			if r, ok := s.Config.(RawStage); !ok || !r.HandlesRaw() {
				out = append(out, fmt.Sprintf("%s: reads decoded fields, but %s hands on raw (undecoded) messages, which have none (decode them: raw: false)", s.Path, raw))
			}
		}
	}
	return out
}

// Runnable reports what `weir run` refuses before building anything: a
// pipeline without a source or without an exporter. (`weir bench` replaces
// both, so it does not call it.)
func (c *Config) Runnable() error {
	var errs []error
	if len(c.Pipeline.Sources) == 0 {
		errs = append(errs, errors.New("pipeline.sources: at least one source is required"))
	}
	if len(c.Pipeline.Exporters) == 0 {
		errs = append(errs, errors.New("pipeline.exporters: at least one exporter is required (export.jsonl with path \"-\" prints records)"))
	}
	return errors.Join(errs...)
}

// CheckRun is everything `weir run` checks before it starts: [Config.Runnable]
// and every stage's [Checker] (files that must exist, WASM modules and RPC
// plugins that must load). `weir validate` and a hot reload call it.
func (c *Config) CheckRun(ctx context.Context) error {
	return errors.Join(c.Runnable(), c.Check(ctx))
}

// ReadTelemetry reads only the telemetry section of the file at path (with
// WEIR_ overrides), so `weir reload` finds the admin address of a running
// Weir even when the file now holds a config that does not validate.
func ReadTelemetry(path string) (Telemetry, error) {
	t := Defaults().Telemetry
	data, err := os.ReadFile(path)
	if err != nil {
		return t, fmt.Errorf("read config: %w", err)
	}
	k := koanf.New(".")
	if err := k.Load(rawbytes.Provider(data), yaml.Parser()); err != nil {
		return t, fmt.Errorf("%s: parse yaml: %w", path, err)
	}
	if err := loadEnv(k, os.Environ()); err != nil {
		return t, err
	}
	sub, _ := k.Raw()["telemetry"].(map[string]any)
	if err := decode(map[string]any{"telemetry": sub}, &struct {
		Telemetry *Telemetry `koanf:"telemetry"`
	}{&t}, true); err != nil {
		return t, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}
