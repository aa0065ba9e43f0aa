package weir

import (
	"unsafe"

	"github.com/weir-flow/weir/core/abi"
)

// ByteSet is a set of byte values — protocol numbers, DSCP values, flow
// end reasons — prepared for testing whole 1-byte columns: build it once,
// in the Init function, and use it on every batch with [Batch.KeepIn] or
// [ByteSet.Select].
//
// A column is tested eight records per step without a branch per record:
// a set of up to four values compares eight bytes at once in a 64-bit
// word (two values cost half as much as four), a larger one looks each
// byte up in a table.
type ByteSet struct {
	in    [256]uint8 // 1 for a member
	n     int        // members
	words [4]uint64  // the first four members, each repeated in every byte
}

// NewByteSet returns the set of the values v with members[v] true.
func NewByteSet(members *[256]bool) *ByteSet {
	s := &ByteSet{}
	for v, in := range members {
		if !in {
			continue
		}
		s.in[v] = 1
		if s.n < len(s.words) {
			s.words[s.n] = uint64(v) * ones
		}
		s.n++
	}
	for k := max(s.n, 1); k < len(s.words); k++ {
		// Repeating a member leaves the comparisons' union unchanged.
		s.words[k] = s.words[0]
	}
	return s
}

// Has reports whether v is in s.
func (s *ByteSet) Has(v uint8) bool { return s.in[v] != 0 }

// Select returns dst, resized to hold len(col) bits, with bit i%64 of word
// i/64 set when col[i] is in s; dst's capacity is reused.
func (s *ByteSet) Select(dst []uint64, col []uint8) []uint64 {
	w := abi.Words(len(col))
	if cap(dst) < w {
		dst = make([]uint64, w)
	}
	dst = dst[:w]
	s.match(dst, col, false)
	return dst
}

const (
	ones = 0x0101010101010101
	low7 = 0x7f7f7f7f7f7f7f7f
	high = 0x8080808080808080
	// gather moves the low bit of each byte of a word to bits 56-63, in
	// byte order.
	gather = 0x0102040810204080
)

// match sets (and false) or ands (and true) into dst the bitmap of the
// values of col in s. dst holds at least Words(len(col)) words.
//
// Go's WebAssembly sends every jump, and so every loop iteration and
// every call not inlined, through its function's dispatch loop: the
// loops below test 64 records per iteration in straight-line code.
func (s *ByteSet) match(dst []uint64, col []uint8, and bool) {
	n := len(col)
	if n == 0 {
		return
	}
	_ = dst[abi.Words(n)-1]
	full := n &^ 63
	switch {
	case s.n == 0:
		clear(dst[:full>>6])
	case s.n <= 2 && abi.NativeLittleEndian():
		a, b := s.words[0], s.words[1]
		for k := 0; k < full; k += 64 {
			x := (*[8]uint64)(unsafe.Pointer(&col[k]))
			w := in8of2(x[0], a, b) | in8of2(x[1], a, b)<<8 | in8of2(x[2], a, b)<<16 | in8of2(x[3], a, b)<<24 |
				in8of2(x[4], a, b)<<32 | in8of2(x[5], a, b)<<40 | in8of2(x[6], a, b)<<48 | in8of2(x[7], a, b)<<56
			if and {
				dst[k>>6] &= w
			} else {
				dst[k>>6] = w
			}
		}
	case s.n <= len(s.words) && abi.NativeLittleEndian():
		a, b, c, d := s.words[0], s.words[1], s.words[2], s.words[3]
		for k := 0; k < full; k += 64 {
			x := (*[8]uint64)(unsafe.Pointer(&col[k]))
			w := in8(x[0], a, b, c, d) | in8(x[1], a, b, c, d)<<8 | in8(x[2], a, b, c, d)<<16 | in8(x[3], a, b, c, d)<<24 |
				in8(x[4], a, b, c, d)<<32 | in8(x[5], a, b, c, d)<<40 | in8(x[6], a, b, c, d)<<48 | in8(x[7], a, b, c, d)<<56
			if and {
				dst[k>>6] &= w
			} else {
				dst[k>>6] = w
			}
		}
	default:
		t := &s.in
		for k := 0; k < full; k += 64 {
			x := (*[64]uint8)(col[k : k+64])
			var w uint64
			for j := 0; j < 64; j += 8 {
				r := x[j : j+8 : j+8]
				w |= (uint64(t[r[0]]) | uint64(t[r[1]])<<1 | uint64(t[r[2]])<<2 | uint64(t[r[3]])<<3 |
					uint64(t[r[4]])<<4 | uint64(t[r[5]])<<5 | uint64(t[r[6]])<<6 | uint64(t[r[7]])<<7) << j
			}
			if and {
				dst[k>>6] &= w
			} else {
				dst[k>>6] = w
			}
		}
	}
	if full == n {
		return
	}
	var w uint64
	for i, v := range col[full:] {
		w |= uint64(s.in[v]) << i
	}
	if and {
		dst[full>>6] &= w
	} else {
		dst[full>>6] = w
	}
}

// in8 returns the bits (0-7) of the bytes of x, eight values of a column
// in little-endian order, equal to a, b, c or d (each a member repeated
// in every byte): a byte equal to a member zeroes the byte of x^member.
func in8(x, a, b, c, d uint64) uint64 {
	m := zeroBytes(x^a) | zeroBytes(x^b) | zeroBytes(x^c) | zeroBytes(x^d)
	return m >> 7 * gather >> 56
}

// in8of2 is in8 for a set of one or two members.
func in8of2(x, a, b uint64) uint64 {
	return (zeroBytes(x^a) | zeroBytes(x^b)) >> 7 * gather >> 56
}

// zeroBytes returns 0x80 in each byte of t that is zero, 0 in the others;
// the sum cannot carry from one byte into the next.
func zeroBytes(t uint64) uint64 {
	return ^((t&low7 + low7) | t) & high
}
