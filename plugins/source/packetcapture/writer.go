package packetcapture

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/pcapgo"
)

// fileWriter writes pcapng files with one interface, rotating by size.
type fileWriter struct {
	path     string
	maxBytes int64
	maxFiles int
	iface    pcapgo.NgInterface

	seq     int      // number of the current file: 0 is path itself
	names   []string // files written and kept, oldest first
	f       *os.File
	bw      *bufio.Writer
	ng      *pcapgo.NgWriter
	size    int64 // bytes of the current file so far
	packets int   // packets in the current file
}

func newFileWriter(path string, rot Rotation, iface pcapgo.NgInterface) (*fileWriter, error) {
	w := &fileWriter{path: path, maxBytes: int64(rot.MaxBytes), maxFiles: rot.MaxFiles, iface: iface}
	if err := w.open(); err != nil {
		return nil, err
	}
	return w, nil
}

// name returns the file name of rotation seq: path, then NAME.seq.EXT.
func (w *fileWriter) name(seq int) string {
	if seq == 0 {
		return w.path
	}
	ext := filepath.Ext(w.path)
	return fmt.Sprintf("%s.%d%s", strings.TrimSuffix(w.path, ext), seq, ext)
}

// countingWriter counts what reaches the file.
type countingWriter struct {
	w *fileWriter
}

func (c countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.f.Write(p)
	c.w.size += int64(n)
	return n, err
}

func (w *fileWriter) open() error {
	name := w.name(w.seq)
	f, err := os.OpenFile(name, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o640)
	if err != nil {
		return fmt.Errorf("open capture file: %w", err)
	}
	w.f, w.size, w.packets = f, 0, 0
	w.bw = bufio.NewWriterSize(countingWriter{w}, 1<<16)
	ng, err := pcapgo.NewNgWriterInterface(w.bw, w.iface, pcapgo.NgWriterOptions{
		SectionInfo: pcapgo.NgSectionInfo{Application: "weir source.packetcapture", OS: "linux"},
	})
	if err != nil {
		f.Close()
		return fmt.Errorf("write pcapng header to %s: %w", name, err)
	}
	w.ng = ng
	w.names = append(w.names, name)
	return nil
}

// current returns the file being written.
func (w *fileWriter) current() string { return w.names[len(w.names)-1] }

// write appends one packet; the pcapng interface index is always 0, the
// one interface of the section (not the OS ifindex the capture reports).
func (w *fileWriter) write(ci gopacket.CaptureInfo, data []byte) (rotated bool, err error) {
	if w.maxBytes > 0 && w.packets > 0 && w.size+int64(w.bw.Buffered())+int64(len(data))+32 > w.maxBytes {
		if err := w.rotate(); err != nil {
			return false, err
		}
		rotated = true
	}
	ci.InterfaceIndex = 0
	if err := w.ng.WritePacket(ci, data); err != nil {
		return rotated, fmt.Errorf("write packet to %s: %w", w.current(), err)
	}
	w.packets++
	return rotated, nil
}

func (w *fileWriter) rotate() error {
	if err := w.closeFile(); err != nil {
		return err
	}
	w.seq++
	if err := w.open(); err != nil {
		return err
	}
	for w.maxFiles > 0 && len(w.names) > w.maxFiles {
		if err := os.Remove(w.names[0]); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("remove rotated capture file: %w", err)
		}
		w.names = w.names[1:]
	}
	return nil
}

func (w *fileWriter) closeFile() error {
	if w.f == nil {
		return nil
	}
	err := w.ng.Flush()
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	w.f = nil
	if err != nil {
		return fmt.Errorf("close capture file %s: %w", w.current(), err)
	}
	return nil
}

// Files returns the kept files, oldest first.
func (w *fileWriter) files() []string { return append([]string(nil), w.names...) }
