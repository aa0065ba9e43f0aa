package wire

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/weir-flow/weir/core/abi"
	"github.com/weir-flow/weir/core/flow"
)

// A packed batch is an ABI batch buffer with each record block cut down to
// the bytes its mask says are encoded. An ABI block is RecordSize bytes
// whatever the mask, so a plugin that reads four fields would otherwise get
// hundreds of unspecified bytes per record across the process boundary.
//
//	u32     MagicPacked ("WEIP")
//	[hs]    the ABI batch header, verbatim (hs = its header size field)
//	[n][k]  per record, the encoded spans of its block, in block order
//	[dl]    the data section, verbatim (its offsets are section-relative)
//
// [Unpack] rebuilds an ABI batch buffer; bytes outside the spans are zero,
// which the ABI leaves unspecified. The spans are derived from the header's
// mask, so both ends agree without negotiation.
const MagicPacked uint32 = 'W' | 'E'<<8 | 'I'<<16 | 'P'<<24

// ABI batch header offsets (docs/abi.md).
const (
	hMagic      = 0
	hHeaderSize = 6
	hCount      = 8
	hRecordSize = 12
	hRecordsOff = 16
	hDataOff    = 20
	hDataLen    = 24
	hFlags      = 28
	hFields     = 32
	minHeader   = 48

	// Record block prelude (docs/abi.md).
	rPresent  = 0  // 16 bytes, always decoded
	rExporter = 16 // 24 bytes: address, family, port, domain (FlagExporter)
	rExtra    = 40 // 8 bytes: Extra offset and count (FlagExtra)
	rFields   = 48
)

var le = binary.LittleEndian

// span is a byte range of a record block.
type span struct{ off, end int }

// fieldSpans are the typed fields' ranges in a v1 block, from flow.Fields
// and the layout's sizes; nil if they disagree with abi.RecordSize (then
// batches are sent unpacked).
var fieldSpans = func() []span {
	spans := make([]span, flow.NumFields)
	off := rFields
	for i := range flow.Fields {
		f := &flow.Fields[i]
		size := int(f.Width)
		switch f.Kind {
		case flow.KindAddress:
			size = 17
		case flow.KindString:
			size = 8
		case flow.KindTime:
			size = 8
		}
		spans[i] = span{off, off + size}
		off += size
	}
	if off != abi.RecordSize {
		return nil
	}
	return spans
}()

// spansOf returns the merged spans of a block encoded with mask m.
func spansOf(m abi.Mask) []span {
	out := []span{{rPresent, rPresent + 16}}
	add := func(s span) {
		if last := &out[len(out)-1]; last.end == s.off {
			last.end = s.end
			return
		}
		out = append(out, s)
	}
	if m.Flags&abi.FlagExporter != 0 {
		add(span{rExporter, rExporter + 24})
	}
	if m.Flags&abi.FlagExtra != 0 {
		add(span{rExtra, rExtra + 8})
	}
	for f := range flow.NumFields {
		if m.Fields.Has(flow.FieldID(f)) {
			add(fieldSpans[f])
		}
	}
	return out
}

// Packable reports whether batches encoded with mask m are worth packing:
// the spans cover clearly less than a block.
func Packable(m abi.Mask) bool {
	if fieldSpans == nil {
		return false
	}
	n := 0
	for _, s := range spansOf(m) {
		n += s.end - s.off
	}
	return 2*n < abi.RecordSize
}

// ErrPacked wraps errors about a packed batch that does not follow the
// layout.
var ErrPacked = errors.New("malformed packed batch")

type header struct {
	hs, n, recSize, recOff, dataOff, dataLen int
	mask                                     abi.Mask
}

func readHeader(buf []byte) (header, error) {
	if len(buf) < minHeader {
		return header{}, fmt.Errorf("%w: %d-byte header", ErrPacked, len(buf))
	}
	h := header{
		hs:      int(le.Uint16(buf[hHeaderSize:])),
		n:       int(le.Uint32(buf[hCount:])),
		recSize: int(le.Uint32(buf[hRecordSize:])),
		recOff:  int(le.Uint32(buf[hRecordsOff:])),
		dataOff: int(le.Uint32(buf[hDataOff:])),
		dataLen: int(le.Uint32(buf[hDataLen:])),
		mask: abi.Mask{
			Fields: flow.FieldSet{le.Uint64(buf[hFields:]), le.Uint64(buf[hFields+8:])},
			Flags:  le.Uint32(buf[hFlags:]),
		},
	}
	if h.hs < minHeader || h.hs > len(buf) || h.recSize != abi.RecordSize {
		return header{}, fmt.Errorf("%w: header size %d, record size %d", ErrPacked, h.hs, h.recSize)
	}
	return h, nil
}

// Pack appends the packed form of the ABI batch buffer src (as
// abi.AppendBatchMask writes it) to dst.
func Pack(dst, src []byte) ([]byte, error) {
	if fieldSpans == nil {
		return nil, fmt.Errorf("%w: layout unknown to this build", ErrPacked)
	}
	if len(src) < 4 || le.Uint32(src[hMagic:]) != abi.MagicBatch {
		return nil, fmt.Errorf("%w: not an abi batch", ErrPacked)
	}
	h, err := readHeader(src)
	if err != nil {
		return nil, err
	}
	if uint64(h.recOff)+uint64(h.n)*uint64(h.recSize) > uint64(len(src)) || uint64(h.dataOff)+uint64(h.dataLen) > uint64(len(src)) {
		return nil, fmt.Errorf("%w: sections beyond the buffer", ErrPacked)
	}
	spans := spansOf(h.mask)
	dst = le.AppendUint32(dst, MagicPacked)
	dst = append(dst, src[:h.hs]...)
	for i := 0; i < h.n; i++ {
		blk := src[h.recOff+i*h.recSize:]
		for _, s := range spans {
			dst = append(dst, blk[s.off:s.end]...)
		}
	}
	return append(dst, src[h.dataOff:h.dataOff+h.dataLen]...), nil
}

// Unpack appends to dst the ABI batch buffer that the packed batch buf
// stands for. It validates every length: a malformed buf returns an error
// wrapping ErrPacked.
func Unpack(dst, buf []byte) ([]byte, error) {
	if fieldSpans == nil {
		return nil, fmt.Errorf("%w: layout unknown to this build", ErrPacked)
	}
	if len(buf) < 4 || le.Uint32(buf) != MagicPacked {
		return nil, fmt.Errorf("%w: bad magic", ErrPacked)
	}
	buf = buf[4:]
	h, err := readHeader(buf)
	if err != nil {
		return nil, err
	}
	spans := spansOf(h.mask)
	k := 0
	for _, s := range spans {
		k += s.end - s.off
	}
	packed := uint64(h.n) * uint64(k)
	if uint64(h.hs)+packed+uint64(h.dataLen) != uint64(len(buf)) {
		return nil, fmt.Errorf("%w: %d bytes for %d records of %d bytes and %d bytes of data", ErrPacked, len(buf), h.n, k, h.dataLen)
	}
	start := len(dst)
	blocks := h.n * abi.RecordSize
	total := h.hs + blocks + h.dataLen
	if cap(dst)-start < total {
		grown := make([]byte, start, start+total)
		copy(grown, dst)
		dst = grown
	}
	dst = dst[:start+total]
	out := dst[start:]
	copy(out, buf[:h.hs])
	le.PutUint32(out[hRecordsOff:], uint32(h.hs))
	le.PutUint32(out[hDataOff:], uint32(h.hs+blocks))
	body := out[h.hs : h.hs+blocks]
	clear(body)
	in := buf[h.hs:]
	for i := 0; i < h.n; i++ {
		blk := body[i*abi.RecordSize:]
		for _, s := range spans {
			in = in[copy(blk[s.off:s.end], in):]
		}
	}
	copy(out[h.hs+blocks:], in)
	return dst, nil
}
