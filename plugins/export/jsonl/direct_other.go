//go:build !linux

package jsonl

import (
	"errors"
	"os"
)

// directFile is Linux-only; elsewhere files are written through the page
// cache.
type directFile struct{ align int64 }

func openDirect(*os.File, string, string) (*directFile, error) {
	return nil, errors.New("direct I/O is implemented on Linux only")
}

func (*directFile) unwritten() bool    { return false }
func (*directFile) close() error       { return nil }
func (*directFile) release()           {}
func (e *Exporter) flushDirect(*chunk) {}
func (e *Exporter) flushTail()         {}

const directChunks = chunks
