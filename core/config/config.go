// Package config loads Weir's YAML configuration (koanf v2), applies WEIR_
// environment overrides, and decodes each stage's plugin configuration
// strictly into the plugin's typed Config.
package config

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/confmap"
	"github.com/knadh/koanf/providers/rawbytes"
	"github.com/knadh/koanf/v2"

	"github.com/weir-flow/weir/core/plugin"
)

// EnvPrefix starts every environment override. WEIR_PIPELINE__BATCH__SIZE=512
// sets pipeline.batch.size: the prefix is dropped, the rest lower-cased, and
// "__" separates keys (single underscores stay, as in on_error). Variables
// without "__" (WEIR_CACHE, say) name no key path and are left alone.
const EnvPrefix = "WEIR_"

// Config is a whole Weir configuration file.
type Config struct {
	Log       Log       `koanf:"log"`
	Telemetry Telemetry `koanf:"telemetry"`
	Reload    Reload    `koanf:"reload"`
	Pipeline  Pipeline  `koanf:"pipeline"`

	// BaseDir is the directory relative plugin paths resolve against: the
	// config file's directory, or "" for the working directory.
	BaseDir string `koanf:"-"`
}

// Log configures Weir's own logs (log/slog, to stderr).
type Log struct {
	// Level is debug, info, warn or error. Default info.
	Level string `koanf:"level"`
	// Format is text or json. Default text.
	Format string `koanf:"format"`
	// ProgressInterval is how often an info line reports records in and
	// out of every stage. 0 turns it off. Default 60s.
	ProgressInterval time.Duration `koanf:"progress_interval"`
}

// Reload configures hot reload (SIGHUP and `weir reload` always reload).
type Reload struct {
	// Watch reloads when the config file changes. Default false.
	Watch bool `koanf:"watch"`
}

// Telemetry configures self-observability.
type Telemetry struct {
	// MetricsAddress is the admin HTTP listener, e.g. "127.0.0.1:9464":
	// Prometheus metrics at /metrics, /healthz, /readyz, a status page at
	// / and POST /-/reload (from loopback only). Empty disables it.
	MetricsAddress string `koanf:"metrics_address"`
	// Pprof serves net/http/pprof at /debug/pprof/ on MetricsAddress.
	// Default false.
	Pprof bool `koanf:"pprof"`
}

// Pipeline is the staged pipeline: sources → processors (in order) →
// exporters (fan-out).
type Pipeline struct {
	// Name labels the pipeline's metrics and logs. Default "main".
	Name  string `koanf:"name"`
	Batch Batch  `koanf:"batch"`
	Queue Queue  `koanf:"queue"`
	// Workers is how many goroutines run the processor chain; 0 means one
	// per CPU (GOMAXPROCS), or more to reach an out-of-process processor's
	// in_flight (plugin.Concurrent).
	Workers int `koanf:"workers"`

	Sources    []Stage `koanf:"-"`
	Processors []Stage `koanf:"-"`
	Exporters  []Stage `koanf:"-"`
}

// Batch sets how records are grouped.
type Batch struct {
	// Size is the records-per-batch target. Default 256.
	Size int `koanf:"size"`
	// Timeout is the longest a source holds a non-empty batch. Default 200ms.
	Timeout time.Duration `koanf:"timeout"`
}

// Queue sets the bounded queues between stages.
type Queue struct {
	// Size is the capacity, in batches, of the queue from sources to the
	// processors. Default 64.
	Size int `koanf:"size"`
	// ExporterSize is the capacity, in batches, of each exporter's own
	// queue. 0, the default, follows WhenFull (see ExporterCapacity): 64
	// where the queue blocks, 1024 where it drops.
	ExporterSize int `koanf:"exporter_size"`
	// WhenFull is what happens when an exporter's queue is full: "drop" (the
	// batch is dropped for that exporter only and counted, so a slow
	// exporter never stalls the others), "block" (backpressure to the
	// sources: a burst waits in their socket buffers and TCP windows, and
	// what overflows those is counted there), or "auto": block when the
	// pipeline has one exporter, which has no other exporter to stall, and
	// drop when it has several. Default auto.
	WhenFull string `koanf:"when_full"`
}

// Exporter queue capacities chosen by ExporterCapacity when ExporterSize
// is 0.
const (
	BlockingExporterQueue = 64
	DroppingExporterQueue = 1024
)

// Blocks reports whether a full exporter queue stalls the pipeline (block,
// or auto with one exporter) rather than dropping the batch for that
// exporter; exporters is how many the pipeline has.
func (q Queue) Blocks(exporters int) bool {
	return q.WhenFull == "block" || (q.WhenFull == "auto" && exporters == 1)
}

// ExporterCapacity is the capacity, in batches, of each exporter's queue
// in a pipeline with that many exporters: ExporterSize, or when it is 0,
// 64 where the queue blocks and 1024 where it drops. A blocking queue only
// needs to keep its exporter busy: a burst then waits in the sources'
// socket buffers, as received, instead of in batches the engine would have
// to allocate, and pay the GC for, exactly when the exporter falls behind.
// A dropping queue rides out an exporter's stall without dropping.
func (q Queue) ExporterCapacity(exporters int) int {
	switch {
	case q.ExporterSize > 0:
		return q.ExporterSize
	case q.Blocks(exporters):
		return BlockingExporterQueue
	}
	return DroppingExporterQueue
}

// Stage is one configured plugin instance.
type Stage struct {
	// ID is the plugin ID, e.g. "filter.protocol".
	ID string
	// Name is the optional `name:` of the entry; "" when not set.
	Name string
	// Label names the stage in metrics (stage="…") and logs: Name, or the
	// entry's position, e.g. "processors[0]".
	Label string
	// Path names the entry, e.g. "pipeline.processors[0].filter.protocol".
	Path string
	// Info is the registered plugin.
	Info plugin.Info
	// Config is the decoded, validated plugin configuration.
	Config plugin.Config
	// OnError is a processor's failure policy, plugin.FailOpen (default)
	// or plugin.FailClosed: the key on_error of any processor's settings,
	// which the engine applies and the plugin never sees.
	OnError string
}

// Defaults returns a configuration with every default set and no stages.
func Defaults() *Config {
	return &Config{
		Log: Log{Level: "info", Format: "text", ProgressInterval: time.Minute},
		Pipeline: Pipeline{
			Name:  "main",
			Batch: Batch{Size: 256, Timeout: 200 * time.Millisecond},
			Queue: Queue{Size: 64, WhenFull: "auto"},
		},
	}
}

// Bounds that keep a typo from becoming an out-of-memory crash: a batch
// is allocated whole, queues hold that many batches, and a config file is
// read whole (`-c /dev/zero`).
const (
	MaxBatchSize  = 1 << 16
	MaxQueueSize  = 1 << 16
	MaxConfigSize = 16 << 20
)

// LoadFile reads, decodes and validates the configuration at path, which
// must not exceed MaxConfigSize bytes.
func LoadFile(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxConfigSize+1))
	if err != nil {
		return nil, fmt.Errorf("read config %s: %w", path, err)
	}
	if len(data) > MaxConfigSize {
		return nil, fmt.Errorf("read config %s: larger than %d MiB", path, MaxConfigSize>>20)
	}
	cfg, err := Parse(data, os.Environ())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	cfg.BaseDir = filepath.Dir(path)
	return cfg, nil
}

// Parse decodes and validates a YAML configuration, applying the WEIR_
// overrides found in environ ("KEY=value" strings). The error joins every
// problem found, each naming its key.
func Parse(data []byte, environ []string) (*Config, error) {
	k := koanf.New(".")
	if err := k.Load(rawbytes.Provider(data), yaml.Parser()); err != nil {
		return nil, fmt.Errorf("parse yaml: %w", err)
	}
	if err := loadEnv(k, environ); err != nil {
		return nil, err
	}
	cfg := Defaults()
	var errs []error
	top := k.Raw()
	// Known top-level sections only.
	for key := range top {
		switch key {
		case "log", "telemetry", "reload", "pipeline":
		default:
			errs = append(errs, fmt.Errorf("%s: unknown key (want log, telemetry, reload or pipeline)", key))
		}
	}
	pipe, _ := top["pipeline"].(map[string]any)
	if top["pipeline"] != nil && pipe == nil {
		errs = append(errs, fmt.Errorf("pipeline: want a map, got %T", top["pipeline"]))
	}
	scalars := map[string]any{"log": top["log"], "telemetry": top["telemetry"], "reload": top["reload"]}
	stageLists := map[string]any{}
	pipeScalars := map[string]any{}
	for key, v := range pipe {
		switch key {
		case "sources", "processors", "exporters":
			stageLists[key] = v
		default:
			pipeScalars[key] = v
		}
	}
	scalars["pipeline"] = pipeScalars
	if err := decode(scalars, cfg, true); err != nil {
		errs = append(errs, err)
	}
	for _, list := range []struct {
		key   string
		stage plugin.Stage
		dst   *[]Stage
	}{
		{"sources", plugin.StageSource, &cfg.Pipeline.Sources},
		{"processors", plugin.StageProcessor, &cfg.Pipeline.Processors},
		{"exporters", plugin.StageExporter, &cfg.Pipeline.Exporters},
	} {
		stages, err := decodeStages("pipeline."+list.key, list.stage, stageLists[list.key])
		errs = append(errs, err)
		*list.dst = stages
	}
	errs = append(errs, cfg.Validate(), cfg.Pipeline.checkExcludes())
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return cfg, nil
}

func loadEnv(k *koanf.Koanf, environ []string) error {
	vals := map[string]any{}
	for _, kv := range environ {
		key, v, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(key, EnvPrefix) || !strings.Contains(key, "__") {
			continue
		}
		key = strings.ToLower(strings.TrimPrefix(key, EnvPrefix))
		vals[strings.ReplaceAll(key, "__", ".")] = v
	}
	if len(vals) == 0 {
		return nil
	}
	if err := k.Load(confmap.Provider(vals, "."), nil); err != nil {
		return fmt.Errorf("environment overrides: %w", err)
	}
	return nil
}

// decodeStages decodes a list of single-key maps {plugin-id: config}.
func decodeStages(path string, want plugin.Stage, raw any) ([]Stage, error) {
	if raw == nil {
		return nil, nil
	}
	items, ok := raw.([]any)
	if !ok {
		return nil, fmt.Errorf("%s: want a list of {plugin-id: config} entries, got %T", path, raw)
	}
	var (
		stages []Stage
		errs   []error
	)
	for i, item := range items {
		at := fmt.Sprintf("%s[%d]", path, i)
		label := strings.TrimPrefix(at, "pipeline.")
		m, ok := item.(map[string]any)
		var name string
		if ok {
			if raw, has := m["name"]; has {
				m = maps.Clone(m)
				delete(m, "name")
				var err error
				if name, err = stageName(raw); err != nil {
					errs = append(errs, fmt.Errorf("%s.name: %w", at, err))
					continue
				}
				label = name
			}
		}
		if !ok || len(m) != 1 {
			errs = append(errs, fmt.Errorf("%s: want one {plugin-id: config} entry (and an optional name), got %v", at, item))
			continue
		}
		for id, body := range m {
			at += "." + id
			info, ok := plugin.Lookup(id)
			if !ok {
				errs = append(errs, fmt.Errorf("%s: unknown plugin %q (known %s: %s)", at, id, want, strings.Join(plugin.IDs(want), ", ")))
				continue
			}
			if info.Stage() != want {
				errs = append(errs, fmt.Errorf("%s: plugin %q is a %s, not a %s", at, id, info.Stage(), want))
				continue
			}
			cfg := info.NewConfig()
			onError := ""
			if body != nil {
				bm, ok := body.(map[string]any)
				if !ok {
					errs = append(errs, fmt.Errorf("%s: want a map of settings, got %T", at, body))
					continue
				}
				if want == plugin.StageProcessor && !declaresKey(cfg, "on_error") {
					var err error
					if bm, onError, err = takeOnError(at, bm); err != nil {
						errs = append(errs, err) // and go on: report every problem
					}
				}
				if err := decode(bm, cfg, false); err != nil {
					errs = append(errs, prefix(at, err))
					continue
				}
			}
			if err := cfg.Validate(); err != nil {
				errs = append(errs, prefix(at, err))
				continue
			}
			if want == plugin.StageProcessor && onError == "" {
				onError = plugin.FailOpen
			}
			stages = append(stages, Stage{ID: id, Name: name, Label: label, Path: at, Info: info, Config: cfg, OnError: onError})
		}
	}
	return stages, errors.Join(errs...)
}

// declaresKey reports whether cfg, a pointer to a struct, has a field
// tagged koanf:"key" at its top level: such a plugin keeps the key for
// itself (filter.expr's per-record on_error predates the engine's).
func declaresKey(cfg plugin.Config, key string) bool {
	t := reflect.TypeOf(cfg)
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil || t.Kind() != reflect.Struct {
		return false
	}
	for i := range t.NumField() {
		if name, _, _ := strings.Cut(t.Field(i).Tag.Get("koanf"), ","); name == key {
			return true
		}
	}
	return false
}

// takeOnError removes the engine's on_error key from a processor's
// settings and returns its value ("" when absent).
func takeOnError(at string, bm map[string]any) (map[string]any, string, error) {
	raw, ok := bm["on_error"]
	if !ok {
		return bm, "", nil
	}
	rest := make(map[string]any, len(bm)-1)
	for k, v := range bm {
		if k != "on_error" {
			rest[k] = v
		}
	}
	v, _ := raw.(string)
	if v != plugin.FailOpen && v != plugin.FailClosed {
		return rest, "", fmt.Errorf("%s.on_error: %v: want %s or %s", at, raw, plugin.FailOpen, plugin.FailClosed)
	}
	return rest, v, nil
}

var namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)

// stageName checks a stage's `name:`: it labels metrics, so it is short
// and plain.
func stageName(raw any) (string, error) {
	name, ok := raw.(string)
	if !ok {
		return "", fmt.Errorf("want a string, got %T", raw)
	}
	if !namePattern.MatchString(name) {
		return "", fmt.Errorf("%q: want 1-63 letters, digits, '_', '.' or '-', starting with a letter or digit", name)
	}
	if strings.HasPrefix(name, "sources[") || strings.HasPrefix(name, "processors[") || strings.HasPrefix(name, "exporters[") {
		return "", fmt.Errorf("%q looks like a position label", name)
	}
	return name, nil
}

// prefix names the config path in front of every joined error.
func prefix(at string, err error) error {
	// Only a bare errors.Join is split; a wrapped one keeps its wrapper's text.
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range joined.Unwrap() {
			out = append(out, prefix(at, e))
		}
		return errors.Join(out...)
	}
	return fmt.Errorf("%s: %w", at, err)
}

// decode decodes src into dst (a pointer to a struct with koanf tags),
// rejecting unknown keys. weak allows string values for numbers and
// booleans (environment overrides).
func decode(src map[string]any, dst any, weak bool) error {
	var meta mapstructure.Metadata
	dec, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{
		TagName:          "koanf",
		Result:           dst,
		ErrorUnused:      true,
		WeaklyTypedInput: weak,
		Metadata:         &meta,
		DecodeHook: mapstructure.ComposeDecodeHookFunc(
			mapstructure.StringToTimeDurationHookFunc(),
			mapstructure.TextUnmarshallerHookFunc(),
			byteSizeHook,
		),
	})
	if err != nil {
		return err
	}
	if err := dec.Decode(src); err != nil {
		return cleanup(err)
	}
	return nil
}

// cleanup turns mapstructure's joined errors into one error per problem.
func cleanup(err error) error {
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range joined.Unwrap() {
			out = append(out, cleanup(e))
		}
		return errors.Join(out...)
	}
	msg := err.Error()
	msg = strings.ReplaceAll(msg, "has invalid keys:", "unknown key:")
	return errors.New(msg)
}

var byteSizeType = reflect.TypeOf(ByteSize(0))

func byteSizeHook(from, to reflect.Type, data any) (any, error) {
	if to != byteSizeType {
		return data, nil
	}
	switch v := data.(type) {
	case string:
		return ParseByteSize(v)
	case int:
		return ByteSize(v), nil
	case float64:
		return ByteSize(v), nil
	}
	return data, nil
}

// Validate checks the engine settings (not the stages, which validate
// themselves). It is pure and joins every problem.
func (c *Config) Validate() error {
	var errs []error
	switch strings.ToLower(c.Log.Level) {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log.level: %q is not debug, info, warn or error", c.Log.Level))
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		errs = append(errs, fmt.Errorf("log.format: %q is not text or json", c.Log.Format))
	}
	p := &c.Pipeline
	if p.Batch.Size <= 0 || p.Batch.Size > MaxBatchSize {
		errs = append(errs, fmt.Errorf("pipeline.batch.size: %d must be from 1 to %d", p.Batch.Size, MaxBatchSize))
	}
	if p.Batch.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("pipeline.batch.timeout: %v must be positive", p.Batch.Timeout))
	}
	if p.Queue.Size <= 0 || p.Queue.Size > MaxQueueSize {
		errs = append(errs, fmt.Errorf("pipeline.queue.size: %d must be from 1 to %d", p.Queue.Size, MaxQueueSize))
	}
	if p.Queue.ExporterSize < 0 || p.Queue.ExporterSize > MaxQueueSize {
		errs = append(errs, fmt.Errorf("pipeline.queue.exporter_size: %d must be from 0 (auto) to %d", p.Queue.ExporterSize, MaxQueueSize))
	}
	if p.Queue.WhenFull != "auto" && p.Queue.WhenFull != "drop" && p.Queue.WhenFull != "block" {
		errs = append(errs, fmt.Errorf("pipeline.queue.when_full: %q is not auto, drop or block", p.Queue.WhenFull))
	}
	if p.Workers < 0 {
		errs = append(errs, fmt.Errorf("pipeline.workers: %d must not be negative", p.Workers))
	}
	if c.Log.ProgressInterval < 0 {
		errs = append(errs, fmt.Errorf("log.progress_interval: %v must not be negative", c.Log.ProgressInterval))
	}
	seen := map[string]string{}
	for _, list := range [][]Stage{p.Sources, p.Processors, p.Exporters} {
		for _, s := range list {
			if s.Name == "" {
				continue
			}
			if first, dup := seen[s.Name]; dup {
				errs = append(errs, fmt.Errorf("%s.name: %q is already the name of %s", s.Path, s.Name, first))
				continue
			}
			seen[s.Name] = s.Path
		}
	}
	return errors.Join(errs...)
}

// checkExcludes rejects a pipeline holding two plugins one of which
// excludes the other (plugin.Info.Excludes), naming both entries.
func (p *Pipeline) checkExcludes() error {
	var all []Stage
	for _, list := range [][]Stage{p.Sources, p.Processors, p.Exporters} {
		all = append(all, list...)
	}
	var errs []error
	for _, a := range all {
		for _, b := range all {
			if slices.Contains(a.Info.Excludes, b.ID) {
				errs = append(errs, fmt.Errorf("%s: cannot be in the same pipeline as %s (choose one)", a.Path, b.Path))
			}
		}
	}
	return errors.Join(errs...)
}

// Checker is plugin.Checker, kept here for plugins written against it.
type Checker = plugin.Checker

// ByteSize is plugin.ByteSize, kept here for plugins written against it.
type ByteSize = plugin.ByteSize

// ParseByteSize is plugin.ParseByteSize.
func ParseByteSize(s string) (ByteSize, error) { return plugin.ParseByteSize(s) }

// Check runs every stage's Checker and joins the problems, each named by
// its config path.
func (c *Config) Check(ctx context.Context) error {
	var errs []error
	for _, list := range [][]Stage{c.Pipeline.Sources, c.Pipeline.Processors, c.Pipeline.Exporters} {
		for _, s := range list {
			if ch, ok := s.Config.(Checker); ok {
				if err := ch.Check(ctx, c.BaseDir); err != nil {
					errs = append(errs, fmt.Errorf("%s: %w", s.Path, err))
				}
			}
		}
	}
	return errors.Join(errs...)
}
