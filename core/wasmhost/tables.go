package wasmhost

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// limits bound what one instance can take: linear memory (64 KiB pages)
// and, on the host beside it, each table's elements (8 bytes each).
type limits struct {
	pages  uint32
	tables uint32
}

// ErrTableLimit is returned when a module's table starts larger than
// table_limit.
var ErrTableLimit = errors.New("table larger than table_limit")

// boundTables returns wasm with every table it defines given a maximum of
// at most limit elements, so table.grow past it fails in the guest (it
// returns -1, WebAssembly 2.0 §4.4.6) instead of allocating host memory:
// wazero keeps a table's elements in host memory, outside memory_limit,
// and lets an unbounded table grow to 2^32-1 elements (32 GiB). A table
// whose initial size is already past limit is refused. Only the table
// section is rewritten; a module with none is returned as it is.
//
// # Notes
//   - Imported tables are left alone: Weir's host modules export none,
//     so a module importing one does not instantiate.
func boundTables(wasm []byte, limit uint32) ([]byte, error) {
	if len(wasm) < 8 {
		return wasm, nil
	}
	for off := 8; off < len(wasm); {
		id := wasm[off]
		size, n := binary.Uvarint(wasm[off+1:])
		if n <= 0 || size > uint64(len(wasm)-off-1-n) {
			return nil, fmt.Errorf("section %d at offset %d: bad size: %w", id, off, ErrNotWasm)
		}
		start, end := off+1+n, off+1+n+int(size)
		if id != 4 { // not the table section
			off = end
			continue
		}
		body, err := boundTableSection(wasm[start:end], limit)
		if err != nil {
			return nil, err
		}
		out := make([]byte, 0, len(wasm)+len(body)-int(size)+5)
		out = append(out, wasm[:off+1]...)
		out = binary.AppendUvarint(out, uint64(len(body)))
		out = append(out, body...)
		return append(out, wasm[end:]...), nil
	}
	return wasm, nil
}

// boundTableSection rewrites a table section's limits: vec(reftype
// limits), limits being 0x00 min or 0x01 min max (u32 LEB128).
func boundTableSection(sec []byte, limit uint32) ([]byte, error) {
	count, n := binary.Uvarint(sec)
	if n <= 0 {
		return nil, fmt.Errorf("table section: bad count: %w", ErrNotWasm)
	}
	out := binary.AppendUvarint(nil, count)
	p := n
	u32 := func() (uint64, error) {
		v, k := binary.Uvarint(sec[min(p, len(sec)):])
		if k <= 0 || v > 1<<32-1 {
			return 0, fmt.Errorf("table section: bad limit at %d: %w", p, ErrNotWasm)
		}
		p += k
		return v, nil
	}
	for i := uint64(0); i < count; i++ {
		if p+2 > len(sec) {
			return nil, fmt.Errorf("table section: truncated: %w", ErrNotWasm)
		}
		ref, flag := sec[p], sec[p+1]
		p += 2
		if flag > 1 {
			return nil, fmt.Errorf("table %d: limits flag %#x not supported: %w", i, flag, ErrNotWasm)
		}
		lo, err := u32()
		if err != nil {
			return nil, err
		}
		hi := uint64(limit)
		if flag == 1 {
			if hi, err = u32(); err != nil {
				return nil, err
			}
			hi = min(hi, uint64(limit))
		}
		if lo > uint64(limit) {
			return nil, fmt.Errorf("table %d starts with %d elements: %w (%d)", i, lo, ErrTableLimit, limit)
		}
		out = append(out, ref, 1)
		out = binary.AppendUvarint(out, lo)
		out = binary.AppendUvarint(out, hi)
	}
	if p != len(sec) {
		return nil, fmt.Errorf("table section: %d trailing bytes: %w", len(sec)-p, ErrNotWasm)
	}
	return out, nil
}
