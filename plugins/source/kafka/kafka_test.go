package kafka_test

import (
	"context"
	"net/netip"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weir-flow/weir/core/abi"
	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/ipfix"
	"github.com/weir-flow/weir/core/plugin"
	"github.com/weir-flow/weir/core/plugintest"
	"github.com/weir-flow/weir/internal/kafkawire"
	_ "github.com/weir-flow/weir/plugins/all"
	"github.com/weir-flow/weir/plugins/export/jsonl"
	exportkafka "github.com/weir-flow/weir/plugins/export/kafka"
	"github.com/weir-flow/weir/plugins/source/kafka"
)

// message is one IPFIX message of the test capture.
type message struct {
	from netip.AddrPort
	msg  []byte
}

// captureMessages reads the IPFIX messages softflowd sent in the project's
// capture (test/testdata/softflowd-ipfix.pcap).
func captureMessages(t testing.TB) []message {
	t.Helper()
	f, err := os.Open("../../../test/testdata/softflowd-ipfix.pcap")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var out []message
	for {
		data, _, err := r.ReadPacketData()
		if err != nil {
			break
		}
		p := gopacket.NewPacket(data, r.LinkType(), gopacket.Default)
		udp, _ := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
		if udp == nil || p.NetworkLayer() == nil {
			continue
		}
		src, _ := netip.AddrFromSlice(p.NetworkLayer().NetworkFlow().Src().Raw())
		out = append(out, message{netip.AddrPortFrom(src.Unmap(), uint16(udp.SrcPort)), slices.Clone(udp.Payload)})
	}
	if len(out) == 0 {
		t.Fatal("no IPFIX messages in the capture")
	}
	return out
}

// decodeDirect decodes the messages in one decoder: the reference.
func decodeDirect(msgs []message) *flow.Batch {
	b := flow.NewBatch(0)
	d := ipfix.NewDecoder(ipfix.DecoderOptions{})
	for _, m := range msgs {
		_, _ = d.Decode(b, m.msg, m.from)
	}
	return b
}

func lines(recs []*flow.Record) []string {
	var out []string
	for _, r := range recs {
		out = append(out, string(jsonl.AppendRecord(nil, r, true)))
	}
	slices.Sort(out)
	return out
}

func newCluster(t testing.TB, topic string, partitions int32) []string {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, topic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()
}

func newExporter(t testing.TB, cfg *exportkafka.Config) *exportkafka.Exporter {
	t.Helper()
	e, err := exportkafka.New(cfg, plugin.NopSettings(exportkafka.ID))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return e
}

func newSource(t testing.TB, brokers []string, topic, group string) (*kafka.Source, *plugintest.Emitter) {
	t.Helper()
	cfg := kafka.DefaultConfig()
	cfg.Brokers, cfg.Topic, cfg.Group = brokers, topic, group
	cfg.CommitInterval = 100 * time.Millisecond
	s, err := kafka.New(cfg, plugin.NopSettings(kafka.ID))
	if err != nil {
		t.Fatal(err)
	}
	em := plugintest.NewEmitter(64)
	if err := s.Start(context.Background(), em); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Shutdown(context.Background()) })
	return s, em
}

func waitRecords(t *testing.T, want int, sinks ...*plugintest.Sink) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		n := 0
		for _, s := range sinks {
			n += s.Len()
		}
		if n >= want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("consumers got %d records, want %d", n, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRawAcrossPartitions spreads softflowd's raw messages over 4
// partitions at random, so no consumer sees an exporter's whole stream,
// and checks that two consumers in one group decode exactly what one
// decoder fed every message decodes: each message carries the templates
// and options data (systemInitTimeMilliseconds) it needs.
func TestRawAcrossPartitions(t *testing.T) {
	msgs := captureMessages(t)
	want := lines(decodeDirect(msgs).Records)
	brokers := newCluster(t, "raw", 4)

	cfg := exportkafka.DefaultConfig()
	cfg.Brokers, cfg.Topic, cfg.Payload, cfg.Key, cfg.Compression = brokers, "raw", "raw", "random", "lz4"
	e := newExporter(t, cfg)
	b := flow.NewBatch(0)
	at := time.Unix(1_800_000_000, 0)
	for _, m := range msgs {
		ipfix.AppendRaw(b, m.msg, m.from, at)
	}
	if err := e.Export(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	if err := e.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}

	_, a := newSource(t, brokers, "raw", "g")
	_, c := newSource(t, brokers, "raw", "g")
	waitRecords(t, len(want), a.Sink, c.Sink)
	time.Sleep(200 * time.Millisecond) // nothing more may come
	got := lines(append(a.Sink.Records(), c.Sink.Records()...))
	if !slices.Equal(got, want) {
		t.Fatalf("decoded through kafka: %d records, want %d\n got %q\nwant %q", len(got), len(want), got, want)
	}
}

// TestRecordsKeyFlow checks key: flow: both directions of every connection
// land on one partition, and the records come back unchanged.
func TestRecordsKeyFlow(t *testing.T) {
	ref := decodeDirect(captureMessages(t))
	// Add the reverse of every record, as the other half of a connection
	// exported by another node would be.
	b := flow.NewBatch(0)
	for _, r := range ref.Records {
		b.Append().CopyFrom(r, b)
		rev := b.Append()
		rev.CopyFrom(r, b)
		rev.SourceAddress, rev.DestinationAddress = r.DestinationAddress, r.SourceAddress
		rev.SourceTransportPort, rev.DestinationTransportPort = r.DestinationTransportPort, r.SourceTransportPort
		rev.Exporter = netip.MustParseAddrPort("192.0.2.9:4739")
	}
	brokers := newCluster(t, "recs", 4)
	cfg := exportkafka.DefaultConfig()
	cfg.Brokers, cfg.Topic, cfg.Key = brokers, "recs", "flow"
	cfg.RecordsPerMessage = 7 // several messages per partition
	e := newExporter(t, cfg)
	if err := e.Export(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	if err := e.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}

	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics("recs"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	partitionOf := map[uint64]map[int32]bool{}
	got := flow.NewBatch(0)
	var dec abi.Decoder
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	used := map[int32]bool{}
	for got.Len() < b.Len() {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("read %d records of %d", got.Len(), b.Len())
		}
		fs.EachRecord(func(r *kgo.Record) {
			if kafkawire.KindOf(r.Value) != kafkawire.KindRecords {
				t.Errorf("message at %d/%d is not a records batch", r.Partition, r.Offset)
				return
			}
			before := got.Len()
			if err := dec.Decode(r.Value, got); err != nil {
				t.Fatal(err)
			}
			used[r.Partition] = true
			for _, rec := range got.Records[before:] {
				h := kafkawire.FlowHash(rec)
				if partitionOf[h] == nil {
					partitionOf[h] = map[int32]bool{}
				}
				partitionOf[h][r.Partition] = true
			}
		})
	}
	for h, ps := range partitionOf {
		if len(ps) != 1 {
			t.Errorf("connection %x on partitions %v, want one", h, ps)
		}
	}
	if len(used) < 2 {
		t.Errorf("records used partitions %v: key flow should spread connections", used)
	}
	if g, w := lines(got.Records), lines(b.Records); !slices.Equal(g, w) {
		t.Errorf("records changed through kafka:\n got %q\nwant %q", g, w)
	}
}

func TestFlowHashIsDirectionIndependent(t *testing.T) {
	b := flow.NewBatch(2)
	for _, tc := range []struct {
		name     string
		src, dst string
		proto    uint8
		sp, dp   uint16
	}{
		{"tcp v4", "10.0.0.1", "10.0.0.2", 6, 40000, 80},
		{"udp v6", "fd00::2", "fd00::1", 17, 53, 5353},
		{"same address", "10.0.0.1", "10.0.0.1", 6, 1, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b.Reset()
			a := plugintest.Record(b, tc.src, tc.dst, tc.proto, tc.sp, tc.dp, 1, 1)
			r := plugintest.Record(b, tc.dst, tc.src, tc.proto, tc.dp, tc.sp, 1, 1)
			if kafkawire.FlowHash(a) != kafkawire.FlowHash(r) {
				t.Error("a flow and its reverse hash differently")
			}
			o := plugintest.Record(b, tc.src, tc.dst, tc.proto, tc.sp+1, tc.dp, 1, 1)
			if kafkawire.FlowHash(a) == kafkawire.FlowHash(o) {
				t.Error("different flows hash alike")
			}
		})
	}
}

func TestConfigCases(t *testing.T) {
	plugintest.ConfigCases(t, kafka.ID, func(t *testing.T, cfg plugin.Config) {
		if _, err := kafka.New(cfg.(*kafka.Config), plugin.NopSettings(kafka.ID)); err != nil {
			t.Fatalf("New: %v", err)
		}
	})
}

func TestExample(t *testing.T) { plugintest.CheckExample(t, kafka.ExampleYAML) }

func TestConfigTable(t *testing.T) { plugintest.CheckConfigTable(t, kafka.DefaultConfig()) }

func TestLifecycle(t *testing.T) {
	brokers := newCluster(t, "life", 1)
	plugintest.Lifecycle(t, func() plugin.Component {
		cfg := kafka.DefaultConfig()
		cfg.Brokers, cfg.Topic = brokers, "life"
		s, err := kafka.New(cfg, plugin.NopSettings(kafka.ID))
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}
