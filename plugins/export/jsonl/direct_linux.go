//go:build linux

package jsonl

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/weir-flow/weir/core/plugin"
)

// directFile writes a regular file with O_DIRECT: whole aligned blocks
// from an aligned buffer, straight to the device, without the page
// cache's copy and writeback. It is used by the writer goroutine only.
//
// buf[:n] is the file's content from offset off (a multiple of align):
// the lines not yet wholly in the file, from the start of the block
// holding the first of them. Only whole blocks are written with O_DIRECT,
// so no padding is ever written and the file never holds bytes past the
// lines written. The last partial block stays in buf: it is re-written,
// completed, at its aligned offset by the next write, or appended through
// the page cache (the O_APPEND file) at a flush point, when the writer has
// nothing else to write. Either way the file's size is exactly the bytes
// of the lines in it.
type directFile struct {
	f     *os.File // O_RDWR|O_DIRECT; the same file as app
	fd    int
	app   *os.File // the O_APPEND file: the last partial block at flush points
	align int64

	buf     []byte // aligned, len = capacity; content buf[:n]
	mapped  []byte // the mapping buf lies in (hugeBytes), until release
	scratch []byte // one aligned block, for reading the file's last one
	n       int
	off     int64 // file offset of buf[0]
	end     int64 // the file's size, as written by us: buf[:end-off] is in the file
	line    int64 // the start of the first line not wholly in the file (off ≤ line ≤ end)
	pending int   // lines in buf[end-off:n]: handed over, not in the file yet

	acks []directAck // ExportAcked callbacks waiting for the file to reach end
}

// directAck is a batch's stored callback, to run once the file reaches end
// (a stream offset), or its lines are dropped.
type directAck struct {
	end int64
	fn  func()
}

const (
	directSize = directGather + 2*chunkSize // buf: what flushDirect gathers, a chunk and the lines kept from the last write
	maxAlign   = 64 << 10
)

var newline = []byte{'\n'}

// openDirect opens the file app has open a second time, with O_DIRECT,
// or says why it will not (mode is the config's direct_io, auto or on):
// with auto, a file system that is not a local block-device one, or that
// refuses O_DIRECT (EINVAL: tmpfs before Linux 6.6, ramfs, some FUSE and
// network file systems).
func openDirect(app *os.File, path, mode string) (*directFile, error) {
	var fs unix.Statfs_t
	if err := unix.Fstatfs(int(app.Fd()), &fs); err != nil {
		return nil, fmt.Errorf("statfs: %w", err)
	}
	if name, ok := directFS(fs.Type); mode == DirectAuto && !ok {
		return nil, fmt.Errorf("file system %s: direct_io auto uses O_DIRECT on ext4, xfs, btrfs and f2fs only (direct_io: on forces it)", name)
	}
	align := int64(4096) // the largest logical block size in use, and the page size
	var stx unix.Statx_t
	if err := unix.Statx(int(app.Fd()), "", unix.AT_EMPTY_PATH, unix.STATX_DIOALIGN, &stx); err == nil && stx.Mask&unix.STATX_DIOALIGN != 0 {
		align = max(align, int64(stx.Dio_offset_align), int64(stx.Dio_mem_align))
	}
	if align > maxAlign || align&(align-1) != 0 {
		return nil, fmt.Errorf("direct I/O alignment %d bytes: want a power of two up to %d", align, maxAlign)
	}
	f, err := os.OpenFile(path, os.O_RDWR|unix.O_DIRECT, 0)
	if err != nil {
		return nil, fmt.Errorf("open with O_DIRECT: %w", err)
	}
	st, err1 := app.Stat()
	dst, err2 := f.Stat()
	if err := errors.Join(err1, err2); err != nil || !os.SameFile(st, dst) {
		f.Close()
		return nil, fmt.Errorf("open with O_DIRECT: %s was replaced meanwhile (%v)", path, err)
	}
	d := &directFile{f: f, fd: int(f.Fd()), app: app, align: align}
	d.buf, d.mapped = hugeBytes(directSize, align)
	d.scratch = alignedBytes(int(align), align)
	if err := d.resync(); err != nil {
		d.release()
		f.Close()
		return nil, err
	}
	return d, nil
}

// directFS names a file system type (statfs(2) f_type) and reports
// whether direct_io auto uses O_DIRECT on it.
func directFS(t int64) (string, bool) {
	switch t {
	case unix.EXT4_SUPER_MAGIC: // also ext2 and ext3
		return "ext4", true
	case unix.XFS_SUPER_MAGIC:
		return "xfs", true
	case unix.BTRFS_SUPER_MAGIC:
		return "btrfs", true
	case unix.F2FS_SUPER_MAGIC:
		return "f2fs", true
	case unix.TMPFS_MAGIC:
		return "tmpfs", false
	case unix.RAMFS_MAGIC:
		return "ramfs", false
	case unix.NFS_SUPER_MAGIC:
		return "nfs", false
	case unix.FUSE_SUPER_MAGIC:
		return "fuse", false
	case unix.OVERLAYFS_SUPER_MAGIC:
		return "overlayfs", false
	}
	return fmt.Sprintf("0x%x", t), false
}

// hugeBytes returns size bytes aligned to align, and the anonymous mapping
// they lie in, backed by transparent huge pages where the kernel allows
// (THP enabled "always" or "madvise"): pinning a write's pages for the
// device then walks a few 2 MiB pages instead of a thousand 4 KiB ones.
// On the 2-core bench VM, pwrite fell from 9.8 % to 3.4 % of weir's CPU
// and 1.5 M records/s became exact (docs/bench.md). The mapping is outside
// the Go heap, so it is unmapped explicitly (release). Where mmap fails,
// the buffer comes from the heap and the mapping is nil.
func hugeBytes(size int, align int64) (buf, mapping []byte) {
	const huge = 2 << 20
	mem, err := unix.Mmap(-1, 0, size+huge, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return alignedBytes(size, align), nil
	}
	skip := (huge - int(uintptr(unsafe.Pointer(unsafe.SliceData(mem))))%huge) % huge
	buf = mem[skip : skip+size : skip+size]
	_ = unix.Madvise(buf, unix.MADV_HUGEPAGE) // a hint: EINVAL without THP
	return buf, mem
}

// release unmaps buf's mapping. The writer calls it when it ends, as the
// only user of buf.
func (d *directFile) release() {
	if d.mapped != nil {
		_ = unix.Munmap(d.mapped)
		d.buf, d.mapped = nil, nil
	}
}

// alignedBytes returns size bytes starting at a multiple of align in
// memory (the Go heap does not move objects).
func alignedBytes(size int, align int64) []byte {
	mem := make([]byte, size+int(align))
	skip := int(align-int64(uintptr(unsafe.Pointer(unsafe.SliceData(mem))))%align) % int(align)
	return mem[skip : skip+size : skip+size]
}

func (d *directFile) alignDown(x int64) int64 { return x &^ (d.align - 1) }

// unwritten reports whether lines handed over are not in the file yet.
func (d *directFile) unwritten() bool { return d.end < d.off+int64(d.n) }

// room is what put can take now, keeping a block for resync.
func (d *directFile) room() int { return len(d.buf) - d.n - int(d.align) }

// grow makes room for need bytes (a line longer than the buffer).
func (d *directFile) grow(need int) {
	size := (d.n + need + int(d.align) + chunkSize - 1) / chunkSize * chunkSize
	b := alignedBytes(size, d.align)
	copy(b, d.buf[:d.n])
	d.release()
	d.buf = b
}

// put appends p, lines whole lines, to the content to write.
func (d *directFile) put(p []byte, lines int) {
	d.n += copy(d.buf[d.n:], p)
	d.pending += lines
}

// writeBlocks writes, with O_DIRECT, the whole blocks of buf that are not
// wholly in the file yet. When that fails, the file is cut back to its
// last whole line.
func (d *directFile) writeBlocks() error {
	if d.alignDown(int64(d.n)) <= d.alignDown(d.end-d.off) {
		return nil // no block completed
	}
	if err := d.resync(); err != nil {
		return err
	}
	from, to := d.alignDown(d.end-d.off), d.alignDown(int64(d.n))
	done := int64(0)
	var err error
	for from+done < to {
		var m int
		m, err = unix.Pwrite(d.fd, d.buf[from+done:to], d.off+from+done)
		if err == unix.EINTR {
			continue
		}
		if err == nil && m == 0 {
			err = errors.New("short write")
		}
		if err != nil {
			break
		}
		done += int64(m)
		if done%d.align != 0 && from+done < to {
			err = fmt.Errorf("short write of %d bytes, not whole blocks", done)
			break
		}
	}
	if err != nil {
		return d.cut(max(d.end, d.off+from+done), fmt.Errorf("write %d bytes at %d (O_DIRECT): %w", to-from, d.off+from, err))
	}
	d.end = max(d.end, d.off+to)
	d.advance()
	return nil
}

// writeTail appends what is not in the file yet (less than a block, the
// end of a line and whole lines) through the page cache, so that the
// file ends at the last line handed over. When that fails, the file is
// cut back to its last whole line.
func (d *directFile) writeTail() error {
	p := d.buf[d.end-d.off : d.n]
	if len(p) == 0 {
		return nil
	}
	m, err := d.app.Write(p)
	if err != nil {
		return d.cut(d.end+int64(m), err)
	}
	d.end += int64(m)
	d.advance()
	return nil
}

// cut truncates the file to its last whole line before written (what
// a failed write got into the file), adding to err if that fails too.
func (d *directFile) cut(written int64, err error) error {
	at := d.line
	if i := bytes.LastIndexByte(d.buf[d.line-d.off:written-d.off], '\n'); i >= 0 {
		at = d.line + int64(i) + 1
	}
	if terr := unix.Ftruncate(d.fd, at); terr != nil {
		err = fmt.Errorf("%w (and cutting the partial line: %v)", err, terr)
	}
	d.end, d.line = at, at
	return err
}

// advance moves line past the lines now wholly in the file and drops the
// blocks before it from buf.
func (d *directFile) advance() {
	if i := bytes.LastIndexByte(d.buf[d.line-d.off:d.end-d.off], '\n'); i >= 0 {
		d.line += int64(i) + 1
	}
	if k := d.alignDown(d.line - d.off); k > 0 {
		d.n = copy(d.buf, d.buf[k:d.n])
		d.off += k
	}
}

// resync continues at the file's end when another writer changed its
// size (logrotate's copytruncate, an append): buf then holds the file's
// last partial block followed by what is not written yet. Called when the
// file is opened and before each write with O_DIRECT.
func (d *directFile) resync() error {
	var st unix.Stat_t
	if err := unix.Fstat(d.fd, &st); err != nil {
		return fmt.Errorf("fstat: %w", err)
	}
	if st.Size == d.end {
		return nil
	}
	rest := d.buf[d.end-d.off : d.n]
	off := d.alignDown(st.Size)
	head := 0
	if off < st.Size {
		m, err := unix.Pread(d.fd, d.scratch, off)
		for err == unix.EINTR {
			m, err = unix.Pread(d.fd, d.scratch, off)
		}
		if err != nil {
			return fmt.Errorf("read the last block at %d (O_DIRECT): %w", off, err)
		}
		head = min(m, int(st.Size-off))
	}
	d.n = head + copy(d.buf[head:], rest)
	copy(d.buf, d.scratch[:head])
	delta := off + int64(head) - d.end
	for i := range d.acks {
		d.acks[i].end += delta
	}
	d.off, d.end = off, off+int64(head)
	d.line = d.end
	return nil
}

// drop forgets what is not in the file yet and returns how many lines
// that was; the acks waiting for them become due.
func (d *directFile) drop() int {
	lines := d.pending
	d.n, d.pending = int(d.end-d.off), 0
	for i := range d.acks {
		d.acks[i].end = min(d.acks[i].end, d.end)
	}
	return lines
}

// runAcks runs the acks whose lines are in the file.
func (d *directFile) runAcks() {
	i := 0
	for ; i < len(d.acks) && d.acks[i].end <= d.end; i++ {
		d.acks[i].fn()
	}
	k := copy(d.acks, d.acks[i:])
	clear(d.acks[k:])
	d.acks = d.acks[:k]
}

func (d *directFile) close() error { return d.f.Close() }

// flushDirect is flush with O_DIRECT: c's lines, and those of the chunks
// that became ready meanwhile (up to directGather bytes: the longer a
// write takes, the larger the next one, as the device is fastest with
// large writes), join the content to write, and every whole block is
// written; the last partial block waits for the next write or a flush
// point (flushTail). Lines count as delivered, and acks run, once in the
// file.
func (e *Exporter) flushDirect(c *chunk) {
	d := e.direct
	for first := c; c != nil; c = e.gather(c, c != first) {
		if e.abandoned.Load() {
			e.dropChunk(c)
		} else {
			e.putDirect(c)
		}
	}
	var err error
	if !e.abandoned.Load() {
		err = e.retryDirect(d.writeBlocks)
	}
	e.deliverDirect()
	if err != nil {
		e.dropDirect(0, err)
	}
	d.runAcks()
}

// directGather is how much flushDirect gathers before it writes: the
// largest request of most block devices (max_sectors_kb 4096 on virtio and
// NVMe), which dd writes at about 1.5× the speed of 1 MiB.
const directGather = 4 << 20

// directChunks is the number of chunks with O_DIRECT: more than chunks, so
// that directGather can wait, ready, while a write is in progress.
const directChunks = 6

// gather recycles done if it is a chunk gather returned (run recycles the
// first), and returns the ready chunk when there is one, less than
// directGather is waiting to be written and the buffer has room for it.
func (e *Exporter) gather(done *chunk, recycle bool) *chunk {
	d := e.direct
	e.mu.Lock()
	defer e.mu.Unlock()
	if recycle {
		done.reset()
		e.spare = append(e.spare, done)
		e.cond.Broadcast()
	}
	if len(e.ready) == 0 || d.n-int(d.end-d.off) >= directGather || len(e.ready[0].buf) > d.room() {
		return nil
	}
	return e.nextReady()
}

// putDirect copies c's lines into the content to write (writing whole
// blocks first when it has no room left) and queues c's acks.
func (e *Exporter) putDirect(c *chunk) {
	d := e.direct
	p, lines := c.buf, c.lines
	for len(p) > 0 {
		if len(p) > d.room() && d.alignDown(int64(d.n)) > d.alignDown(d.end-d.off) {
			if err := e.retryDirect(d.writeBlocks); err != nil {
				e.dropDirect(lines, err)
				p, lines = nil, 0
				break
			}
			e.deliverDirect()
		}
		part, k := p, lines
		if room := d.room(); len(p) > room {
			cut := bytes.LastIndexByte(p[:max(room, 0)], '\n') + 1
			if cut == 0 { // a line longer than the room left
				d.grow(len(p))
				continue
			}
			part, k = p[:cut], bytes.Count(p[:cut], newline)
		}
		d.put(part, k)
		p, lines = p[len(part):], lines-k
	}
	for _, ack := range c.acks {
		d.acks = append(d.acks, directAck{d.off + int64(d.n), ack})
	}
}

// dropDirect drops what is not in the file yet, and lines more lines not
// copied in, after the failed write err.
func (e *Exporter) dropDirect(lines int, err error) {
	lost := e.direct.drop() + lines
	e.writeDropped.Add(uint64(lost))
	e.outcome.Dropped(plugin.DropWriteError, lost)
	e.logLimited("records dropped: write failed", "path", e.path, "records", lost, "err", err)
}

// flushTail writes the last partial block at a flush point (see
// directFile).
func (e *Exporter) flushTail() {
	d := e.direct
	err := e.retryDirect(d.writeTail)
	e.deliverDirect()
	if err != nil {
		e.dropDirect(0, err)
	}
	d.runAcks()
}

// deliverDirect reports the lines that reached the file.
func (e *Exporter) deliverDirect() {
	d := e.direct
	left := bytes.Count(d.buf[d.end-d.off:d.n], newline)
	if k := d.pending - left; k > 0 {
		d.pending = left
		e.written.Add(uint64(k))
		e.outcome.Delivered(k)
	}
}

// retryDirect runs write until it succeeds, retrying with back-off as
// write does, until retry_for after the first failure or Shutdown.
func (e *Exporter) retryDirect(write func() error) error {
	var deadline time.Time
	wait := minRetry
	for {
		err := write()
		if err == nil {
			return nil
		}
		e.failures.Add(1)
		e.deliverDirect() // the whole lines the failed write got in
		if deadline.IsZero() {
			deadline = time.Now().Add(e.cfg.RetryFor)
		}
		if time.Now().Add(wait).After(deadline) || !e.sleep(wait) {
			return err
		}
		e.logLimited("write failed, retrying", "path", e.path, "records_left", e.direct.pending, "retry_in", wait.String(), "err", err)
		wait = min(2*wait, maxRetry)
	}
}
