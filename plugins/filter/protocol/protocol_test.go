package protocol_test

import (
	"bytes"
	"context"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/plugin"
	"github.com/weir-flow/weir/core/plugintest"
	"github.com/weir-flow/weir/plugins/filter/protocol"
)

func nopSettings() plugin.Settings { return plugin.NopSettings(protocol.ID) }

// flowSpec is a record in a test batch: protocol and ports.
type flowSpec struct {
	proto        uint8
	sport, dport uint16
}

func batchOf(specs []flowSpec) *flow.Batch {
	b := flow.NewBatch(len(specs))
	for i, s := range specs {
		r := plugintest.Record(b, "10.0.0.1", "10.0.0.2", s.proto, s.sport, s.dport, 1, uint64(100+i))
		_ = r
	}
	return b
}

func specsOf(b *flow.Batch) []flowSpec {
	var out []flowSpec
	for _, r := range b.Records {
		out = append(out, flowSpec{r.ProtocolIdentifier, r.SourceTransportPort, r.DestinationTransportPort})
	}
	return out
}

var traffic = []flowSpec{
	{6, 40000, 80},    // 0 http request
	{6, 443, 40001},   // 1 https reply (source port)
	{6, 40002, 22},    // 2 ssh
	{17, 40003, 53},   // 3 dns over udp
	{6, 40004, 53},    // 4 dns over tcp
	{1, 0, 0},         // 5 icmp
	{58, 0, 0},        // 6 icmpv6
	{132, 40005, 80},  // 7 sctp
	{47, 0, 0},        // 8 gre
	{17, 40006, 9100}, // 9 udp to a node exporter port
	{6, 40007, 9150},  // 10 tcp in a range
	{0, 0, 0},         // 11 no protocolIdentifier
}

func pick(idx ...int) []flowSpec {
	var out []flowSpec
	for _, i := range idx {
		out = append(out, traffic[i])
	}
	return out
}

func TestProcess(t *testing.T) {
	tests := []struct {
		name string
		cfg  protocol.Config
		want []flowSpec
	}{
		{"empty keeps all", protocol.Config{}, traffic},
		{"names", protocol.Config{Protocols: []any{"tcp", "icmp"}}, pick(0, 1, 2, 4, 5, 10)},
		{"case insensitive and numbers", protocol.Config{Protocols: []any{"UDP", 58, "47"}}, pick(3, 6, 8, 9)},
		{"aliases", protocol.Config{Protocols: []any{"icmpv6", "ipv6-icmp", "ICMP6", "sctp"}}, pick(6, 7)},
		{"web matches source or destination port", protocol.Config{Protocols: []any{"web"}}, pick(0, 1)},
		{"dns over udp and tcp", protocol.Config{Protocols: []any{"DNS"}}, pick(3, 4)},
		{"group plus whole protocol", protocol.Config{Protocols: []any{"web", "udp"}}, pick(0, 1, 3, 9)},
		{"whole protocol wins over its group", protocol.Config{Protocols: []any{"web", "tcp"}}, pick(0, 1, 2, 4, 10)},
		{"user group with ranges", protocol.Config{
			Protocols: []any{"metrics"},
			Groups: map[string][]protocol.GroupEntry{
				"Metrics": {{Protocol: "tcp", Ports: []any{"9100-9199"}}, {Protocol: 17, Ports: []any{9100}}},
			},
		}, pick(9, 10)},
		{"user group replaces built-in", protocol.Config{
			Protocols: []any{"web"},
			Groups:    map[string][]protocol.GroupEntry{"web": {{Protocol: "tcp", Ports: []any{22}}}},
		}, pick(2)},
		{"group without ports keeps the protocol", protocol.Config{
			Protocols: []any{"tunnels"},
			Groups:    map[string][]protocol.GroupEntry{"tunnels": {{Protocol: "gre"}, {Protocol: "esp"}}},
		}, pick(8)},
		{"hopopt is protocol 0", protocol.Config{Protocols: []any{"hopopt"}}, pick(11)},
		{"invalid entries ignored", protocol.Config{Protocols: []any{"tpc", 300, "gre"}}, pick(8)},
		{"only invalid entries drop everything", protocol.Config{Protocols: []any{"tpc"}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := protocol.New(&tt.cfg, nopSettings())
			if err != nil {
				t.Fatal(err)
			}
			b := batchOf(traffic)
			if err := f.Process(context.Background(), b); err != nil {
				t.Fatal(err)
			}
			if got := specsOf(b); !slices.Equal(got, tt.want) {
				t.Errorf("kept %v\nwant %v", got, tt.want)
			}
			// Kept records are untouched.
			for _, r := range b.Records {
				if r.PacketDeltaCount != 1 || !r.SourceAddress.IsValid() {
					t.Errorf("record modified: %+v", r)
				}
			}
			// Removed records stay reusable slots: appending reuses them.
			n := b.Len()
			b.Append()
			if b.Len() != n+1 {
				t.Errorf("append after filter: len %d", b.Len())
			}
		})
	}
}

func TestWarnsAboutInvalidEntries(t *testing.T) {
	var buf bytes.Buffer
	set := nopSettings()
	set.Logger = slog.New(slog.NewTextHandler(&buf, nil))
	if _, err := protocol.New(&protocol.Config{Protocols: []any{"tcp", "tpc", 300}}, set); err != nil {
		t.Fatal(err)
	}
	logs := buf.String()
	for _, want := range []string{"protocols[1]", "tpc", "protocols[2]", "300"} {
		if !strings.Contains(logs, want) {
			t.Errorf("warning does not name %q:\n%s", want, logs)
		}
	}
	if strings.Contains(logs, "protocols[0]") {
		t.Errorf("valid entry warned about:\n%s", logs)
	}
	if c := strings.Count(logs, "level=WARN"); c != 2 {
		t.Errorf("%d warnings, want 2:\n%s", c, logs)
	}
}

func TestNewRejectsInvalidConfig(t *testing.T) {
	_, err := protocol.New(&protocol.Config{Protocols: []any{map[string]any{"a": 1}}}, nopSettings())
	if err == nil {
		t.Fatal("want error")
	}
}

func TestProcessDoesNotAllocate(t *testing.T) {
	for _, protos := range [][]any{{"tcp", "udp"}, {"web", "udp"}} {
		f, err := protocol.New(&protocol.Config{Protocols: protos}, nopSettings())
		if err != nil {
			t.Fatal(err)
		}
		src := plugintest.MixedBatch(256)
		b := flow.NewBatch(256)
		allocs := testing.AllocsPerRun(100, func() {
			b.Reset()
			for _, r := range src.Records {
				b.Append().CopyFrom(r, b)
			}
			_ = f.Process(context.Background(), b)
		})
		if allocs != 0 {
			t.Errorf("%v: %v allocs per batch, want 0", protos, allocs)
		}
	}
}

func TestLifecycle(t *testing.T) {
	plugintest.Lifecycle(t, func() plugin.Component {
		f, err := protocol.New(&protocol.Config{Protocols: []any{"tcp"}}, nopSettings())
		if err != nil {
			t.Fatal(err)
		}
		return f
	})
}

func TestRegistered(t *testing.T) {
	info, ok := plugin.Lookup(protocol.ID)
	if !ok {
		t.Fatal("not registered")
	}
	cfg := info.NewConfig().(*protocol.Config)
	cfg.Protocols = []any{"tcp"}
	c, err := info.New(cfg, nopSettings())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := c.(plugin.Processor); !ok {
		t.Fatalf("%T is not a processor", c)
	}
}
