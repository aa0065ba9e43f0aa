package ipfix

import (
	"errors"
	"net/netip"
	"strconv"
)

// ErrMalformed is the sentinel every *DecodeError matches with errors.Is:
// the input broke RFC 7011's encoding rules.
var ErrMalformed = errors.New("malformed ipfix message")

// ErrRecordTooLarge is returned (wrapped) by Encoder.Encode for a record
// that does not fit in one message of MaxMessageSize bytes; the record is
// skipped and the others are still encoded.
var ErrRecordTooLarge = errors.New("record larger than the maximum message size")

// DecodeError describes a malformed part of a message. It matches
// ErrMalformed with errors.Is.
type DecodeError struct {
	Exporter netip.AddrPort
	Domain   uint32
	Offset   int    // byte offset in the message
	SetID    uint16 // 0 for header problems
	Reason   string
}

// Error formats e like "decode set 256 at offset 52 from 10.0.0.1:4739
// (domain 7): data set shorter than record".
func (e *DecodeError) Error() string {
	b := make([]byte, 0, 96+len(e.Reason))
	if e.SetID == 0 {
		b = append(b, "decode message"...)
	} else {
		b = append(b, "decode set "...)
		b = strconv.AppendUint(b, uint64(e.SetID), 10)
	}
	b = append(b, " at offset "...)
	b = strconv.AppendInt(b, int64(e.Offset), 10)
	b = append(b, " from "...)
	b = e.Exporter.AppendTo(b)
	b = append(b, " (domain "...)
	b = strconv.AppendUint(b, uint64(e.Domain), 10)
	b = append(b, "): "...)
	b = append(b, e.Reason...)
	return string(b)
}

// Unwrap returns ErrMalformed.
func (e *DecodeError) Unwrap() error { return ErrMalformed }

// ErrEmptyRecord is returned (wrapped) by Encoder.Encode for a record with
// no present field, or whose fields encode to zero bytes: RFC 7011 has no
// template for it. The record is skipped and the others are still encoded.
var ErrEmptyRecord = errors.New("record has no field to encode")
