package ipfix

import (
	"encoding/binary"
	"net/netip"
	"time"

	"github.com/weir-flow/weir/core/flow"
)

// Raw messages: a source that does not decode (source.ipfix with raw: true,
// the inlet of a Kafka deployment) hands each IPFIX message on as one raw
// record, so that it travels through the ordinary pipeline to an exporter
// that ships it unchanged (export.kafka with payload: raw).
//
// A raw record has no typed flow fields. Its Exporter and
// ObservationDomainID are the message's; its Extra holds two IEs, in this
// order: the message as received ([RawMessageIE], octetArray, variable
// length) and the receive time (collectionTimeMilliseconds, IE 258,
// dateTimeMilliseconds).
const (
	// RawPEN is the enterprise number of [RawMessageIE]: 32473, the number
	// RFC 5612 reserves for documentation. The IE is internal to a Weir
	// pipeline; Weir has no registered PEN.
	RawPEN uint32 = 32473
	// ieCollectionTimeMilliseconds is IANA IE 258.
	ieCollectionTimeMilliseconds = 258
)

// RawMessageIE is the IE a raw record carries its IPFIX message in. Its
// element ID has bit 15 set, which on the wire is the enterprise bit
// (RFC 7011 §3.2): no decoded IE has such an ID, so a record an exporter
// sent can never pass for a raw one.
var RawMessageIE = flow.IEKey{Enterprise: RawPEN, Element: enterpriseBit | 1}

// AppendRaw appends to b a raw record for msg, received from exporter at
// at. msg is copied into b's arena; only its header's observation domain is
// read (a message shorter than the 16-byte header gets domain 0: the
// decoder that eventually reads it counts it as malformed).
func AppendRaw(b *flow.Batch, msg []byte, exporter netip.AddrPort, at time.Time) *flow.Record {
	r := b.Append()
	r.Exporter = exporter
	if len(msg) >= headerLen {
		r.ObservationDomainID = binary.BigEndian.Uint32(msg[12:])
	}
	var ts [8]byte
	binary.BigEndian.PutUint64(ts[:], uint64(at.UnixMilli()))
	r.Extra = append(r.Extra,
		flow.Field{Enterprise: RawPEN, Element: RawMessageIE.Element, Variable: true, Value: b.CopyBytes(msg)},
		flow.Field{Element: ieCollectionTimeMilliseconds, Value: b.CopyBytes(ts[:])},
	)
	return r
}

// Raw returns the message and receive time of a raw record made by
// [AppendRaw], and false for any other record. msg points into the
// record's batch.
func Raw(r *flow.Record) (msg []byte, at time.Time, ok bool) {
	if !isRaw(r) {
		return nil, time.Time{}, false
	}
	msg = r.Extra[0].Value
	if len(r.Extra) > 1 && r.Extra[1].Enterprise == 0 && r.Extra[1].Element == ieCollectionTimeMilliseconds && len(r.Extra[1].Value) == 8 {
		at = time.UnixMilli(int64(binary.BigEndian.Uint64(r.Extra[1].Value)))
	}
	return msg, at, true
}

// isRaw reports whether r was made by AppendRaw.
func isRaw(r *flow.Record) bool {
	return len(r.Extra) > 0 && r.Extra[0].Key() == RawMessageIE
}

// TemplateCarrier remembers, per exporter and observation domain, the
// (options) templates and the latest options data an exporter sent, so
// that each of its messages can travel with what a fresh decoder needs to
// decode it: [TemplateCarrier.Preamble] builds that as one IPFIX message of
// template sets, options template sets and options data sets.
//
// This lets a consumer that sees only some of an exporter's messages (a
// Kafka consumer after a rebalance, or one partition of many) decode every
// one of them, including sysUpTime-based times resolved through
// systemInitTimeMilliseconds. It reads set and template headers only; it
// never decodes a data record. Not safe for concurrent use.
type TemplateCarrier struct {
	sessions map[sessionKey]*carriedSession
	ids      []uint16
}

type carriedSession struct {
	// templates holds each template record (ID, count, [scope,] fields)
	// by template ID; options marks options templates.
	templates map[uint16]carriedTemplate
	// optionsData holds the latest options data set body per template.
	optionsData map[uint16][]byte
	lastSeen    time.Time
}

type carriedTemplate struct {
	options bool
	raw     []byte
}

// NewTemplateCarrier returns an empty carrier.
func NewTemplateCarrier() *TemplateCarrier {
	return &TemplateCarrier{sessions: map[sessionKey]*carriedSession{}}
}

// Sessions returns how many exporter/domain pairs the carrier remembers.
func (c *TemplateCarrier) Sessions() int { return len(c.sessions) }

// Expire forgets sessions last seen before cutoff.
func (c *TemplateCarrier) Expire(cutoff time.Time) {
	for k, s := range c.sessions {
		if s.lastSeen.Before(cutoff) {
			delete(c.sessions, k)
		}
	}
}

// Preamble records the templates, withdrawals and options data of msg
// (from exporter) and appends to dst an IPFIX message holding what a
// decoder needs beyond msg itself: the templates of msg's data sets that
// msg does not define, and every options template with its latest options
// data. It returns dst unchanged when msg needs nothing (no data sets, or
// none the carrier knows more about) or is malformed: malformed input is
// the decoder's to count. The preamble has msg's export time, sequence
// number and observation domain. now stamps the session for Expire.
func (c *TemplateCarrier) Preamble(dst, msg []byte, exporter netip.AddrPort, now time.Time) []byte {
	if len(msg) < headerLen || binary.BigEndian.Uint16(msg) != version {
		return dst
	}
	if l := int(binary.BigEndian.Uint16(msg[2:])); l >= headerLen && l < len(msg) {
		msg = msg[:l]
	}
	key := sessionKey{exporter, binary.BigEndian.Uint32(msg[12:])}
	s := c.sessions[key]
	if s == nil {
		s = &carriedSession{templates: map[uint16]carriedTemplate{}, optionsData: map[uint16][]byte{}}
		c.sessions[key] = s
	}
	s.lastSeen = now

	// Pass 1: templates defined here; pass 2: data sets.
	var defined [8]uint16 // templates defined in msg, the common case without a map
	nDefined := 0
	for off := headerLen; off+setHeaderLen <= len(msg); {
		id := binary.BigEndian.Uint16(msg[off:])
		l := int(binary.BigEndian.Uint16(msg[off+2:]))
		if l < setHeaderLen || l > len(msg)-off {
			break
		}
		if id == setIDTemplate || id == setIDOptions {
			s.templateSet(id, msg[off+setHeaderLen:off+l], func(tid uint16) {
				if nDefined < len(defined) {
					defined[nDefined] = tid
					nDefined++
				}
			})
		}
		off += l
	}
	c.ids = c.ids[:0]
	hasData := false
	for off := headerLen; off+setHeaderLen <= len(msg); {
		id := binary.BigEndian.Uint16(msg[off:])
		l := int(binary.BigEndian.Uint16(msg[off+2:]))
		if l < setHeaderLen || l > len(msg)-off {
			break
		}
		if id >= minDataSetID {
			if t, ok := s.templates[id]; ok && t.options {
				s.optionsData[id] = append(s.optionsData[id][:0], msg[off+setHeaderLen:off+l]...)
			} else {
				hasData = true
				if !contains(defined[:nDefined], id) && !contains(c.ids, id) {
					c.ids = append(c.ids, id)
				}
			}
		}
		off += l
	}
	if !hasData {
		return dst
	}

	start := len(dst)
	dst = append(dst, msg[:headerLen]...)
	// Data templates this message relies on.
	dst = c.appendTemplates(dst, s, setIDTemplate, func(id uint16, t carriedTemplate) bool {
		return !t.options && contains(c.ids, id)
	})
	// Every options template (session state such as systemInitTimeMilliseconds).
	dst = c.appendTemplates(dst, s, setIDOptions, func(_ uint16, t carriedTemplate) bool { return t.options })
	for id, body := range s.optionsData {
		if _, ok := s.templates[id]; !ok || len(dst)-start+setHeaderLen+len(body) > 0xffff {
			continue
		}
		dst = binary.BigEndian.AppendUint16(dst, id)
		dst = binary.BigEndian.AppendUint16(dst, uint16(setHeaderLen+len(body)))
		dst = append(dst, body...)
	}
	if len(dst)-start == headerLen {
		return dst[:start]
	}
	binary.BigEndian.PutUint16(dst[start+2:], uint16(len(dst)-start))
	return dst
}

func (c *TemplateCarrier) appendTemplates(dst []byte, s *carriedSession, setID uint16, want func(uint16, carriedTemplate) bool) []byte {
	setStart := -1
	for id, t := range s.templates {
		if !want(id, t) {
			continue
		}
		msgLen := len(dst) // bounded below by the caller's message start
		if msgLen+setHeaderLen+len(t.raw) > 0xffff {
			continue
		}
		if setStart < 0 {
			setStart = len(dst)
			dst = binary.BigEndian.AppendUint16(dst, setID)
			dst = append(dst, 0, 0)
		}
		dst = append(dst, t.raw...)
	}
	if setStart >= 0 {
		binary.BigEndian.PutUint16(dst[setStart+2:], uint16(len(dst)-setStart))
	}
	return dst
}

// templateSet records the template records of one set body.
func (s *carriedSession) templateSet(setID uint16, body []byte, defined func(uint16)) {
	options := setID == setIDOptions
	for p := 0; len(body)-p >= 4; {
		id := binary.BigEndian.Uint16(body[p:])
		count := int(binary.BigEndian.Uint16(body[p+2:]))
		if id == 0 && count == 0 {
			return // padding
		}
		if count == 0 { // withdrawal (§8.1)
			if id == setID {
				for k, t := range s.templates {
					if t.options == options {
						delete(s.templates, k)
						delete(s.optionsData, k)
					}
				}
			} else {
				delete(s.templates, id)
				delete(s.optionsData, id)
			}
			p += 4
			continue
		}
		q := p + 4
		if options {
			q += 2
		}
		i := 0
		for ; i < count && q+4 <= len(body); i++ {
			elem := binary.BigEndian.Uint16(body[q:])
			q += 4
			if elem&enterpriseBit != 0 {
				q += 4
			}
		}
		if i < count || q > len(body) {
			return // overruns its set: malformed, the decoder counts it
		}
		if id >= minDataSetID {
			t := s.templates[id]
			t.options = options
			t.raw = append(t.raw[:0], body[p:q]...)
			s.templates[id] = t
			if !options {
				delete(s.optionsData, id)
			}
			defined(id)
		}
		p = q
	}
}

func contains(ids []uint16, id uint16) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}
