package bench

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	_ "github.com/weir-flow/weir/plugins/source/pcap"
)

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

func TestReadCapture(t *testing.T) {
	path := filepath.Join(repoRoot(), "test", "testdata", "softflowd-ipfix.pcap")
	in, err := ReadCapture(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	if in.Len() == 0 || in.Name != path {
		t.Fatalf("%d records, name %q", in.Len(), in.Name)
	}
	for _, r := range in.Batch.Records {
		if !r.SourceAddress.IsValid() || !r.DestinationAddress.IsValid() || r.ProtocolIdentifier == 0 || !r.Exporter.IsValid() {
			t.Fatalf("capture record without a 5-tuple or exporter: %+v", r)
		}
	}
	again, err := ReadCapture(context.Background(), path)
	if err != nil || again.Len() != in.Len() {
		t.Fatalf("second read: %d records, %v; want %d", again.Len(), err, in.Len())
	}
	// The records survive their source: feed them through a chain.
	c := newTestChain(t, twoStages, ChainOptions{})
	res, err := c.Run(context.Background(), in, RunOptions{AllocBatches: 1})
	if err != nil {
		t.Fatal(err)
	}
	checkAddsUp(t, res, uint64(in.Len()))
}

func TestReadCaptureErrors(t *testing.T) {
	dir := t.TempDir()
	notPcap := filepath.Join(dir, "x.pcap")
	if err := os.WriteFile(notPcap, []byte("not a capture at all"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadCapture(context.Background(), notPcap); err == nil {
		t.Error("a text file read as a capture")
	}
	if _, err := ReadCapture(context.Background(), filepath.Join(dir, "missing.pcap")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v, want ErrNotExist", err)
	}
	// A capture without IPFIX: the header only.
	empty := filepath.Join(dir, "empty.pcap")
	hdr := []byte{0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 1, 0, 0, 0}
	if err := os.WriteFile(empty, hdr, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadCapture(context.Background(), empty); !errors.Is(err, ErrEmptyInput) {
		t.Errorf("empty capture: %v, want ErrEmptyInput", err)
	}
}
