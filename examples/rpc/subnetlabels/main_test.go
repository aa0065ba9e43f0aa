package main

import (
	"log/slog"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/plugintest"
	"github.com/weir-flow/weir/sdk/rpc"
)

func newHost(t testing.TB, table string) *rpc.TestHost {
	t.Helper()
	l := &labeler{log: slog.New(slog.DiscardHandler)}
	h, err := rpc.NewTestHost(l.plugin(), map[string]any{"table": table})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestLoadTableErrors(t *testing.T) {
	tests := []struct{ name, csv, want string }{
		{"bad cidr", "10.0.0.0/33,env,x\n", "line 1: cidr"},
		{"empty key", "10.0.0.0/8,,x\n", "line 1: empty key"},
		{"fields", "10.0.0.0/8,env\n", "line 1: 2 fields"},
		{"conflict", "10.0.0.0/8,env,a\n10.0.0.0/8,env,b\n", "line 2: 10.0.0.0/8 sets \"env\" twice"},
		{"several", "x,env,a\n10.0.0.0/8,,b\n", "line 2: empty key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadTable(strings.NewReader(tt.csv))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want %q", err, tt.want)
			}
		})
	}
}

func TestLookup(t *testing.T) {
	tab, err := LoadTable(strings.NewReader(`cidr,key,value
# comment
10.0.0.0/8, env, private
10.1.0.0/16,team,blue
10.1.2.0/24,env,staging
10.1.2.3,role,db
::ffff:192.168.0.0/112,env,home
fd00::/8,env,private
`))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ addr, want string }{
		{"10.1.2.3", `{"env":"staging","role":"db","team":"blue"}`},
		{"10.1.2.4", `{"env":"staging","team":"blue"}`},
		{"10.1.3.1", `{"env":"private","team":"blue"}`},
		{"10.200.0.1", `{"env":"private"}`},
		{"::ffff:10.1.2.3", `{"env":"staging","role":"db","team":"blue"}`},
		{"192.168.7.7", `{"env":"home"}`},
		{"fd00::1", `{"env":"private"}`},
		{"11.0.0.1", ""},
		{"2001:db8::1", ""},
	}
	for _, tt := range tests {
		e := tab.Lookup(netip.MustParseAddr(tt.addr))
		got := ""
		if e != nil {
			got = e.json
		}
		if got != tt.want {
			t.Errorf("%s: %q, want %q", tt.addr, got, tt.want)
		}
	}
}

func TestMerge(t *testing.T) {
	tab, _ := LoadTable(strings.NewReader("10.0.0.0/8,env,private\n10.0.0.0/8,team,blue\n"))
	e := tab.Lookup(netip.MustParseAddr("10.0.0.1"))
	tests := []struct {
		existing, want string
		ok             bool
	}{
		{"", `{"env":"private","team":"blue"}`, true},
		{"{}", `{"env":"private","team":"blue"}`, true},
		{`{"app":"web","env":"prod"}`, `{"app":"web","env":"prod","team":"blue"}`, true},
		{`{"env":"prod","team":"red"}`, `{"env":"prod","team":"red"}`, true},
		{`not json`, `not json`, false},
		{`["a"]`, `["a"]`, false},
	}
	for _, tt := range tests {
		got, ok := e.Merge(tt.existing)
		if got != tt.want || ok != tt.ok {
			t.Errorf("Merge(%q) = %q, %v; want %q, %v", tt.existing, got, ok, tt.want, tt.ok)
		}
	}
}

func TestPlugin(t *testing.T) {
	h := newHost(t, "subnets.csv")
	b := flow.NewBatch(3)
	plugintest.Record(b, "10.77.0.1", "10.77.0.2", 6, 40000, 8080, 10, 1000)
	plugintest.Record(b, "fd77::2", "8.8.8.8", 17, 5353, 5353, 1, 80)
	r := plugintest.Record(b, "10.9.9.9", "10.77.0.2", 1, 0, 0, 1, 84)
	r.SetString(flow.DestinationPodLabels, `{"role":"pod"}`)
	if err := h.Process(b); err != nil {
		t.Fatal(err)
	}
	want := [][2]string{
		{`{"env":"test","role":"client","site":"lab","zone":"internet"}`, `{"env":"test","role":"server","service":"http","site":"lab","zone":"internet"}`},
		{`{"env":"test","role":"server","service":"http","site":"lab","zone":"internet"}`, `{"zone":"internet"}`},
		{`{"env":"private","zone":"internet"}`, `{"env":"test","role":"pod","service":"http","site":"lab","zone":"internet"}`},
	}
	for i, w := range want {
		if got := [2]string{b.Records[i].SourcePodLabels, b.Records[i].DestinationPodLabels}; got != w {
			t.Errorf("record %d: %q, want %q", i, got, w)
		}
	}
	if b.Records[0].PacketDeltaCount != 10 || b.Records[2].ProtocolIdentifier != 1 {
		t.Errorf("other fields changed")
	}
}

func TestInitErrors(t *testing.T) {
	l := &labeler{log: slog.New(slog.DiscardHandler)}
	for _, cfg := range []any{nil, map[string]any{}, map[string]any{"table": "no-such.csv"}, map[string]any{"tabel": "x"}} {
		if _, err := rpc.NewTestHost(l.plugin(), cfg); err == nil {
			t.Errorf("config %v accepted", cfg)
		}
	}
}

// BenchmarkPlugin is the plugin's cost without the process boundary: ABI
// encode, decode, lookup, diff, answer, apply.
func BenchmarkPlugin(b *testing.B) {
	h := newHost(b, "subnets.csv")
	batch := plugintest.MixedBatch(256)
	b.ReportAllocs()
	cpu := cpuTime()
	for b.Loop() {
		for _, r := range batch.Records {
			r.SourcePodLabels, r.DestinationPodLabels = "", ""
		}
		if err := h.Process(batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch.Len()), "ns/record")
	b.ReportMetric(float64((cpuTime()-cpu).Nanoseconds())/float64(b.N*batch.Len()), "cpu-ns/record")
}

// cpuTime is the process's CPU time (user + system), steadier than wall
// time on a shared machine.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
