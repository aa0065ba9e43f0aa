package jsonl

import (
	"bufio"
	"context"
	_ "embed"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/ipfix"
	"github.com/weir-flow/weir/core/plugin"
)

// ID is the plugin's registry ID.
const ID = "export.jsonl"

// ExampleYAML is example.yaml, a complete pipeline using the plugin.
//
//go:embed example.yaml
var ExampleYAML string

func init() {
	plugin.Register(plugin.Info{
		ID:        ID,
		Summary:   "write one JSON object per record (IANA/Antrea IE names) to a file or stdout",
		NewConfig: plugin.Defaults(DefaultConfig),
		New:       plugin.Constructor(New),
	})
}

// Exporter writes JSON lines. Export is called from one goroutine.
type Exporter struct {
	cfg  *Config
	path string

	mu     sync.Mutex
	w      *bufio.Writer
	closer io.Closer
	buf    []byte
}

// New returns an exporter; the file is opened by Start.
func New(cfg *Config, set plugin.Settings) (*Exporter, error) {
	return &Exporter{cfg: cfg, path: set.Path(cfg.Path)}, nil
}

// NewWriter returns an exporter writing to w, for tests and the bench.
func NewWriter(cfg *Config, w io.Writer) *Exporter {
	return &Exporter{cfg: cfg, w: bufio.NewWriterSize(w, 64<<10)}
}

// Start opens the output.
func (e *Exporter) Start(context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.w != nil {
		return nil
	}
	if e.path == "-" {
		e.w = bufio.NewWriterSize(os.Stdout, 64<<10)
		return nil
	}
	f, err := os.OpenFile(e.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open %s: %w", e.path, err)
	}
	e.w, e.closer = bufio.NewWriterSize(f, 64<<10), f
	return nil
}

// Export writes b's records and flushes, so readers see whole batches.
func (e *Exporter) Export(_ context.Context, b *flow.Batch) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.w == nil {
		return fmt.Errorf("export.jsonl: Export before Start")
	}
	for _, r := range b.Records {
		e.buf = AppendRecord(e.buf[:0], r, e.cfg.Extra)
		e.buf = append(e.buf, '\n')
		if _, err := e.w.Write(e.buf); err != nil {
			return fmt.Errorf("write %s: %w", e.path, err)
		}
	}
	if err := e.w.Flush(); err != nil {
		return fmt.Errorf("write %s: %w", e.path, err)
	}
	return nil
}

// Shutdown flushes and closes the output. It is idempotent.
func (e *Exporter) Shutdown(context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	var err error
	if e.w != nil {
		err = e.w.Flush()
	}
	if e.closer != nil {
		if cerr := e.closer.Close(); err == nil {
			err = cerr
		}
		e.closer = nil
	}
	e.w = nil
	return err
}

const timeLayout = "2006-01-02T15:04:05.000Z07:00"

// AppendRecord appends r as one JSON object (no newline) to dst: the
// exporter's address and observation domain, the present typed fields, and,
// if extra is set, the verbatim IEs.
func AppendRecord(dst []byte, r *flow.Record, extra bool) []byte {
	dst = append(dst, '{')
	first := true
	key := func(name string) {
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = append(dst, '"')
		dst = append(dst, name...)
		dst = append(dst, '"', ':')
	}
	if a := r.Exporter.Addr(); a.IsValid() {
		a = a.Unmap()
		if a.Is4() {
			key("exporterIPv4Address")
		} else {
			key("exporterIPv6Address")
		}
		dst = strconv.AppendQuote(dst, a.String())
		key("exporterTransportPort")
		dst = strconv.AppendUint(dst, uint64(r.Exporter.Port()), 10)
	}
	key("observationDomainId")
	dst = strconv.AppendUint(dst, uint64(r.ObservationDomainID), 10)
	present := r.PresentSet()
	for id, ok := present.Next(0); ok; id, ok = present.Next(id + 1) {
		f := &flow.Fields[id]
		switch f.Kind {
		case flow.KindAddress:
			a := r.Addr(f.ID)
			if !a.IsValid() {
				continue
			}
			if a.Unmap().Is4() {
				key(f.Name)
				a = a.Unmap()
			} else {
				key(f.Name6)
			}
			dst = append(dst, '"')
			dst = a.AppendTo(dst)
			dst = append(dst, '"')
		case flow.KindString:
			key(f.Name)
			dst = appendString(dst, r.String(f.ID))
		case flow.KindTime:
			key(f.Name)
			dst = append(dst, '"')
			dst = time.Unix(0, int64(r.Uint(f.ID))).UTC().AppendFormat(dst, timeLayout)
			dst = append(dst, '"')
		default:
			key(f.Name)
			dst = strconv.AppendUint(dst, r.Uint(f.ID), 10)
		}
	}
	if extra {
		for i := range r.Extra {
			x := &r.Extra[i]
			info, ok := ipfix.LookupIE(x.Key())
			if !ok {
				if !first {
					dst = append(dst, ',')
				}
				first = false
				dst = fmt.Appendf(dst, `"ie%d_%d":"`, x.Enterprise, x.Element)
				dst = hex.AppendEncode(dst, x.Value)
				dst = append(dst, '"')
				continue
			}
			key(info.Name)
			dst = appendValue(dst, ipfix.FormatValue(info.Type, x.Value))
		}
	}
	return append(dst, '}')
}

func appendValue(dst []byte, v any) []byte {
	switch v := v.(type) {
	case string:
		return appendString(dst, v)
	case uint64:
		return strconv.AppendUint(dst, v, 10)
	case int64:
		return strconv.AppendInt(dst, v, 10)
	case float64:
		return strconv.AppendFloat(dst, v, 'g', -1, 64)
	case bool:
		return strconv.AppendBool(dst, v)
	case nil:
		return append(dst, "null"...)
	default:
		return appendString(dst, fmt.Sprint(v))
	}
}

// appendString appends s as a JSON string.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			dst = append(dst, c)
			i++
			continue
		}
		if c < utf8.RuneSelf {
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\t':
				dst = append(dst, '\\', 't')
			case '\r':
				dst = append(dst, '\\', 'r')
			default:
				dst = fmt.Appendf(dst, `\u%04x`, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, `\ufffd`...)
		} else {
			dst = append(dst, s[i:i+size]...)
		}
		i += size
	}
	return append(dst, '"')
}

var _ plugin.Exporter = (*Exporter)(nil)
