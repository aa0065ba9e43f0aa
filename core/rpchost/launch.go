package rpchost

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goplugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc/status"

	"github.com/weir-flow/weir/core/abi"
	"github.com/weir-flow/weir/core/plugin"
	"github.com/weir-flow/weir/core/rpcwire"
)

// Start-up errors, matched with errors.Is.
var (
	// ErrNotFound: the plugin binary does not exist.
	ErrNotFound = errors.New("plugin binary not found")
	// ErrChecksum: the binary's SHA-256 differs from the sha256 pin.
	ErrChecksum = errors.New("plugin binary checksum mismatch")
	// ErrHandshake: the process did not complete the go-plugin handshake
	// (not a Weir plugin, wrong protocol version, exited or timed out).
	ErrHandshake = errors.New("plugin handshake failed")
	// ErrInit: the plugin rejected its config or spoke another ABI.
	ErrInit = errors.New("plugin init failed")
)

// EnvBaseDir is set in the plugin's environment to the directory relative
// paths in its config resolve against (the config file's directory, or
// Weir's working directory).
const EnvBaseDir = "WEIR_BASE_DIR"

// launcher starts plugin processes for one rpc processor.
type launcher struct {
	path         string // absolute path of the binary
	args         []string
	env          []string // KEY=value, after Weir's environment
	sum          []byte   // SHA-256 pin, or nil
	baseDir      string
	startTimeout time.Duration
	initReq      []byte // JSON rpcwire.InitRequest
	log          *slog.Logger
}

// envList returns env as KEY=value entries, sorted by name.
func envList(env map[string]string) []string {
	out := make([]string, 0, len(env))
	for _, k := range slices.Sorted(maps.Keys(env)) {
		out = append(out, k+"="+env[k])
	}
	return out
}

func newLauncher(c *Config, baseDir, name string, log *slog.Logger) (*launcher, error) {
	path, err := resolveCmd(c.Cmd, baseDir)
	if err != nil {
		return nil, err
	}
	if baseDir == "" {
		baseDir, _ = os.Getwd()
	} else if abs, err := filepath.Abs(baseDir); err == nil {
		baseDir = abs
	}
	raw, err := json.Marshal(c.Config)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	req, err := json.Marshal(rpcwire.InitRequest{ABI: abi.Version, Name: name, Config: raw})
	if err != nil {
		return nil, err
	}
	l := &launcher{
		path:         path,
		args:         c.Args,
		env:          envList(c.Env),
		baseDir:      baseDir,
		startTimeout: c.StartTimeout,
		initReq:      req,
		log:          log.With("cmd", filepath.Base(path)),
	}
	if c.SHA256 != "" {
		if l.sum, err = parseSHA256(c.SHA256); err != nil {
			return nil, fmt.Errorf("sha256: %q: %w", c.SHA256, err)
		}
	}
	return l, nil
}

// resolveCmd finds the binary: an absolute path as is; a relative path
// against baseDir, then the working directory; a bare name also on $PATH.
func resolveCmd(cmd, baseDir string) (string, error) {
	var tried []string
	try := func(p string) (string, bool) {
		tried = append(tried, p)
		st, err := os.Stat(p)
		if err != nil || st.IsDir() {
			return "", false
		}
		abs, err := filepath.Abs(p)
		return abs, err == nil
	}
	if filepath.IsAbs(cmd) {
		if p, ok := try(cmd); ok {
			return p, nil
		}
	} else {
		if baseDir != "" {
			if p, ok := try(filepath.Join(baseDir, cmd)); ok {
				return p, nil
			}
		}
		if p, ok := try(cmd); ok {
			return p, nil
		}
		if !strings.ContainsRune(cmd, filepath.Separator) {
			if p, err := exec.LookPath(cmd); err == nil {
				return filepath.Abs(p)
			}
			tried = append(tried, "$PATH")
		}
	}
	return "", fmt.Errorf("cmd %q: %w (tried %s)", cmd, ErrNotFound, strings.Join(tried, ", "))
}

// verify checks the binary against the SHA-256 pin.
func (l *launcher) verify() error {
	if l.sum == nil {
		return nil
	}
	f, err := os.Open(l.path)
	if err != nil {
		return fmt.Errorf("plugin binary %s: %w", l.path, err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return fmt.Errorf("plugin binary %s: %w", l.path, err)
	}
	if got := h.Sum(nil); !bytes.Equal(got, l.sum) {
		return fmt.Errorf("plugin binary %s: %w: sha256 is %x, config pins %x", l.path, ErrChecksum, got, l.sum)
	}
	return nil
}

// instance is one running plugin process.
type instance struct {
	client *goplugin.Client
	cmd    *exec.Cmd
	rpc    *rpcwire.Client
	stream *rpcwire.Stream // batches
	man    abi.Manifest
	// layout encodes the plugin's batches, packed, straight from the
	// records.
	layout *abi.PackedLayout
	pid    int
	start  time.Time

	failed       atomic.Bool // a call failed in a way that requires a restart
	killedByHost atomic.Bool // the host chose to kill it (not a crash)
	healthy      atomic.Bool // answered at least one batch
	stopOnce     sync.Once
}

// start runs the binary, completes the handshake and calls Init. It gives
// up after startTimeout; on error no process is left running.
func (l *launcher) start(ctx context.Context) (*instance, error) {
	if err := l.verify(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	cmd := exec.Command(l.path, l.args...)
	cmd.Env = append(append(os.Environ(), EnvBaseDir+"="+l.baseDir), l.env...)
	setParentDeathSignal(cmd)
	hlog := newSlogLogger(l.log, filepath.Base(l.path))
	out := &lineWriter{log: func(line string) { l.log.Info(line, "stream", "stdout") }}
	errw := &lineWriter{log: func(line string) { l.log.Info(line, "stream", "stderr") }}
	cfg := &goplugin.ClientConfig{
		HandshakeConfig: rpcwire.Handshake(),
		// Version 1 is accepted at the handshake only to refuse it with a
		// clearer error than go-plugin's.
		VersionedPlugins: map[int]goplugin.PluginSet{
			1:                       {rpcwire.PluginName: &rpcwire.Plugin{}},
			rpcwire.ProtocolVersion: {rpcwire.PluginName: &rpcwire.Plugin{}},
		},
		Cmd:              cmd,
		AllowedProtocols: []goplugin.Protocol{goplugin.ProtocolGRPC},
		AutoMTLS:         true,
		Logger:           hlog,
		StartTimeout:     l.startTimeout,
		SyncStdout:       out,
		SyncStderr:       errw,
		GRPCDialOptions:  rpcwire.DialOptions(),
		// cmd.Env already holds Weir's environment.
		SkipHostEnv: true,
	}
	if l.sum != nil {
		// go-plugin checks again right before exec; verify above gave
		// the clearer error.
		cfg.SecureConfig = &goplugin.SecureConfig{Checksum: l.sum, Hash: sha256.New()}
	}
	begin := time.Now()
	client := goplugin.NewClient(cfg)
	fail := func(kind error, err error) (*instance, error) {
		killGroup(cmd)
		client.Kill()
		return nil, fmt.Errorf("start plugin %s: %w: %w", l.path, kind, err)
	}
	proto, err := client.Client()
	if err != nil {
		if errors.Is(err, goplugin.ErrChecksumsDoNotMatch) {
			return fail(ErrChecksum, err)
		}
		return fail(ErrHandshake, err)
	}
	if v := client.NegotiatedVersion(); v != rpcwire.ProtocolVersion {
		return fail(ErrHandshake, fmt.Errorf("the plugin speaks rpc protocol %d, this Weir speaks %d: rebuild the plugin with this Weir's sdk/rpc", v, rpcwire.ProtocolVersion))
	}
	raw, err := proto.Dispense(rpcwire.PluginName)
	if err != nil {
		return fail(ErrHandshake, err)
	}
	inst := &instance{client: client, cmd: cmd, rpc: raw.(*rpcwire.Client), start: begin}
	if cmd.Process != nil {
		inst.pid = cmd.Process.Pid
	}
	ictx, cancel := context.WithTimeout(ctx, l.startTimeout)
	defer cancel()
	rep, err := inst.rpc.Init(ictx, l.initReq)
	if err != nil {
		return fail(ErrInit, grpcCause(err))
	}
	if inst.man, err = abi.DecodeManifest(rep); err != nil {
		return fail(ErrInit, fmt.Errorf("manifest: %w", err))
	}
	if inst.man.Status != abi.StatusOK {
		return fail(ErrInit, plugin.Fail(plugin.ReasonRejectedConfig, &abi.PluginError{Status: inst.man.Status, Message: inst.man.Message}))
	}
	// The RPC transport packs records its own way (wire): the WASM
	// layout flags (columns, no presence) do not apply to it.
	inst.layout = abi.NewPackedLayout(inst.man.Reads)
	if inst.stream, err = inst.rpc.OpenStream(ctx); err != nil {
		return fail(ErrHandshake, grpcCause(err))
	}
	l.log.Debug("plugin started", "pid", inst.pid, "kind", inst.man.Kind, "took", time.Since(begin))
	return inst, nil
}

// kill ends the process at once (SIGKILL) and releases go-plugin's client.
func (in *instance) kill() {
	in.stopOnce.Do(func() {
		killGroup(in.cmd)
		if in.cmd.Process != nil {
			_ = in.cmd.Process.Kill()
		}
		in.client.Kill()
		in.closeStream()
	})
}

// stop asks the plugin to exit and waits for it until ctx ends, then kills
// it.
func (in *instance) stop(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		defer close(done)
		in.stopOnce.Do(func() {
			// Ending the stream first lets the plugin's server stop
			// without waiting for it.
			in.closeStream()
			in.client.Kill() // graceful: closes the connection, waits up to 2s, then kills
		})
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		if in.cmd.Process != nil {
			_ = in.cmd.Process.Kill()
		}
		<-done
		return ctx.Err()
	}
}

func (in *instance) closeStream() {
	if in.stream != nil {
		in.stream.Close()
	}
}

// grpcCause strips the gRPC status wrapping from err for a shorter message.
func grpcCause(err error) error {
	if st, ok := status.FromError(err); ok {
		return fmt.Errorf("%s: %s", st.Code(), st.Message())
	}
	return err
}

// fileSHA256 returns the hex SHA-256 of the file at path.
func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return fmt.Sprintf("%x", h.Sum(nil)), nil
}
