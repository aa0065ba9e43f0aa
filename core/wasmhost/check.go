package wasmhost

import (
	"context"
	"fmt"
	"log/slog"
	"sort"

	"github.com/weir-flow/weir/core/abi"
	"github.com/weir-flow/weir/core/wasmhost/internal/interrupt"
)

// Check loads the module as Start would — compile, check the ABI version
// and exports, instantiate, pass the config — and returns why it cannot
// run: a file that is not WASM (ErrNotWasm), a module that is not an ABI
// v1 plugin (*ExportError, ErrNotPlugin), another ABI version
// (*abi.VersionError) or a config the module rejects (ErrRejected,
// followed by the module's own message). It starts nothing that outlives
// it. `weir validate` calls it through [Config.Check].
func Check(ctx context.Context, cfg *Config, baseDir string) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	config, err := cfg.configJSON()
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	log := slog.New(slog.DiscardHandler)
	ic := instanceConfig{log: log, allowEnv: cfg.Allow.Env, buffer: bufferFor(0)}
	for _, d := range cfg.Allow.FS {
		ic.allowFS = append(ic.allowFS, absolute(resolve(baseDir, d)))
	}
	mod, in, _, err := load(ctx, resolve(baseDir, cfg.Path), cfg, baseDir, config, ic, log)
	if err != nil {
		return err
	}
	in.close(ctx)
	mod.close(ctx)
	return nil
}

// Check is [Check] on c, for `weir validate`: the engine calls it on any
// plugin config that has it, after Validate.
func (c *Config) Check(ctx context.Context, baseDir string) error {
	return Check(ctx, c, baseDir)
}

// Info describes a module, as `weir plugins inspect` prints it.
type Info struct {
	// Path is the module file.
	Path string
	// ABIVersion is the version the module implements.
	ABIVersion uint16
	// Kind is filter, enricher or processor, as the module registered.
	Kind abi.Kind
	// Exports are the module's exported functions and memories, sorted.
	Exports []string
	// Imports are the module's imported functions as "module.name", sorted.
	Imports []string
}

// Inspect compiles and instantiates the module at path, without a config,
// and describes it. It returns an error for a file that is not a Weir
// plugin, as [Check] does.
func Inspect(ctx context.Context, path string) (Info, error) {
	cfg := DefaultConfig()
	cfg.Path = path
	log := slog.New(slog.DiscardHandler)
	ic := instanceConfig{log: log, buffer: bufferFor(0)}
	mod, err := openModule(ctx, path, cfg.limits(), ic.checks, cfg.cacheDir(""), ic, log)
	if err != nil {
		return Info{}, err
	}
	defer mod.close(ctx)
	in, err := mod.instantiate(ctx, ic, initTimeout)
	if err != nil {
		return Info{}, err
	}
	defer in.close(ctx)
	v, err := in.abiVersion(ctx)
	if err != nil {
		return Info{}, fmt.Errorf("%s: %w", path, err)
	}
	var res []uint64
	err = in.guard(ctx, initTimeout, func(ctx context.Context) (err error) {
		res, err = in.kind.Call(ctx)
		return err
	})
	if err != nil {
		return Info{}, fmt.Errorf("%s: call %s: %w", path, exportKind, err)
	}
	info := Info{Path: path, ABIVersion: v, Kind: abi.Kind(uint32(res[0])), Exports: mod.exports}
	for _, f := range mod.compiled.ImportedFunctions() {
		m, n, _ := f.Import()
		if mod.checks == checksInstrumented && m == interrupt.ImportModule && n == interrupt.ImportName {
			continue // added by the host, not the module's own
		}
		info.Imports = append(info.Imports, m+"."+n)
	}
	sort.Strings(info.Imports)
	return info, nil
}

// Files is the module file: a rebuilt module makes a hot reload replace
// the stage.
func (c *Config) Files(baseDir string) []string { return []string{resolve(baseDir, c.Path)} }
