package rpchost

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	goplugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/weir-flow/weir/core/abi"
	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/plugin"
	"github.com/weir-flow/weir/core/rpcwire"
	"github.com/weir-flow/weir/sdk/rpc"
)

// The test binary doubles as a test plugin and as a stand-in Weir host:
// TestMain dispatches on os.Args[1].
const (
	argPlugin = "weir-test-plugin" // serve testPlugin
	argHost   = "weir-test-host"   // run a Processor on the example plugin, print its PID, wait
	argPass   = "weir-test-pass"   // serve a filter that keeps every record (transport only)
)

// Record source ports that make testPlugin misbehave on a batch whose first
// record has them.
const (
	portCrash   = 6666 // exit the process mid-call
	portHang    = 7777 // never answer
	portGarbage = 8888 // answer bytes that are no ABI answer
	portPanic   = 9999 // panic in Enrich (recovered by the SDK)
	portSlow    = 5555 // take 300ms
)

// exampleBin is the subnetlabels example, built by TestMain.
var exampleBin string

func TestMain(m *testing.M) {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case argPlugin:
			serveTestPlugin()
			return
		case argHost:
			runTestHost(os.Args[2:])
			return
		case argPass:
			// The fields subnetlabels reads, decoded and kept: the
			// transport's cost without the enrichment's.
			rpc.Serve(rpc.Plugin{
				Name:   "pass",
				Filter: func(*flow.Record) bool { return true },
				Reads:  []flow.FieldID{flow.SourceAddress, flow.DestinationAddress, flow.SourcePodLabels, flow.DestinationPodLabels},
			})
			return
		}
	}
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "weir-rpchost-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	exampleBin = filepath.Join(dir, "subnetlabels")
	build := exec.Command("go", "build", "-o", exampleBin, "./examples/rpc/subnetlabels")
	build.Dir = repoRoot()
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build example plugin:", err)
		return 1
	}
	return m.Run()
}

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// testPluginConfig is testPlugin's `config:`.
type testPluginConfig struct {
	Reject string `json:"reject"` // Init fails with this message
	Filter bool   `json:"filter"` // drop UDP records
	Log    bool   `json:"log"`    // log at Init through rpc.Logger and print to stderr
}

func serveTestPlugin() {
	var cfg testPluginConfig
	log := rpc.Logger()
	p := rpc.Plugin{
		Name: "testplugin",
		Init: func(raw []byte) error {
			if err := json.Unmarshal(raw, &cfg); err != nil {
				return err
			}
			if cfg.Log {
				log.Warn("test plugin warns", "answer", 42)
				fmt.Fprintln(os.Stderr, "test plugin prints to stderr")
			}
			if cfg.Reject != "" {
				return errors.New(cfg.Reject)
			}
			return nil
		},
		Enrich: func(r *flow.Record) {
			switch r.SourceTransportPort {
			case portCrash:
				os.Exit(3)
			case portHang:
				select {}
			case portPanic:
				panic("test plugin panics")
			case portSlow:
				time.Sleep(300 * time.Millisecond)
			}
			name := fmt.Sprintf("pid-%d", os.Getpid())
			if v := os.Getenv("WEIR_TEST_NODE_NAME"); v != "" {
				name = fmt.Sprintf("%s/procs=%d", v, runtime.GOMAXPROCS(0))
			}
			r.SetString(flow.SourceNodeName, name)
		},
		Filter: func(r *flow.Record) bool { return !cfg.Filter || r.ProtocolIdentifier != 17 },
	}
	srv, err := rpc.NewServer(p)
	if err != nil {
		panic(err)
	}
	hs := rpcwire.Handshake()
	if v := os.Getenv("WEIR_TEST_PROTOCOL_VERSION"); v != "" {
		fmt.Sscan(v, &hs.ProtocolVersion)
	}
	goplugin.Serve(&goplugin.ServeConfig{
		HandshakeConfig: hs,
		Plugins:         goplugin.PluginSet{rpcwire.PluginName: &rpcwire.Plugin{Impl: garbler{srv}}},
		GRPCServer: func(opts []grpc.ServerOption) *grpc.Server {
			return grpc.NewServer(append(opts, rpcwire.ServerOptions()...)...)
		},
	})
	os.Exit(0)
}

// garbler answers garbage for batches whose first record has portGarbage.
type garbler struct{ rpcwire.Server }

func (g garbler) Process(ctx context.Context, buf []byte) ([]byte, error) {
	if p, err := abi.ParsePacked(buf, nil); err == nil && p.Len() > 0 {
		var r flow.Record
		var st abi.Strings
		if p.Record(0, &r, &st) == nil && r.SourceTransportPort == portGarbage {
			return []byte("this is not an abi answer"), nil
		}
	}
	return g.Server.Process(ctx, buf)
}

// runTestHost is a minimal Weir: it runs a Processor on the example plugin,
// prints the plugin's PID and waits to be killed.
func runTestHost(args []string) {
	cfg := DefaultConfig()
	cfg.Cmd = args[0]
	cfg.Config = map[string]any{"table": args[1]}
	p, err := New(cfg, plugin.NopSettings(ID))
	if err == nil {
		err = p.Start(context.Background())
	}
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println(p.PID())
	time.Sleep(time.Minute)
	os.Exit(0)
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
