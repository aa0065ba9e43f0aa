package ipfix

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"unsafe"
)

// ErrLimit is matched (errors.Is) by the errors Decode returns when a
// state limit refused a session, a template or a held data set.
var ErrLimit = errors.New("decoder state limit reached")

// LimitError reports state a [Limit] refused: a new session (the message
// is not decoded), a template (its data sets wait, then expire) or a held
// data set (dropped). It matches ErrLimit.
type LimitError struct {
	Exporter netip.AddrPort
	Domain   uint32
	Offset   int    // of the set or record in the message; 0 for a session
	SetID    uint16 // 0 for a session
	Limit    Limit
	What     string // what was refused, e.g. "template 300 with 16000 fields"
}

// Error formats e like "10.0.0.1:4739 (domain 1): template 300 with 16000
// fields refused: limit template_fields reached".
func (e *LimitError) Error() string {
	return fmt.Sprintf("%s (domain %d): %s refused at offset %d: limit %s reached", e.Exporter, e.Domain, e.What, e.Offset, e.Limit)
}

// Unwrap returns ErrLimit.
func (e *LimitError) Unwrap() error { return ErrLimit }

// Limit names one bound of [Limits]; it is the reason label of the
// refusals a [Budget] counts.
type Limit uint8

// The limits of [Limits], in field order.
const (
	LimitSessions Limit = iota
	LimitSessionsPerExporter
	LimitTemplatesPerSession
	LimitTemplateFields
	LimitTemplateBytes
	LimitTemplateBytesPerExporter
	LimitHeldBytes
	LimitHeldBytesPerExporter
	NumLimits
)

var limitNames = [NumLimits]string{
	"sessions", "sessions_per_exporter", "templates_per_session", "template_fields",
	"template_bytes", "template_bytes_per_exporter", "held_bytes", "held_bytes_per_exporter",
}

// String returns the limit's config key, e.g. "sessions_per_exporter".
func (l Limit) String() string {
	if l < NumLimits {
		return limitNames[l]
	}
	return "invalid"
}

// Limits bounds the state decoders keep for exporters, so that what an
// exporter sends cannot grow memory without bound. An exporter is a
// source IP address (all its ports and observation domains); a session is
// an exporter address:port and observation domain (RFC 7011 §8.4). Zero
// means unlimited.
type Limits struct {
	// Sessions bounds the sessions of every decoder sharing the Budget;
	// SessionsPerExporter those of one exporter address.
	Sessions, SessionsPerExporter int
	// TemplatesPerSession bounds the (options) templates of one session.
	TemplatesPerSession int
	// TemplateFields bounds the fields of one template; a longer one is
	// refused before it is compiled (RFC 7011 allows 16,383).
	TemplateFields int
	// TemplateBytes bounds the memory of stored templates, in bytes (their
	// compiled plans and wire forms); TemplateBytesPerExporter that of one
	// exporter.
	TemplateBytes, TemplateBytesPerExporter int64
	// HeldBytes bounds the data sets held waiting for their template, in
	// bytes; HeldBytesPerExporter those of one exporter.
	HeldBytes, HeldBytesPerExporter int64
}

// DefaultLimits returns the limits source.ipfix applies by default, and a
// re-exporting Encoder's decoder always: 16,384 sessions (1,024 per
// exporter), 1,024 templates per session and fields per template, 256 MiB
// of templates (32 MiB per exporter), 64 MiB of held data sets (8 MiB per
// exporter).
func DefaultLimits() Limits {
	return Limits{
		Sessions:                 16384,
		SessionsPerExporter:      1024,
		TemplatesPerSession:      1024,
		TemplateFields:           1024,
		TemplateBytes:            256 << 20,
		TemplateBytesPerExporter: 32 << 20,
		HeldBytes:                64 << 20,
		HeldBytesPerExporter:     8 << 20,
	}
}

// Budget accounts the state of the decoders that share it against Limits,
// and counts refusals. It is safe for concurrent use; decoders touch it
// when a session, template or held set is created or freed, never per
// record.
type Budget struct {
	lim Limits

	mu            sync.Mutex
	sessions      int
	templateBytes int64
	heldBytes     int64
	exporters     map[netip.Addr]*exporterUse

	refused [NumLimits]atomic.Uint64
}

// exporterUse is one exporter address's share of a Budget.
type exporterUse struct {
	addr          netip.Addr
	sessions      int
	templateBytes int64
	heldBytes     int64
}

// NewBudget returns a budget enforcing l.
func NewBudget(l Limits) *Budget {
	return &Budget{lim: l, exporters: map[netip.Addr]*exporterUse{}}
}

// Limits returns the limits b enforces.
func (b *Budget) Limits() Limits { return b.lim }

// Refused returns how many times limit l refused something.
func (b *Budget) Refused(l Limit) uint64 { return b.refused[l].Load() }

// Usage is a snapshot of a Budget's accounting.
type Usage struct {
	Sessions, Exporters      int
	TemplateBytes, HeldBytes int64
}

// Usage returns what b accounts now.
func (b *Budget) Usage() Usage {
	b.mu.Lock()
	defer b.mu.Unlock()
	return Usage{Sessions: b.sessions, Exporters: len(b.exporters), TemplateBytes: b.templateBytes, HeldBytes: b.heldBytes}
}

func (b *Budget) refuse(l Limit) (Limit, bool) {
	b.refused[l].Add(1)
	return l, false
}

// addSession accounts a new session of addr; it returns the exporter's
// share, or the limit that refused it.
func (b *Budget) addSession(addr netip.Addr) (*exporterUse, Limit, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.lim.Sessions > 0 && b.sessions >= b.lim.Sessions {
		l, _ := b.refuse(LimitSessions)
		return nil, l, false
	}
	u := b.exporters[addr]
	if u == nil {
		u = &exporterUse{addr: addr}
	}
	if b.lim.SessionsPerExporter > 0 && u.sessions >= b.lim.SessionsPerExporter {
		l, _ := b.refuse(LimitSessionsPerExporter)
		return nil, l, false
	}
	b.exporters[addr] = u
	u.sessions++
	b.sessions++
	return u, 0, true
}

// removeSession releases a session and everything it still accounted.
func (b *Budget) removeSession(u *exporterUse, templateBytes, heldBytes int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	u.sessions--
	b.sessions--
	u.templateBytes -= templateBytes
	b.templateBytes -= templateBytes
	u.heldBytes -= heldBytes
	b.heldBytes -= heldBytes
	if u.sessions <= 0 {
		delete(b.exporters, u.addr)
	}
}

// addTemplate accounts n bytes of template memory for u.
func (b *Budget) addTemplate(u *exporterUse, n int64) (Limit, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.lim.TemplateBytes > 0 && b.templateBytes+n > b.lim.TemplateBytes {
		return b.refuse(LimitTemplateBytes)
	}
	if b.lim.TemplateBytesPerExporter > 0 && u.templateBytes+n > b.lim.TemplateBytesPerExporter {
		return b.refuse(LimitTemplateBytesPerExporter)
	}
	u.templateBytes += n
	b.templateBytes += n
	return 0, true
}

func (b *Budget) removeTemplate(u *exporterUse, n int64) {
	b.mu.Lock()
	u.templateBytes -= n
	b.templateBytes -= n
	b.mu.Unlock()
}

// addHeld accounts n bytes of held data sets for u.
func (b *Budget) addHeld(u *exporterUse, n int64) (Limit, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.lim.HeldBytes > 0 && b.heldBytes+n > b.lim.HeldBytes {
		return b.refuse(LimitHeldBytes)
	}
	if b.lim.HeldBytesPerExporter > 0 && u.heldBytes+n > b.lim.HeldBytesPerExporter {
		return b.refuse(LimitHeldBytesPerExporter)
	}
	u.heldBytes += n
	b.heldBytes += n
	return 0, true
}

func (b *Budget) removeHeld(u *exporterUse, n int64) {
	if n == 0 {
		return
	}
	b.mu.Lock()
	u.heldBytes -= n
	b.heldBytes -= n
	b.mu.Unlock()
}

// Estimated memory of decoder state, for the byte limits: Go structs and
// map entries besides the payloads.
const (
	templateOverhead = int64(unsafe.Sizeof(template{})) + 64
	opSize           = int64(unsafe.Sizeof(op{}))
	heldOverhead     = int64(unsafe.Sizeof(pendingSet{}))
)

// templateCost is the bytes a template with n fields and a wire form of
// raw bytes is accounted for.
func templateCost(n, raw int) int64 { return templateOverhead + int64(n)*opSize + int64(raw) }
