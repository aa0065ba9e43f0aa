package ipfix

// API CONTRACT (stub written by the lead; the codec owner replaces the bodies
// and may add to, but must not change, these signatures).

import (
	"io"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/weir-flow/weir/core/flow"
)

// DecoderOptions tunes a Decoder. Zero values select the defaults.
type DecoderOptions struct {
	// PendingSets is how many data sets per session may wait for their
	// template (default 64); PendingBytes caps their total size per
	// session (default 256 KiB).
	PendingSets  int
	PendingBytes int
	// PendingTTL is how long a data set may wait for its template before it
	// is dropped and counted (default 30s).
	PendingTTL time.Duration
	// TemplateTTL expires UDP templates not refreshed for this long
	// (RFC 7011 §8.4); 0 keeps them until withdrawn.
	TemplateTTL time.Duration
	// Now is the clock (tests); nil means time.Now.
	Now func() time.Time
}

// Stats are a decoder's counters, safe to read from any goroutine.
type Stats struct {
	Messages          atomic.Uint64 // messages decoded (even partly)
	MalformedMessages atomic.Uint64 // messages with a bad header or a set overrunning the message
	MalformedSets     atomic.Uint64 // sets skipped as malformed (bad set ID, length, template)
	Records           atomic.Uint64 // data records decoded into batches
	OptionsRecords    atomic.Uint64 // options data records consumed (not emitted)
	Templates         atomic.Uint64 // template and options-template records stored
	Withdrawals       atomic.Uint64 // template withdrawals (RFC 7011 §8.1)
	PendingHeld       atomic.Uint64 // data sets held waiting for their template
	PendingDecoded    atomic.Uint64 // held data sets decoded when the template came
	PendingExpired    atomic.Uint64 // held data sets dropped unmatched (TTL or limit)
	UnknownIEs        atomic.Uint64 // template fields with an IE Weir has no name for
}

// Decoder decodes IPFIX messages (RFC 7011) into flow records. It keeps
// templates per transport session and observation domain. A Decoder is
// used by one goroutine; Stats may be read from others.
type Decoder struct{}

// NewDecoder returns a decoder.
func NewDecoder(opts DecoderOptions) *Decoder { panic("TODO") }

// Decode decodes one IPFIX message received from exporter (the transport
// source address) and appends its data records to b. It returns how many
// records it appended (including held sets decoded because this message
// brought their template). A non-nil error describes what was malformed
// (one or more *DecodeError joined); every good set is decoded regardless.
func (d *Decoder) Decode(b *flow.Batch, msg []byte, exporter netip.AddrPort) (int, error) {
	panic("TODO")
}

// Stats returns the decoder's counters.
func (d *Decoder) Stats() *Stats { panic("TODO") }

// CloseSession forgets the templates and held sets of exporter's transport
// session (a TCP connection closed).
func (d *Decoder) CloseSession(exporter netip.AddrPort) { panic("TODO") }

// Expire drops held data sets and templates that outlived their TTLs.
// Sources call it periodically (e.g. every second).
func (d *Decoder) Expire() { panic("TODO") }

// DecodeError describes a malformed part of a message.
type DecodeError struct {
	Exporter netip.AddrPort
	Domain   uint32
	Offset   int    // byte offset in the message
	SetID    uint16 // 0 for header problems
	Reason   string
}

func (e *DecodeError) Error() string { panic("TODO") }

// ReadMessage reads one IPFIX message from a stream transport (TCP, RFC
// 7011 §10.4) into buf, growing it as needed, and returns the message.
func ReadMessage(r io.Reader, buf []byte) ([]byte, error) { panic("TODO") }

// EncoderOptions tunes an Encoder.
type EncoderOptions struct {
	// ObservationDomainID is written in every message header.
	ObservationDomainID uint32
	// MaxMessageSize bounds a message in bytes (default 1400 for UDP path
	// MTU safety; up to 65535 for TCP).
	MaxMessageSize int
	// TemplateRefresh resends templates at least this often (UDP, RFC 7011
	// §8.4); 0 sends each template once (TCP).
	TemplateRefresh time.Duration
}

// Encoder writes flow records as IPFIX messages with templates derived from
// the records' present fields and verbatim IEs. Not safe for concurrent use.
type Encoder struct{}

// NewEncoder returns an encoder.
func NewEncoder(opts EncoderOptions) *Encoder { panic("TODO") }

// Encode encodes recs into one or more messages stamped with exportTime and
// calls emit for each, in order. The slice passed to emit is reused after
// emit returns. Records are written with the typed fields they have
// (canonical widths) and their Extra IEs byte-identical.
func (e *Encoder) Encode(recs []*flow.Record, exportTime time.Time, emit func(msg []byte) error) error {
	panic("TODO")
}

// Reset forgets which templates were sent, so the next Encode resends them
// (a new TCP connection).
func (e *Encoder) Reset() { panic("TODO") }

// IEInfo describes an IE from the IANA and Antrea registries (loaded from
// github.com/vmware/go-ipfix).
type IEInfo struct {
	Name   string
	Type   DataType
	Length uint16 // registry length; 65535 for variable
}

// DataType is an abstract data type of RFC 7012 §3.1.
type DataType uint8

// LookupIE returns the registry entry of IE k.
func LookupIE(k flow.IEKey) (IEInfo, bool) { panic("TODO") }

// LookupIEByName returns the IE named name (IANA, reverse or Antrea).
func LookupIEByName(name string) (flow.IEKey, IEInfo, bool) { panic("TODO") }
