//go:build linux

package jsonl

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/plugin"
	"github.com/weir-flow/weir/core/plugintest"
)

// mountFS mounts a file system of the given type for the test, from a
// loop-mounted image for block-device ones (CI runs as root), and returns
// its directory.
func mountFS(t *testing.T, fstype, size string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), fstype)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	args := []string{"-t", fstype, "-o", "size=" + size, fstype, dir}
	if fstype == "ext4" {
		img := filepath.Join(t.TempDir(), "ext4.img")
		if out, err := exec.Command("truncate", "-s", size, img).CombinedOutput(); err != nil {
			t.Fatalf("truncate: %v: %s", err, out)
		}
		// No journal and no reserved blocks: the disk-full test fills all of it.
		if out, err := exec.Command("mkfs.ext4", "-q", "-O", "^has_journal", "-m", "0", img).CombinedOutput(); err != nil {
			t.Fatalf("mkfs.ext4: %v: %s", err, out)
		}
		args = []string{"-o", "loop", img, dir}
	}
	if out, err := exec.Command("mount", args...).CombinedOutput(); err != nil {
		t.Fatalf("mount %s: %v: %s", fstype, err, out)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil {
			_ = unix.Unmount(dir, unix.MNT_DETACH)
		}
	})
	return dir
}

// logs is a slog handler keeping what was logged.
type logs struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logs) logger() *slog.Logger { return slog.New(slog.NewTextHandler(l, nil)) }

func (l *logs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// startFile starts an exporter writing path with direct_io mode.
func startFile(t *testing.T, path, mode string, log *slog.Logger) (*Exporter, *plugintest.Outcome) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Path, cfg.DirectIO = path, mode
	set := plugin.NopSettings(ID)
	if log != nil {
		set.Logger = log
	}
	e, err := New(cfg, set)
	if err != nil {
		t.Fatal(err)
	}
	out := &plugintest.Outcome{}
	e.SetOutcome(out)
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Shutdown(context.Background()) })
	return e, out
}

// linesOf is what the encoder writes for b.
func linesOf(b *flow.Batch) []byte {
	var enc Encoder
	enc.Extra = true
	var p []byte
	for _, r := range b.Records {
		p = append(enc.Append(p, r), '\n')
	}
	return p
}

// sizedBatch is n records whose lines differ in length (ports and
// counters of 1 to 5 digits, some with Pod names), so that batches end
// anywhere in a block.
func sizedBatch(rng *rand.Rand, first, n int) *flow.Batch {
	b := flow.NewBatch(n)
	for i := range n {
		r := plugintest.Record(b, "10.0.0.1", "10.0.0.2", 6, uint16(first+i), uint16(rng.IntN(65536)), uint64(rng.IntN(100000)), uint64(rng.IntN(1e9)))
		if rng.IntN(3) == 0 {
			r.SourcePodName = strings.Repeat("p", rng.IntN(300))
		}
	}
	return b
}

// TestDirectMatchesPageCache writes the same batches with direct_io on
// (O_DIRECT, on a real ext4) and off, into files that already hold a
// partial block, and checks after every batch (once its stored callback
// ran: the flush policy) that both files are byte for byte what was
// written, and at the end that every record was counted as delivered.
func TestDirectMatchesPageCache(t *testing.T) {
	dir := mountFS(t, "ext4", "64M")
	tests := []struct {
		name  string
		sizes []int // records per batch; 0: a random 1 to 300
		wait  bool  // wait for each batch to be stored before the next
	}{
		{"one record at a time", []int{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, true},
		{"random batches", make([]int, 60), true},
		{"batches larger than a chunk", []int{5000, 1, 7000, 3}, true},
		{"gathered while writing", make([]int, 300), false},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(i), 15))
			// A partial block before: the first O_DIRECT write re-writes it.
			head := []byte(`{"note":"written before"}` + "\n")
			want := bytes.Repeat(head, 150) // 3,900 bytes
			paths := map[string]string{}
			exps := map[string]*Exporter{}
			outs := map[string]*plugintest.Outcome{}
			for _, mode := range []string{DirectOn, DirectOff} {
				paths[mode] = filepath.Join(dir, fmt.Sprintf("%d-%s.jsonl", i, mode))
				if err := os.WriteFile(paths[mode], want, 0o644); err != nil {
					t.Fatal(err)
				}
				exps[mode], outs[mode] = startFile(t, paths[mode], mode, nil)
			}
			if exps[DirectOn].direct == nil || exps[DirectOff].direct != nil {
				t.Fatal("direct_io on did not open with O_DIRECT, or off did")
			}
			if d := exps[DirectOn].direct; d.mapped == nil || uintptr(unsafe.Pointer(unsafe.SliceData(d.buf)))%uintptr(d.align) != 0 {
				t.Fatalf("the O_DIRECT buffer is not an aligned mapping (mapped %v)", d.mapped != nil)
			}
			ctx := context.Background()
			total := 0
			for j, n := range tc.sizes {
				if n == 0 {
					n = 1 + rng.IntN(300)
				}
				b := sizedBatch(rng, total, n)
				total += n
				want = append(want, linesOf(b)...)
				for _, mode := range []string{DirectOn, DirectOff} {
					var err error
					if tc.wait {
						err = exportWait(ctx, exps[mode], b)
					} else {
						err = exps[mode].Export(ctx, b)
					}
					if err != nil {
						t.Fatal(err)
					}
					if !tc.wait {
						continue
					}
					got, err := os.ReadFile(paths[mode])
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(got, want) {
						t.Fatalf("direct_io %s, after batch %d: the file (%d bytes) differs from the lines written (%d bytes) at byte %d",
							mode, j, len(got), len(want), diffAt(got, want))
					}
				}
			}
			for _, mode := range []string{DirectOn, DirectOff} {
				if err := exps[mode].Shutdown(ctx); err != nil {
					t.Fatal(err)
				}
				got, err := os.ReadFile(paths[mode])
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("direct_io %s, after Shutdown: the file (%d bytes) differs from the lines written (%d bytes) at byte %d",
						mode, len(got), len(want), diffAt(got, want))
				}
				if d, w := outs[mode].Counts(); d != total || len(w) != 0 {
					t.Errorf("direct_io %s: delivered %d, dropped %v; want %d, none", mode, d, w, total)
				}
				if d := exps[mode].direct; d != nil && d.mapped != nil {
					t.Errorf("direct_io %s: the writer ended without unmapping its buffer", mode)
				}
			}
		})
	}
}

func diffAt(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// TestDirectOtherWriters: with O_DIRECT the file is written at offsets,
// not appended to, so the writer follows what others do to the file:
// after logrotate's copytruncate (the file cut to 0) and after another
// process appended a line, the next lines follow at the file's end,
// without a hole or an overwrite.
func TestDirectOtherWriters(t *testing.T) {
	dir := mountFS(t, "ext4", "64M")
	path := filepath.Join(dir, "flows.jsonl")
	e, out := startFile(t, path, DirectOn, nil)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 2))
	write := func(first, n int) []byte {
		t.Helper()
		b := sizedBatch(rng, first, n)
		if err := exportWait(ctx, e, b); err != nil {
			t.Fatal(err)
		}
		return linesOf(b)
	}
	check := func(step string, want []byte) {
		t.Helper()
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%s: the file (%d bytes) differs from what it should hold (%d bytes) at byte %d", step, len(got), len(want), diffAt(got, want))
		}
	}
	check("first lines", write(0, 3000))
	if err := os.Truncate(path, 0); err != nil { // copytruncate
		t.Fatal(err)
	}
	want := write(3000, 3000)
	check("after the file was truncated", want)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	other := []byte(`{"from":"another writer"}` + "\n")
	if _, err := f.Write(other); err != nil {
		t.Fatal(err)
	}
	f.Close()
	want = append(want, other...)
	want = append(want, write(6000, 10)...)
	want = append(want, write(6010, 3000)...)
	check("after another writer appended", want)
	if d, w := out.Counts(); d != 9010 || len(w) != 0 {
		t.Errorf("delivered %d, dropped %v; want 9010, none", d, w)
	}
}

// TestDirectFallback: direct_io auto writes through the page cache, and
// says why, where O_DIRECT is not used (tmpfs, which accepts O_DIRECT but
// has no device to bypass; ramfs, which refuses it with EINVAL; a
// device); direct_io on fails Start there instead.
func TestDirectFallback(t *testing.T) {
	tests := []struct {
		name, path, reason string
		onErr              error // direct_io on's error, nil: only the message is checked
	}{
		{"tmpfs", filepath.Join(mountFS(t, "tmpfs", "1m"), "flows.jsonl"), "file system tmpfs", nil},
		{"ramfs", filepath.Join(mountFS(t, "ramfs", "1m"), "flows.jsonl"), "file system ramfs", unix.EINVAL},
		{"device", os.DevNull, "", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var l logs
			e, out := startFile(t, tc.path, DirectAuto, l.logger())
			if e.direct != nil {
				t.Fatal("direct_io auto used O_DIRECT")
			}
			if !strings.Contains(l.String(), tc.reason) || (tc.reason != "") != strings.Contains(l.String(), "writing through the page cache") {
				t.Errorf("log %q, want the reason %q", l.String(), tc.reason)
			}
			b := sizedBatch(rand.New(rand.NewPCG(3, 4)), 0, 500)
			if err := exportWait(context.Background(), e, b); err != nil {
				t.Fatal(err)
			}
			if tc.path != os.DevNull {
				if got, err := os.ReadFile(tc.path); err != nil || !bytes.Equal(got, linesOf(b)) {
					t.Errorf("the file differs from the lines written (%v)", err)
				}
			}
			if d, _ := out.Counts(); d != 500 {
				t.Errorf("delivered %d, want 500", d)
			}

			cfg := DefaultConfig()
			cfg.Path, cfg.DirectIO = tc.path+".on", DirectOn
			if tc.path == os.DevNull {
				cfg.Path = os.DevNull
			}
			on, err := New(cfg, plugin.NopSettings(ID))
			if err != nil {
				t.Fatal(err)
			}
			err = on.Start(context.Background())
			defer on.Shutdown(context.Background())
			switch {
			case tc.name == "tmpfs":
				// Linux ≥ 6.6 accepts O_DIRECT on tmpfs: on uses it.
				if err != nil || on.direct == nil {
					t.Errorf("direct_io on, tmpfs: Start = %v, O_DIRECT used %v", err, on.direct != nil)
				}
			case err == nil:
				t.Error("direct_io on: Start succeeded")
			case tc.onErr != nil && !errors.Is(err, tc.onErr):
				t.Errorf("direct_io on: Start = %v, want %v", err, tc.onErr)
			case tc.path == os.DevNull && !strings.Contains(err.Error(), "needs a regular file"):
				t.Errorf("direct_io on, device: Start = %v", err)
			}
		})
	}
}

// TestDirectShutdownDeadline: when Shutdown's deadline has passed, the
// chunks not yet written are dropped (reason shutdown), what was already
// in the writer's buffer, the partial block included, is written, and the
// file is exactly the lines counted as delivered.
func TestDirectShutdownDeadline(t *testing.T) {
	path := filepath.Join(mountFS(t, "ext4", "64M"), "flows.jsonl")
	e, out := startFile(t, path, DirectOn, nil)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(5, 6))
	var want []byte
	total := 0
	for range 100 {
		b := sizedBatch(rng, total, 300)
		total += 300
		want = append(want, linesOf(b)...)
		if err := e.Export(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	expired, cancel := context.WithCancel(ctx)
	cancel()
	if err := e.Shutdown(expired); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("Shutdown = %v", err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	d, w := out.Counts()
	if d+w[plugin.DropShutdown] != total || len(w) > 1 {
		t.Errorf("delivered %d, dropped %v; want %d in all, dropped only for shutdown", d, w, total)
	}
	if !bytes.Equal(got, want[:len(got)]) || bytes.Count(got, newline) != d || (len(got) > 0 && got[len(got)-1] != '\n') {
		t.Errorf("the file (%d bytes) is not the %d lines delivered, whole, in order", len(got), d)
	}
	t.Logf("delivered %d, dropped %d", d, w[plugin.DropShutdown])
}
