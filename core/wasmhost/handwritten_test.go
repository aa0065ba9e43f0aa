package wasmhost

import (
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/weir-flow/weir/core/abi"
	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/plugintest"
)

// handwrittenFilter returns an ABI v1 filter written directly in
// WebAssembly: it keeps TCP and UDP records, reading the
// protocolIdentifier column. It measures what the host and the ABI cost
// without a Go runtime in the guest (BenchmarkProtocolFilter's
// "handwritten" variant).
func handwrittenFilter() []byte { return handwrittenModule(nil, nil) }

// handwrittenModule is handwrittenFilter with prefix run first in
// weir_process, and the table section table (none if nil).
func handwrittenModule(prefix, table []byte) []byte {
	u := func(v uint64) []byte { return binary.AppendUvarint(nil, v) }
	cat := func(parts ...[]byte) []byte {
		var out []byte
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	vec := func(items ...[]byte) []byte { return cat(u(uint64(len(items))), cat(items...)) }
	name := func(s string) []byte { return cat(u(uint64(len(s))), []byte(s)) }
	sec := func(id byte, body []byte) []byte { return cat([]byte{id}, u(uint64(len(body))), body) }
	i32 := func(v int64) []byte { return cat([]byte{0x41}, sleb(v)) }
	mem := func(op byte, align, off uint64) []byte { return cat([]byte{op}, u(align), u(off)) }
	get := func(l uint64) []byte { return cat([]byte{0x20}, u(l)) }
	set := func(l uint64) []byte { return cat([]byte{0x21}, u(l)) }
	tee := func(l uint64) []byte { return cat([]byte{0x22}, u(l)) }
	const (
		manifestAt = 1024
		tableAt    = 3072
		answerAt   = 4096
		inputAt    = 65536
	)
	store := func(off uint64, value []byte) []byte { // i32 at answerAt+off
		return cat(i32(answerAt), value, mem(0x36, 2, off))
	}
	// weir_process(ptr, len) -> i64; locals 2 n, 3 col, 4 i, 5 words, 6 addr
	process := cat(
		prefix,
		get(0), mem(0x28, 2, 8), set(2), // n
		get(0), get(0), mem(0x28, 2, 16), []byte{0x6a}, set(3), // col = ptr + recOff (no presence column)
		get(2), i32(63), []byte{0x6a}, i32(6), []byte{0x76}, set(5), // words
		store(0, i32(int64(abi.MagicAnswer))),
		store(4, i32(1|48<<16)),
		store(8, i32(0)),
		store(12, get(2)),
		store(16, i32(48)),
		store(20, get(5)),
		store(24, cat(get(5), i32(3), []byte{0x74}, i32(48), []byte{0x6a}, tee(6))),
		store(28, i32(0)),
		store(32, i32(0)),
		store(36, get(6)),
		store(40, i32(0)),
		store(44, i32(0)),
		i32(answerAt+48), i32(0), get(5), i32(3), []byte{0x74, 0xfc, 0x0b, 0x00}, // memory.fill verdicts
		i32(0), set(4),
		[]byte{0x02, 0x40}, get(4), get(2), []byte{0x4f, 0x0d, 0x00}, // block; if i >= n: br 0
		[]byte{0x03, 0x40},                                                   // loop
		get(3), get(4), []byte{0x6a}, mem(0x2d, 0, 0), mem(0x2d, 0, tableAt), // table[col[i]]
		[]byte{0x04, 0x40}, // if
		get(4), i32(6), []byte{0x76}, i32(3), []byte{0x74}, i32(answerAt+48), []byte{0x6a}, tee(6),
		get(6), mem(0x29, 3, 0),
		[]byte{0x42, 0x01}, get(4), []byte{0xad, 0x86, 0x84}, // i64.const 1, extend i, shl, or
		mem(0x37, 3, 0),
		[]byte{0x0b},                                                           // end if
		get(4), i32(1), []byte{0x6a}, tee(4), get(2), []byte{0x49, 0x0d, 0x00}, // i++ < n: br 0
		[]byte{0x0b, 0x0b},                                                                                // end loop, end block
		[]byte{0x42}, sleb(answerAt<<32), get(5), i32(3), []byte{0x74}, i32(48), []byte{0x6a, 0xad, 0x84}, // ptr<<32 | 48+8w
		[]byte{0x0b},
	)
	alloc := cat(
		[]byte{0x3f, 0x00}, i32(16), []byte{0x74}, get(0), i32(inputAt), []byte{0x6a, 0x49}, // size < n+input
		[]byte{0x04, 0x40},
		get(0), i32(inputAt+65535), []byte{0x6a}, i32(16), []byte{0x76}, []byte{0x3f, 0x00, 0x6b, 0x40, 0x00, 0x1a},
		[]byte{0x0b},
		i32(inputAt), []byte{0x0b},
	)
	body := func(locals []byte, code []byte) []byte {
		b := cat(locals, code)
		return cat(u(uint64(len(b))), b)
	}
	manifest := (&abi.Manifest{Version: abi.Version, Kind: abi.KindFilter, Reads: abi.MaskOf(abi.FlagColumns|abi.FlagNoPresence, flow.ProtocolIdentifier)}).Append(nil)
	var tables []byte
	if table != nil {
		tables = sec(4, table)
	}
	table = make([]byte, 256)
	table[6], table[17] = 1, 1
	segment := func(at int64, data []byte) []byte {
		return cat([]byte{0x00}, i32(at), []byte{0x0b}, u(uint64(len(data))), data)
	}
	return cat([]byte("\x00asm\x01\x00\x00\x00"),
		sec(1, vec([]byte{0x60, 0, 1, 0x7f}, []byte{0x60, 1, 0x7f, 1, 0x7f}, []byte{0x60, 2, 0x7f, 0x7f, 1, 0x7e})),
		sec(3, vec(u(0), u(0), u(1), u(2), u(2))),
		tables,
		sec(5, vec([]byte{0x00, 2})),
		sec(7, vec(
			cat(name("weir_abi_version"), []byte{0}, u(0)), cat(name("weir_kind"), []byte{0}, u(1)),
			cat(name("weir_alloc"), []byte{0}, u(2)), cat(name("weir_init"), []byte{0}, u(3)),
			cat(name("weir_process"), []byte{0}, u(4)), cat(name("memory"), []byte{2}, u(0)),
		)),
		sec(10, vec(
			body(u(0), cat(i32(1), []byte{0x0b})),
			body(u(0), cat(i32(1), []byte{0x0b})),
			body(u(0), alloc),
			body(u(0), cat([]byte{0x42}, sleb(manifestAt<<32|int64(len(manifest))), []byte{0x0b})),
			body(vec(cat(u(5), []byte{0x7f})), process),
		)),
		sec(11, vec(segment(manifestAt, manifest), segment(tableAt, table))),
	)
}

// sleb encodes v as a signed LEB128.
func sleb(v int64) []byte {
	var out []byte
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(out, c)
		}
		out = append(out, c|0x80)
	}
}

// writeHandwritten writes handwrittenFilter into dir.
func writeHandwritten(dir string) (string, error) {
	path := filepath.Join(dir, "handwritten.wasm")
	return path, os.WriteFile(path, handwrittenFilter(), 0o644)
}

func TestHandwrittenFilter(t *testing.T) {
	p := newProcessor(t, "handwritten", nil)
	if p.mod.checks != checksInstrumented {
		t.Fatalf("checks %s", p.mod.checks)
	}
	for _, n := range []int{1, 63, 64, 65, 1000} {
		b := plugintest.MixedBatch(n)
		if err := p.Process(context.Background(), b); err != nil {
			t.Fatal(err)
		}
		if b.Len() != (n+1)/2 && n > 1 || p.errorCount(reasonBadAnswer)+p.errorCount(reasonTrap) > 0 {
			t.Fatalf("n=%d: kept %d, errors %v %v", n, b.Len(), p.errorCount(reasonBadAnswer), p.errorCount(reasonTrap))
		}
		for _, r := range b.Records {
			if r.ProtocolIdentifier != 6 && r.ProtocolIdentifier != 17 {
				t.Fatalf("n=%d: kept protocol %d", n, r.ProtocolIdentifier)
			}
		}
	}
}
