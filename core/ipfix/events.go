package ipfix

import "net/netip"

// Event is something new a decoder learned, for logs: the first message of
// a transport session and observation domain, or a template that is new or
// changed (a refresh with the same content is not an event).
type Event struct {
	// Kind is "session" or "template".
	Kind string
	// Exporter is the exporting process's address and port; Domain the
	// observation domain ID (RFC 7011 §3.1).
	Exporter netip.AddrPort
	Domain   uint32
	// TemplateID and Options describe a "template" event.
	TemplateID uint16
	Options    bool
}

// OnEvent has fn called, on the decoding goroutine, for every [Event]. It
// costs nothing on the per-record path.
func (d *Decoder) OnEvent(fn func(Event)) { d.event = fn }
