package abi

import (
	"bytes"
	"encoding/hex"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weir-flow/weir/core/flow"
)

var update = flag.Bool("update", false, "rewrite testdata/golden from the current encoders")

// goldenBatch is the batch every golden vector encodes: an IPv4 TCP record
// with a pod name and an IPv6 UDP record with an Extra IE (docs/abi.md's
// formats, in their smallest interesting form).
func goldenBatch() *flow.Batch {
	b := flow.NewBatch(2)
	r := b.Append()
	r.Exporter = netip.MustParseAddrPort("192.0.2.9:4739")
	r.ObservationDomainID = 7
	r.SetAddr(flow.SourceAddress, netip.MustParseAddr("10.0.0.1"))
	r.SetAddr(flow.DestinationAddress, netip.MustParseAddr("10.0.0.2"))
	r.SetUint(flow.ProtocolIdentifier, 6)
	r.SetUint(flow.DestinationTransportPort, 443)
	r.SetString(flow.SourcePodName, "web-0")
	r = b.Append()
	r.SetAddr(flow.SourceAddress, netip.MustParseAddr("fd00::1"))
	r.SetAddr(flow.DestinationAddress, netip.MustParseAddr("fd00::2"))
	r.SetUint(flow.ProtocolIdentifier, 17)
	r.SetUint(flow.DestinationTransportPort, 53)
	r.Extra = append(r.Extra, flow.Field{Element: 61, Value: []byte{1}}) // flowDirection
	return b
}

// goldenMask is what a plugin reading the 5-tuple's parts and the pod name
// declares.
var goldenMask = MaskOf(FlagExtra|FlagExporter, flow.SourceAddress, flow.DestinationAddress,
	flow.ProtocolIdentifier, flow.DestinationTransportPort, flow.SourcePodName)

// goldenAnswer drops record 1 and labels record 0.
func goldenUpdates() *Updates {
	var u Updates
	u.SetString(0, flow.SourcePodLabels, `{"app":"web"}`)
	u.SetUint(0, flow.FlowType, 1)
	return &u
}

// goldenVectors are the byte vectors pinned in testdata/golden, one per
// format of docs/abi.md: a guest in another language can check its
// encoder and decoder against them.
func goldenVectors() map[string][]byte {
	b := goldenBatch()
	u := goldenUpdates()
	verdicts := Verdicts(nil).KeepAll(2)
	verdicts.Set(1, false)
	var w CompactWriter
	w.Reset()
	w.SetString(0, flow.SourcePodLabels, `{"app":"web"}`)
	w.Updates.SetUint(0, flow.FlowType, 1)
	return map[string][]byte{
		"batch-blocks":   AppendBatchMask(nil, b, goldenMask),
		"batch-columns":  AppendBatchMask(nil, b, MaskOf(FlagColumns|goldenMask.Flags, flow.ProtocolIdentifier, flow.DestinationTransportPort, flow.SourcePodName)),
		"packed":         NewPackedLayout(goldenMask).Append(nil, b),
		"answer":         (&Answer{Count: 2, Verdicts: verdicts, Updates: u.Bytes(), UpdateCount: u.Len()}).Append(nil),
		"compact-answer": w.Append(nil, StatusOK, 2, verdicts, ""),
		"manifest":       (&Manifest{Version: Version, Kind: KindProcessor, Reads: goldenMask}).Append(nil),
	}
}

// TestGolden checks every encoder against its golden vector, and that the
// vectors decode and apply to the expected records.
func TestGolden(t *testing.T) {
	for name, got := range goldenVectors() {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join("testdata", "golden", name+".hex")
			if *update {
				if err := os.WriteFile(path, []byte(dumpHex(got)), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			text, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			want, err := parseHex(string(text))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("encoding differs from %s:\n got\n%s\nwant\n%s", path, dumpHex(got), dumpHex(want))
			}
		})
	}
	vec := goldenVectors()
	var d Decoder
	for _, name := range []string{"batch-blocks", "batch-columns"} {
		v, err := ParseBatch(vec[name])
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var r flow.Record
		if err := d.Record(&v, 0, &r); err != nil || r.SourcePodName != "web-0" || r.ProtocolIdentifier != 6 || r.DestinationTransportPort != 443 {
			t.Errorf("%s: record 0 decodes to %+v, %v", name, r, err)
		}
	}
	p, err := ParsePacked(vec["packed"], nil)
	if err != nil {
		t.Fatal(err)
	}
	var r flow.Record
	var st Strings
	if err := p.Record(1, &r, &st); err != nil || r.SourceAddress != netip.MustParseAddr("fd00::1") || len(r.Extra) != 1 {
		t.Errorf("packed record 1 decodes to %+v, %v", r, err)
	}
	for _, name := range []string{"answer", "compact-answer"} {
		b := goldenBatch()
		var sc Scratch
		removed, err := Apply(b, vec[name], &sc)
		if err != nil || removed != 1 || b.Records[0].SourcePodLabels != `{"app":"web"}` || b.Records[0].FlowType != 1 {
			t.Errorf("%s applies: removed %d, %v, record 0 %+v", name, removed, err, *b.Records[0])
		}
	}
	if m, err := DecodeManifest(vec["manifest"]); err != nil || m.Reads != goldenMask || m.Kind != KindProcessor {
		t.Errorf("manifest decodes to %+v, %v", m, err)
	}
}

// dumpHex writes b as lines of 16 bytes after their offset, like xxd.
func dumpHex(b []byte) string {
	var s strings.Builder
	for off := 0; off < len(b); off += 16 {
		end := min(off+16, len(b))
		fmt.Fprintf(&s, "%08x:", off)
		for i := off; i < end; i++ {
			fmt.Fprintf(&s, " %02x", b[i])
		}
		s.WriteByte('\n')
	}
	return s.String()
}

// parseHex reads dumpHex's output; text after '#' is a comment.
func parseHex(text string) ([]byte, error) {
	var out []byte
	for n, line := range strings.Split(text, "\n") {
		line, _, _ = strings.Cut(line, "#")
		_, rest, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		b, err := hex.DecodeString(strings.Join(strings.Fields(rest), ""))
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n+1, err)
		}
		out = append(out, b...)
	}
	return out, nil
}
