// Package kafkawire is the format of the Kafka messages export.kafka writes
// and source.kafka reads, and the partitioning keys. docs/kafka.md is its
// specification; this package is its one implementation.
//
// A message value is one of:
//
//   - a records batch: Weir's plugin ABI batch buffer (magic "WEIR",
//     version 1, docs/abi.md) holding decoded records, every part of each;
//   - a raw message: the envelope below around one IPFIX message as a
//     collector received it, with the templates and options data a fresh
//     decoder needs to decode it (the preamble).
//
// Raw envelope, version 1, big-endian (network order) like IPFIX:
//
//	offset size field
//	     0    4 magic "WRAW"
//	     4    2 version (1)
//	     6    2 header size H (40); readers skip to H
//	     8   16 exporter address: IPv6, or IPv4-mapped IPv6 (::ffff:a.b.c.d)
//	    24    2 exporter transport port
//	    26    2 preamble length P (0: none)
//	    28    8 receive time, nanoseconds since the Unix epoch (signed)
//	    36    4 reserved, zero
//	     H    P preamble: an IPFIX message of template, options template and
//	            options data sets (ipfix.TemplateCarrier)
//	   H+P    … the IPFIX message as received
//
// A reader decodes the preamble, then the message, in one decoder session
// keyed by the exporter address and the message's observation domain.
package kafkawire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/weir-flow/weir/core/flow"
)

// Envelope constants.
const (
	RawMagic      = "WRAW"
	RawVersion    = 1
	RawHeaderSize = 40
	// RecordsMagic starts a records batch (the ABI's "WEIR", as its
	// little-endian uint32 0x52494557 is written).
	RecordsMagic = "WEIR"
)

// Kind is what a message value holds.
type Kind uint8

const (
	KindUnknown Kind = iota
	KindRaw
	KindRecords
)

// KindOf tells a raw envelope from a records batch by its magic.
func KindOf(value []byte) Kind {
	if len(value) < 4 {
		return KindUnknown
	}
	switch string(value[:4]) {
	case RawMagic:
		return KindRaw
	case RecordsMagic:
		return KindRecords
	}
	return KindUnknown
}

// ErrMalformed is wrapped by every error about a value that does not
// follow the format.
var ErrMalformed = errors.New("malformed kafka message")

// Raw is a parsed raw envelope. Its slices point into the value.
type Raw struct {
	Exporter netip.AddrPort
	Received time.Time
	Preamble []byte
	Message  []byte
}

// AppendRaw appends the envelope of one IPFIX message to dst.
func AppendRaw(dst []byte, exporter netip.AddrPort, received time.Time, preamble, msg []byte) []byte {
	var h [RawHeaderSize]byte
	copy(h[0:4], RawMagic)
	binary.BigEndian.PutUint16(h[4:], RawVersion)
	binary.BigEndian.PutUint16(h[6:], RawHeaderSize)
	a := exporter.Addr().As16()
	copy(h[8:24], a[:])
	binary.BigEndian.PutUint16(h[24:], exporter.Port())
	binary.BigEndian.PutUint16(h[26:], uint16(len(preamble)))
	var ns int64
	if !received.IsZero() {
		ns = received.UnixNano()
	}
	binary.BigEndian.PutUint64(h[28:], uint64(ns))
	dst = append(dst, h[:]...)
	dst = append(dst, preamble...)
	return append(dst, msg...)
}

// ParseRaw parses a raw envelope. Errors wrap ErrMalformed and say why.
func ParseRaw(value []byte) (Raw, error) {
	if len(value) < 8 || string(value[:4]) != RawMagic {
		return Raw{}, fmt.Errorf("%w: not a raw envelope (%d bytes)", ErrMalformed, len(value))
	}
	if v := binary.BigEndian.Uint16(value[4:]); v != RawVersion {
		return Raw{}, fmt.Errorf("%w: raw envelope version %d, this build reads version %d", ErrMalformed, v, RawVersion)
	}
	hs := int(binary.BigEndian.Uint16(value[6:]))
	if hs < RawHeaderSize || hs > len(value) {
		return Raw{}, fmt.Errorf("%w: raw envelope header size %d outside %d..%d", ErrMalformed, hs, RawHeaderSize, len(value))
	}
	p := int(binary.BigEndian.Uint16(value[26:]))
	if p > len(value)-hs {
		return Raw{}, fmt.Errorf("%w: raw envelope preamble of %d bytes overruns the %d-byte value", ErrMalformed, p, len(value))
	}
	addr := netip.AddrFrom16([16]byte(value[8:24])).Unmap()
	r := Raw{
		Exporter: netip.AddrPortFrom(addr, binary.BigEndian.Uint16(value[24:])),
		Preamble: value[hs : hs+p : hs+p],
		Message:  value[hs+p:],
	}
	if ns := int64(binary.BigEndian.Uint64(value[28:])); ns != 0 {
		r.Received = time.Unix(0, ns)
	}
	return r, nil
}

// Key is how export.kafka picks a record's partition.
type Key uint8

const (
	// KeyExporter: exporter address and observation domain, so each
	// exporter's messages stay in order on one partition.
	KeyExporter Key = iota
	// KeyFlow: the direction-independent 5-tuple, so both halves of a
	// connection (A→B and B→A, from any exporter) land on one partition.
	KeyFlow
	// KeyRandom: spread evenly, ignoring content.
	KeyRandom
)

// ExporterHash hashes a record's exporter address and observation domain
// (not the port: an exporter that reconnects keeps its partition).
func ExporterHash(r *flow.Record) uint64 {
	var b [20]byte
	a := r.Exporter.Addr().As16()
	copy(b[:16], a[:])
	binary.BigEndian.PutUint32(b[16:], r.ObservationDomainID)
	return xxhash.Sum64(b[:])
}

// FlowHash hashes a record's 5-tuple with its two endpoints in a fixed
// order, so a flow and its reverse hash alike (ICMP and ICMPv6 by
// addresses and protocol only). Addresses are compared as
// 16-byte IPv6 (IPv4-mapped), then ports.
func FlowHash(r *flow.Record) uint64 {
	var b [37]byte
	sa, da := r.SourceAddress.As16(), r.DestinationAddress.As16()
	sp, dp := r.SourceTransportPort, r.DestinationTransportPort
	if !r.SourceAddress.IsValid() {
		sa = [16]byte{}
	}
	if !r.DestinationAddress.IsValid() {
		da = [16]byte{}
	}
	if p := r.ProtocolIdentifier; p == 1 || p == 58 {
		// ICMP "ports" carry type and code, which differ between a
		// request and its reply.
		sp, dp = 0, 0
	}
	if c := compare16(sa, da); c > 0 || (c == 0 && sp > dp) {
		sa, da, sp, dp = da, sa, dp, sp
	}
	copy(b[0:16], sa[:])
	copy(b[16:32], da[:])
	binary.BigEndian.PutUint16(b[32:], sp)
	binary.BigEndian.PutUint16(b[34:], dp)
	b[36] = r.ProtocolIdentifier
	return xxhash.Sum64(b[:])
}

func compare16(a, b [16]byte) int {
	for i := range a {
		if a[i] != b[i] {
			if a[i] < b[i] {
				return -1
			}
			return 1
		}
	}
	return 0
}

// Partition maps a hash onto n partitions (n > 0) with Lemire's
// multiply-shift, which is uniform for a uniform 64-bit hash.
func Partition(h uint64, n int) int32 {
	hi := (h >> 32) * uint64(n)
	return int32(hi >> 32)
}
