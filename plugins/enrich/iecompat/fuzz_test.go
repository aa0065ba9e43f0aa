package iecompat

import (
	"bytes"
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/ipfix"
	"github.com/weir-flow/weir/core/plugin"
)

// fuzzShimsYAML exercises every op, onto typed fields and verbatim IEs.
const fuzzShimsYAML = `
shims:
  - name: every-op
    actions:
      - {op: rename, ie: "32473/1", to: egressNodeName}
      - {op: rename, ie: "32473/2", to: destinationClusterIPv4}
      - {op: rename, ie: "32473/3", to: flowType}
      - {op: rename, ie: "32473/4", to: "32473/5", overwrite: true}
      - {op: rename, ie: sourcePodLabels, to: "32473/6"}
      - {op: rename, ie: "32473/7", to: flowEndMilliseconds}
      - {op: width, ie: ingressNetworkPolicyRulePriority, type: signed32, from_type: unsigned16}
      - {op: width, ie: "32473/8", type: unsigned16}
      - {op: width, ie: "32473/9", type: signed64}
      - {op: drop, ie: "32473/10"}
      - {op: drop, ie: sourceIPv6Address}
      - {op: derive, ie: octetTotalCount, func: sum, from: [octetDeltaCount, "32473/11"]}
      - {op: derive, ie: "32473/12", type: unsigned8, func: max, from: [protocolIdentifier, "32473/13"]}
      - {op: derive, ie: destinationServiceIPv4, from: [destinationClusterIPv4, "32473/14"]}
      - {op: derive, ie: destinationClusterIPv6, from: [destinationServiceIPv6]}
      - {op: derive, ie: "32473/15", type: dateTimeSeconds, from: [flowStartMilliseconds]}
      - {op: default, ie: egressNodeName, value: unknown}
      - {op: default, ie: clusterId, value: c}
      - {op: default, ie: "32473/16", type: ipv6Address, value: "fd00::1"}
`

func fuzzShims(t testing.TB) *Shims {
	t.Helper()
	shims, err := decodeShimFile([]byte(fuzzShimsYAML))
	if err != nil {
		t.Fatal(err)
	}
	cfg := &Config{Shims: shims}
	root := "../../.."
	if files, _ := filepath.Glob(filepath.Join(root, "configs", "shims", "*.yaml")); len(files) > 0 {
		for _, f := range files {
			rel, _ := filepath.Rel(root, f)
			cfg.Files = append(cfg.Files, rel)
		}
	}
	set := plugin.NopSettings(ID)
	set.BaseDir = root
	s, err := New(cfg, set)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// seedMessages encodes records carrying the fuzzed IEs as IPFIX messages.
func seedMessages(t testing.TB) [][]byte {
	t.Helper()
	b := flow.NewBatch(0)
	add := func(extra ...flow.Field) {
		r := b.Append()
		r.SetAddr(flow.SourceAddress, netip.MustParseAddr("10.0.0.1"))
		r.SetAddr(flow.DestinationAddress, netip.MustParseAddr("10.0.0.2"))
		r.SetUint(flow.ProtocolIdentifier, 6)
		r.SetUint(flow.OctetDeltaCount, 100)
		r.SetUint(flow.FlowStart, uint64(time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano()))
		r.SetString(flow.SourcePodLabels, `{"a":"b"}`)
		for _, f := range extra {
			f.Value = b.CopyBytes(f.Value)
			r.Extra = append(r.Extra, f)
		}
	}
	add(flow.Field{Enterprise: 32473, Element: 1, Variable: true, Value: []byte("node")},
		flow.Field{Enterprise: 32473, Element: 2, Value: []byte{10, 96, 0, 1}},
		flow.Field{Enterprise: 32473, Element: 3, Value: []byte{2}},
		flow.Field{Enterprise: 32473, Element: 4, Value: []byte{1, 2, 3}},
		flow.Field{Enterprise: 32473, Element: 7, Value: []byte{0, 0, 1, 0x8c, 0xc8, 0x4a, 0x3e, 0x88}},
		flow.Field{Enterprise: flow.AntreaPEN, Element: 116, Value: []byte{0x80, 1}},
		flow.Field{Enterprise: 32473, Element: 8, Value: []byte{0, 0, 0, 9}},
		flow.Field{Enterprise: 32473, Element: 9, Value: []byte{0xff}},
		flow.Field{Enterprise: 32473, Element: 11, Value: []byte{0, 5}})
	add(flow.Field{Enterprise: 32473, Element: 2, Value: []byte{1, 2, 3}},
		flow.Field{Enterprise: 32473, Element: 3, Value: []byte{1, 0}},
		flow.Field{Enterprise: 32473, Element: 13, Value: []byte{0xff, 0xff}},
		flow.Field{Enterprise: flow.AntreaPEN, Element: 169, Value: netip.MustParseAddr("fd00::5").AsSlice()})
	enc := ipfix.NewEncoder(ipfix.EncoderOptions{ObservationDomainID: 1, MaxMessageSize: 65535})
	var msgs [][]byte
	err := enc.Encode(b.Records, time.Unix(1700000000, 0), func(msg []byte) error {
		msgs = append(msgs, bytes.Clone(msg))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return msgs
}

// FuzzShimTemplates decodes arbitrary IPFIX messages (templates and data) and
// runs every kind of shim action over what they decode to, then re-encodes
// the result: nothing may panic, no record may be dropped, and shimmed
// records must still encode.
func FuzzShimTemplates(f *testing.F) {
	for _, msg := range seedMessages(f) {
		f.Add(msg)
	}
	s := fuzzShims(f)
	exporter := netip.MustParseAddrPort("192.0.2.1:4739")
	f.Fuzz(func(t *testing.T, msg []byte) {
		dec := ipfix.NewDecoder(ipfix.DecoderOptions{})
		b := flow.NewBatch(0)
		n, _ := dec.Decode(b, msg, exporter)
		if n != b.Len() {
			t.Fatalf("decoder returned %d, batch holds %d", n, b.Len())
		}
		if err := s.Process(context.Background(), b); err != nil {
			t.Fatal(err)
		}
		if b.Len() != n {
			t.Fatalf("shims changed the record count from %d to %d", n, b.Len())
		}
		enc := ipfix.NewEncoder(ipfix.EncoderOptions{ObservationDomainID: 1, MaxMessageSize: 65535})
		if err := enc.Encode(b.Records, time.Unix(1700000000, 0), func([]byte) error { return nil }); err != nil {
			t.Fatalf("shimmed records do not encode: %v", err)
		}
	})
}

// FuzzShimFile compiles arbitrary shim files and applies whatever compiles
// to decoded records: nothing may panic.
func FuzzShimFile(f *testing.F) {
	f.Add([]byte(fuzzShimsYAML))
	for _, p := range []string{"antrea-rule-priority.yaml", "antrea-egress-node-name.yaml", "antrea-destination-service-ip.yaml"} {
		if data, err := os.ReadFile(filepath.Join("../../../configs/shims", p)); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte("shims:\n  - name: x\n    actions: [{op: width, ie: \"1/1\", type: signed8, from_type: unsigned64}]\n"))
	// Decode the seed messages once; each run shims fresh copies.
	dec := ipfix.NewDecoder(ipfix.DecoderOptions{})
	decoded := flow.NewBatch(0)
	for _, m := range seedMessages(f) {
		if _, err := dec.Decode(decoded, m, netip.MustParseAddrPort("192.0.2.1:4739")); err != nil {
			f.Fatal(err)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		shims, err := decodeShimFile(data)
		if err != nil {
			return
		}
		compiled, errs := compileShims(shims, "shims", nil)
		if len(errs) > 0 {
			return // rejected by Validate, as it should be
		}
		s := build(compiled, nil)
		b := flow.NewBatch(0)
		for _, r := range decoded.Records {
			b.Append().CopyFrom(r, b)
		}
		n := b.Len()
		if err := s.Process(context.Background(), b); err != nil {
			t.Fatal(err)
		}
		if b.Len() != n {
			t.Fatalf("record count changed from %d to %d", n, b.Len())
		}
	})
}

// TestFuzzSeeds checks that the fuzz seeds reach the shims: they decode into
// records whose IEs the actions change.
func TestFuzzSeeds(t *testing.T) {
	s := fuzzShims(t)
	dec := ipfix.NewDecoder(ipfix.DecoderOptions{})
	b := flow.NewBatch(0)
	for _, m := range seedMessages(t) {
		if _, err := dec.Decode(b, m, netip.MustParseAddrPort("192.0.2.1:4739")); err != nil {
			t.Fatal(err)
		}
	}
	if b.Len() != 2 {
		t.Fatalf("seeds decode to %d records, want 2", b.Len())
	}
	if err := s.Process(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	r0, r1 := b.Records[0], b.Records[1]
	if r0.EgressNodeName != "node" || r0.DestinationClusterIP != netip.MustParseAddr("10.96.0.1") || r0.FlowType != 2 {
		t.Errorf("record 0 renames not applied: %+v", r0)
	}
	if f := r0.FindExtra(flow.IEKey{Enterprise: flow.AntreaPEN, Element: 116}); f == nil || !bytes.Equal(f.Value, []byte{0, 0, 0x80, 1}) {
		t.Errorf("record 0 rule priority not widened: %+v", f)
	}
	if r1.EgressNodeName != "unknown" {
		t.Errorf("record 1 egressNodeName %q, want unknown", r1.EgressNodeName)
	}
	if r1.DestinationClusterIP != netip.MustParseAddr("fd00::5") {
		t.Errorf("record 1 destinationClusterIPv6 %v", r1.DestinationClusterIP)
	}
}
