package ipfix

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"net/netip"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/weir-flow/weir/core/flow"
)

// Decoder defaults.
const (
	DefaultPendingSets  = 64
	DefaultPendingBytes = 256 << 10
	DefaultPendingTTL   = 30 * time.Second
	// internLimit and internBytes bound the string intern table, in
	// strings and in bytes; it is cleared when either is reached. Values
	// longer than internMaxLen are not interned: one exporter sending
	// distinct 64 KiB strings would otherwise pin 4 GiB.
	internLimit  = 1 << 16
	internBytes  = 16 << 20
	internMaxLen = 4 << 10
	// recentBits sizes the direct-mapped cache in front of the intern
	// table: 1,024 strings (16 KiB), more than a Node's Pods.
	recentBits = 10
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
	// (RFC 7011 §8.4), and forgets sessions idle for this long; 0 keeps
	// them until withdrawn. A session that holds no template and no data
	// set is forgotten after PendingTTL idle regardless.
	TemplateTTL time.Duration
	// SessionIdle forgets sessions idle for this long, whatever
	// TemplateTTL (a re-exporter cannot tell UDP sessions, whose templates
	// expire, from TCP ones, whose templates never are refreshed); 0 relies
	// on TemplateTTL.
	SessionIdle time.Duration
	// Budget bounds the sessions, templates and held data sets of every
	// decoder sharing it (see Limits); nil means a private, unlimited one.
	Budget *Budget
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
	// TimesApproximated counts records whose flowStartSysUpTime /
	// flowEndSysUpTime were converted before the exporter's
	// systemInitTimeMilliseconds was known: the record's end was taken as
	// the message's export time.
	TimesApproximated atomic.Uint64
}

// sessionKey scopes templates: transport session and observation domain
// (RFC 7011 §8.4).
type sessionKey struct {
	exporter netip.AddrPort
	domain   uint32
}

type session struct {
	key        sessionKey
	templates  map[uint16]*template
	hasInit    bool
	initMillis int64 // systemInitTimeMilliseconds, ms since epoch
	// cache holds recently used templates, scanned linearly: a map lookup
	// with a uint16 key costs more than decoding a short record.
	cache        [8]cachedTemplate
	cacheNext    uint8
	pending      []pendingSet
	pendingBytes int
	lastSeen     time.Time
	use          *exporterUse // its exporter's share of the Budget
	templateCost int64        // Budget bytes of its templates
}

type cachedTemplate struct {
	id uint16
	t  *template
}

// forget invalidates the template cache after the templates changed.
func (s *session) forget() { s.cache = [8]cachedTemplate{} }

// get returns template id, or nil.
func (s *session) get(id uint16) *template {
	for i := range s.cache {
		if c := &s.cache[i]; c.id == id && c.t != nil {
			return c.t
		}
	}
	t := s.templates[id]
	if t != nil {
		s.cache[s.cacheNext&7] = cachedTemplate{id, t}
		s.cacheNext++
	}
	return t
}

// pendingSet is a data set held until its template arrives.
type pendingSet struct {
	id         uint16
	offset     int // of the set in its message, for errors
	exportTime uint32
	arrived    time.Time
	body       []byte // set content after the set header (owned copy)
}

// setRef locates a data set in the message being decoded.
type setRef struct {
	id     uint16
	offset int
	body   []byte
}

// msgState is the per-Decode context.
type msgState struct {
	b          *flow.Batch
	s          *session
	exporter   netip.AddrPort
	domain     uint32
	exportTime uint32
	now        time.Time
	changed    bool // templates were added this message
}

// Decoder decodes IPFIX messages (RFC 7011) into flow records. It keeps
// templates per transport session and observation domain. A Decoder is
// used by one goroutine; Stats may be read from others.
//
// # Notes
//   - Steady-state decoding allocates nothing: templates are compiled once
//     into flat plans and strings are interned per decoder.
//   - Time IEs in any RFC 7011 form (§6.1.7–§6.1.10, sysUpTime, delta) are
//     converted to Record.FlowStart/FlowEnd and not kept in Extra.
type Decoder struct {
	opts     DecoderOptions
	budget   *Budget
	stats    Stats
	sessions map[sessionKey]*session
	last     *session
	strs     map[string]string
	strBytes int                      // bytes of the strings in strs
	recent   *[1 << recentBits]string // in front of strs; see intern
	unknown  func(flow.IEKey)
	event    func(Event)
	// copySet, when set, takes the data sets of copyable templates instead
	// of decoding them (a re-exporting Encoder) and returns their records.
	copySet func(t *template, body []byte, setOff int) int

	// Scratch reused across messages.
	sets  []setRef
	specs []fieldSpec
	errs  []error
	st    msgState
}

// NewDecoder returns a decoder.
func NewDecoder(opts DecoderOptions) *Decoder {
	if opts.PendingSets <= 0 {
		opts.PendingSets = DefaultPendingSets
	}
	if opts.PendingBytes <= 0 {
		opts.PendingBytes = DefaultPendingBytes
	}
	if opts.PendingTTL <= 0 {
		opts.PendingTTL = DefaultPendingTTL
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	loadIEClasses()
	budget := opts.Budget
	if budget == nil {
		budget = NewBudget(Limits{})
	}
	return &Decoder{
		opts:     opts,
		budget:   budget,
		sessions: make(map[sessionKey]*session),
		strs:     make(map[string]string),
	}
}

// Stats returns the decoder's counters.
func (d *Decoder) Stats() *Stats { return &d.stats }

// UnknownIE sets fn to be called, on the decoding goroutine, once for every
// template field whose IE is not in the IANA, reverse or Antrea registries
// (each time a template carrying it is stored, not per record), e.g. to keep
// a per-IE counter. Stats.UnknownIEs counts the same events. nil removes the
// hook.
func (d *Decoder) UnknownIE(fn func(flow.IEKey)) { d.unknown = fn }

// CloseSession forgets the templates and held sets of exporter's transport
// session (a TCP connection closed).
func (d *Decoder) CloseSession(exporter netip.AddrPort) {
	for k, s := range d.sessions {
		if k.exporter == exporter {
			d.forgetSession(s)
		}
	}
}

// Close forgets every session, returning their share of the Budget.
func (d *Decoder) Close() {
	for _, s := range d.sessions {
		d.forgetSession(s)
	}
}

// forgetSession drops s with its templates and held sets.
func (d *Decoder) forgetSession(s *session) {
	d.dropPending(s, len(s.pending))
	d.budget.removeSession(s.use, s.templateCost, 0)
	s.templateCost = 0
	delete(d.sessions, s.key)
	if d.last == s {
		d.last = nil
	}
}

// dropTemplate removes template id of s.
func (d *Decoder) dropTemplate(s *session, id uint16) {
	t := s.templates[id]
	if t == nil {
		return
	}
	delete(s.templates, id)
	s.forget()
	s.templateCost -= t.cost
	d.budget.removeTemplate(s.use, t.cost)
}

// Expire drops held data sets and templates that outlived their TTLs,
// sessions idle for longer than TemplateTTL (when set), and sessions that
// hold nothing and were idle for PendingTTL. Sources call it periodically
// (e.g. every second).
func (d *Decoder) Expire() {
	now := d.opts.Now()
	ttl := d.opts.TemplateTTL
	for _, s := range d.sessions {
		d.expirePending(s, now)
		idle := now.Sub(s.lastSeen)
		if len(s.templates) == 0 && len(s.pending) == 0 && idle > d.opts.PendingTTL {
			d.forgetSession(s) // holds nothing: a stray or spoofed message
			continue
		}
		if d.opts.SessionIdle > 0 && idle > d.opts.SessionIdle {
			d.forgetSession(s)
			continue
		}
		if ttl <= 0 {
			continue
		}
		if idle > ttl {
			d.forgetSession(s)
			continue
		}
		for id, t := range s.templates {
			if now.Sub(t.seen) > ttl {
				d.dropTemplate(s, id)
			}
		}
	}
}

// Decode decodes one IPFIX message received from exporter (the transport
// source address) and appends its data records to b. It returns how many
// records it appended (including held sets decoded because this message
// brought their template). A non-nil error describes what was malformed
// (one or more *DecodeError joined); every good set is decoded regardless.
//
// The message is processed in two passes: first every (options) template is
// stored and every options data record is consumed (e.g. softflowd's
// systemInitTimeMilliseconds, sent after its data sets), then data sets are
// decoded in order. Data sets whose template is unknown are held and
// decoded when a later message brings it. msg is not retained.
func (d *Decoder) Decode(b *flow.Batch, msg []byte, exporter netip.AddrPort) (int, error) {
	d.errs = d.errs[:0]
	st := &d.st
	*st = msgState{b: b, exporter: exporter}
	if len(msg) < headerLen {
		d.stats.MalformedMessages.Add(1)
		d.fail(0, 0, fmt.Sprintf("message of %d bytes shorter than the %d-byte header", len(msg), headerLen))
		return 0, d.result()
	}
	st.domain = binary.BigEndian.Uint32(msg[12:])
	if v := binary.BigEndian.Uint16(msg); v != version {
		d.stats.MalformedMessages.Add(1)
		d.fail(0, 0, fmt.Sprintf("version %d, want %d", v, version))
		return 0, d.result()
	}
	d.stats.Messages.Add(1)
	length := int(binary.BigEndian.Uint16(msg[2:]))
	malformedMsg := false
	switch {
	case length < headerLen:
		d.stats.MalformedMessages.Add(1)
		d.fail(2, 0, fmt.Sprintf("message length %d shorter than header", length))
		return 0, d.result()
	case length > len(msg):
		// Decode the sets that are wholly present.
		malformedMsg = true
		d.fail(2, 0, fmt.Sprintf("message length %d exceeds the %d bytes received", length, len(msg)))
	case length < len(msg):
		malformedMsg = true
		d.fail(2, 0, fmt.Sprintf("message length %d shorter than the %d bytes received; trailing bytes ignored", length, len(msg)))
		msg = msg[:length]
	}
	st.exportTime = binary.BigEndian.Uint32(msg[4:])
	st.now = d.opts.Now()
	s := d.session(sessionKey{exporter, st.domain})
	if s == nil {
		// A limit refused the session: the message cannot be decoded.
		return 0, d.result()
	}
	s.lastSeen = st.now
	st.s = s

	// Pass 1: walk the sets, store templates, remember data sets.
	d.sets = d.sets[:0]
	for off := headerLen; off < len(msg); {
		if len(msg)-off < setHeaderLen {
			d.fail(off, 0, fmt.Sprintf("%d trailing bytes shorter than a set header", len(msg)-off))
			malformedMsg = true
			break
		}
		id := binary.BigEndian.Uint16(msg[off:])
		l := int(binary.BigEndian.Uint16(msg[off+2:]))
		if l < setHeaderLen {
			d.stats.MalformedSets.Add(1)
			d.fail(off, id, fmt.Sprintf("set length %d shorter than the set header", l))
			malformedMsg = true
			break
		}
		if l > len(msg)-off {
			d.stats.MalformedSets.Add(1)
			d.fail(off, id, fmt.Sprintf("set length %d overruns the message (%d bytes left)", l, len(msg)-off))
			malformedMsg = true
			break
		}
		body := msg[off+setHeaderLen : off+l]
		switch {
		case len(body) == 0:
			d.stats.MalformedSets.Add(1)
			d.fail(off, id, "empty set")
		case id == setIDTemplate || id == setIDOptions:
			d.templateSet(id, body, off)
		case id >= minDataSetID:
			d.sets = append(d.sets, setRef{id: id, offset: off, body: body})
		default:
			d.stats.MalformedSets.Add(1)
			d.fail(off, id, fmt.Sprintf("reserved set ID %d", id))
		}
		off += l
	}
	if malformedMsg {
		d.stats.MalformedMessages.Add(1)
	}

	// Pass 1b: session state from options records, before any data record.
	for i := range d.sets {
		if t := d.lookup(d.sets[i].id); t != nil && t.options {
			d.optionsSet(t, d.sets[i].body, d.sets[i].offset)
		}
	}

	n := 0
	// Held sets whose template came in this message go first: they are older.
	if st.changed && len(s.pending) > 0 {
		n += d.drainPending()
	}

	// Pass 2: data sets.
	for i := range d.sets {
		ref := &d.sets[i]
		t := d.lookup(ref.id)
		switch {
		case t == nil:
			d.hold(ref)
		case t.copyable && d.copySet != nil:
			n += d.copySet(t, ref.body, ref.offset)
		case !t.options:
			n += d.dataSet(t, ref.body, ref.offset, st.exportTime)
		}
	}
	d.stats.Records.Add(uint64(n))
	return n, d.result()
}

func (d *Decoder) result() error {
	switch len(d.errs) {
	case 0:
		return nil
	case 1:
		return d.errs[0]
	}
	return errors.Join(d.errs...)
}

func (d *Decoder) fail(offset int, setID uint16, reason string) {
	d.errs = append(d.errs, &DecodeError{
		Exporter: d.st.exporter,
		Domain:   d.st.domain,
		Offset:   offset,
		SetID:    setID,
		Reason:   reason,
	})
}

func (d *Decoder) session(k sessionKey) *session {
	if d.last != nil && d.last.key == k {
		return d.last
	}
	s := d.sessions[k]
	if s == nil {
		u, l, ok := d.budget.addSession(k.exporter.Addr())
		if !ok {
			d.limit(0, 0, l, "new session")
			return nil
		}
		s = &session{key: k, templates: make(map[uint16]*template), use: u}
		d.sessions[k] = s
		if d.event != nil {
			d.event(Event{Kind: "session", Exporter: k.exporter, Domain: k.domain})
		}
	}
	d.last = s
	return s
}

// limit reports that limit l refused what.
func (d *Decoder) limit(offset int, setID uint16, l Limit, what string) {
	d.errs = append(d.errs, &LimitError{
		Exporter: d.st.exporter,
		Domain:   d.st.domain,
		Offset:   offset,
		SetID:    setID,
		Limit:    l,
		What:     what,
	})
}

// lookup returns the live template id of the current session, or nil.
func (d *Decoder) lookup(id uint16) *template {
	s := d.st.s
	t := s.get(id)
	if t == nil {
		return nil
	}
	if d.opts.TemplateTTL > 0 && d.st.now.Sub(t.seen) > d.opts.TemplateTTL {
		d.dropTemplate(s, id)
		return nil
	}
	return t
}

// templateSet stores the (options) template records of one set (§3.4).
func (d *Decoder) templateSet(setID uint16, body []byte, setOff int) {
	s := d.st.s
	p := 0
	for len(body)-p >= 4 {
		recOff := setOff + setHeaderLen + p
		id := binary.BigEndian.Uint16(body[p:])
		count := int(binary.BigEndian.Uint16(body[p+2:]))
		if id == 0 && count == 0 && allZero(body[p:]) {
			return // padding (§3.3.1)
		}
		if count == 0 { // withdrawal (§8.1)
			d.withdraw(setID, id, recOff)
			p += 4
			continue
		}
		hdr, scope := 4, 0
		if setID == setIDOptions {
			if len(body)-p < 6 {
				d.stats.MalformedSets.Add(1)
				d.fail(recOff, setID, fmt.Sprintf("options template %d header overruns its set", id))
				return
			}
			scope = int(binary.BigEndian.Uint16(body[p+4:]))
			hdr = 6
		}
		q := p + hdr
		if count > (len(body)-q)/4 {
			d.stats.MalformedSets.Add(1)
			d.fail(recOff, setID, fmt.Sprintf("template %d with %d fields overruns its set", id, count))
			return
		}
		d.specs = d.specs[:0]
		for i := 0; i < count; i++ {
			if len(body)-q < 4 {
				d.stats.MalformedSets.Add(1)
				d.fail(recOff, setID, fmt.Sprintf("template %d overruns its set at field %d", id, i))
				return
			}
			elem := binary.BigEndian.Uint16(body[q:])
			l := binary.BigEndian.Uint16(body[q+2:])
			q += 4
			var pen uint32
			if elem&enterpriseBit != 0 {
				if len(body)-q < 4 {
					d.stats.MalformedSets.Add(1)
					d.fail(recOff, setID, fmt.Sprintf("template %d overruns its set at field %d", id, i))
					return
				}
				elem &^= enterpriseBit
				pen = binary.BigEndian.Uint32(body[q:])
				q += 4
			}
			d.specs = append(d.specs, fieldSpec{flow.IEKey{Enterprise: pen, Element: elem}, l})
		}
		raw := body[p:q]
		p = q
		if reason := d.checkTemplate(setID, id, count, scope); reason != "" {
			// The record's extent is known, so the rest of the set is usable.
			d.stats.MalformedSets.Add(1)
			d.fail(recOff, setID, reason)
			continue
		}
		if max := d.budget.lim.TemplateFields; max > 0 && count > max {
			// Refused before compiling: a redefinition replaces the old
			// template, so that goes too.
			d.dropTemplate(s, id)
			d.budget.refused[LimitTemplateFields].Add(1)
			d.limit(recOff, setID, LimitTemplateFields, fmt.Sprintf("template %d with %d fields", id, count))
			continue
		}
		d.store(s, setID, id, scope, raw, recOff)
	}
	// Fewer than 4 bytes left: padding.
}

func (d *Decoder) checkTemplate(setID, id uint16, count, scope int) string {
	if id < minDataSetID {
		return fmt.Sprintf("template ID %d below 256", id)
	}
	if setID == setIDOptions && (scope == 0 || scope > count) {
		return fmt.Sprintf("options template %d has scope field count %d of %d fields", id, scope, count)
	}
	minLen := 0
	for _, f := range d.specs {
		if f.length == variableLength {
			minLen++
		} else {
			minLen += int(f.length)
		}
	}
	if minLen == 0 {
		return fmt.Sprintf("template %d has zero-length records", id)
	}
	if minLen > 0xffff-headerLen-setHeaderLen {
		return fmt.Sprintf("template %d records (%d bytes) cannot fit in a message", id, minLen)
	}
	return ""
}

func (d *Decoder) store(s *session, setID, id uint16, scope int, raw []byte, recOff int) {
	options := setID == setIDOptions
	if t := s.get(id); t != nil && t.options == options && bytes.Equal(t.raw, raw) {
		t.seen = d.st.now // refresh: nothing to recompile
		d.stats.Templates.Add(1)
		return
	}
	d.dropTemplate(s, id) // a redefinition (§8.1): the old one goes
	if max := d.budget.lim.TemplatesPerSession; max > 0 && len(s.templates) >= max {
		d.budget.refused[LimitTemplatesPerSession].Add(1)
		d.limit(recOff, setID, LimitTemplatesPerSession, fmt.Sprintf("template %d", id))
		return
	}
	cost := templateCost(len(d.specs), len(raw))
	if l, ok := d.budget.addTemplate(s.use, cost); !ok {
		d.limit(recOff, setID, l, fmt.Sprintf("template %d (%d bytes)", id, cost))
		return
	}
	t := &template{
		id:         id,
		options:    options,
		scopeCount: scope,
		raw:        bytes.Clone(raw),
		seen:       d.st.now,
		cost:       cost,
	}
	d.stats.UnknownIEs.Add(uint64(compile(t, d.specs, d.unknown)))
	s.templates[id] = t
	s.templateCost += cost
	s.forget()
	d.st.changed = true
	d.stats.Templates.Add(1)
	if d.event != nil {
		d.event(Event{Kind: "template", Exporter: s.key.exporter, Domain: s.key.domain, TemplateID: id, Options: options})
	}
}

func (d *Decoder) withdraw(setID, id uint16, recOff int) {
	s := d.st.s
	switch {
	case id == setID: // all templates of this set's kind (§8.1)
		for k, t := range s.templates {
			if t.options == (setID == setIDOptions) {
				d.dropTemplate(s, k)
			}
		}
	case id >= minDataSetID:
		d.dropTemplate(s, id)
	default:
		d.stats.MalformedSets.Add(1)
		d.fail(recOff, setID, fmt.Sprintf("withdrawal of reserved template ID %d", id))
		return
	}
	d.stats.Withdrawals.Add(1)
}

// fixed returns the value of fixed-length field o, in the run at data[run:].
func (o *op) fixed(data []byte, run int) []byte {
	at := run + int(o.pos)
	return data[at : at+int(o.length)]
}

// value returns the value of field o: in the run at data[run:], or, for a
// variable-length field, at data[*p:], advancing *p past it.
func (o *op) value(data []byte, run int, p *int) ([]byte, bool) {
	if o.length != variableLength {
		return o.fixed(data, run), true
	}
	v, q, ok := field(data, *p, o.length)
	*p = q
	return v, ok
}

// field returns the value of a field of length l at data[p:] (variable
// length per §7) and the offset after it.
func field(data []byte, p int, l uint16) ([]byte, int, bool) {
	n := int(l)
	if l == variableLength {
		if p >= len(data) {
			return nil, 0, false
		}
		n = int(data[p])
		p++
		if n == 255 {
			if len(data)-p < 2 {
				return nil, 0, false
			}
			n = int(binary.BigEndian.Uint16(data[p:]))
			p += 2
		}
	}
	if n > len(data)-p {
		return nil, 0, false
	}
	// Two-index slice: record() derives a value's offset from its capacity.
	return data[p : p+n], p + n, true
}

// optionsSet consumes options data records: they carry session state
// (systemInitTimeMilliseconds) and are not emitted.
func (d *Decoder) optionsSet(t *template, body []byte, setOff int) {
	s := d.st.s
	p, n := 0, 0
	for len(body)-p >= t.minLen {
		q := p
		ok := true
		for i := range t.ops {
			var v []byte
			if v, q, ok = field(body, q, t.ops[i].length); !ok {
				break
			}
			if t.ops[i].kind == opInit {
				s.initMillis = int64(readUint(v))
				s.hasInit = true
			}
		}
		if !ok {
			d.stats.MalformedSets.Add(1)
			d.fail(setOff, t.id, "options data set ends in a partial record")
			break
		}
		p = q
		n++
	}
	if n == 0 && p < len(body) {
		d.stats.MalformedSets.Add(1)
		d.fail(setOff, t.id, "options data set shorter than record")
	}
	d.stats.OptionsRecords.Add(uint64(n))
}

// dataSet decodes the records of one data set into the batch.
func (d *Decoder) dataSet(t *template, body []byte, setOff int, exportTime uint32) int {
	b := d.st.b
	p, n := 0, 0
	for len(body)-p >= t.minLen {
		r := b.Append()
		used, ok := d.record(r, t, body[p:], exportTime)
		if !ok {
			b.Unappend()
			d.stats.MalformedSets.Add(1)
			d.fail(setOff, t.id, "data set ends in a partial record")
			return n
		}
		p += used
		n++
	}
	if n == 0 && p < len(body) {
		d.stats.MalformedSets.Add(1)
		d.fail(setOff, t.id, "data set shorter than record")
	}
	// Otherwise fewer bytes than a record are left: padding (§3.3.1).
	return n
}

// timeState collects a record's time fields until they can be resolved.
type timeState struct {
	start, end         int64
	startForm, endForm timeForm
	upStart, upEnd     uint64
	hasUpStart         bool
	hasUpEnd           bool
	hasInit            bool
	initMillis         int64
}

// record decodes one data record starting at data[0] and returns its length.
//
// Fixed-length fields are read at their precomputed offset within their
// run (see runs): one bounds check per run, not per field, and no slice for
// the numeric and address fields, which are most of a record.
func (d *Decoder) record(r *flow.Record, t *template, data []byte, exportTime uint32) (int, bool) {
	r.Exporter = d.st.exporter
	r.ObservationDomainID = d.st.domain
	var ts timeState
	// p is the end of what has been checked; run the start of the current
	// fixed run, whose bytes data[run:p] are all there.
	p, run := 0, 0
	base := unsafe.Pointer(unsafe.SliceData(data))
	for i := range t.ops {
		o := &t.ops[i]
		if o.begins {
			if int(o.run) > len(data)-p {
				return 0, false
			}
			run = p
			p += int(o.run)
		}
		// The direct reads below take exactly o.length bytes (useSlot picks
		// these kinds only for that length), all inside the run checked above.
		switch o.kind {
		case opSlotU8:
			*flow.Uint8At(r, o.off) = *(*uint8)(unsafe.Add(base, run+int(o.pos)))
		case opSlotU16:
			*flow.Uint16At(r, o.off) = binary.BigEndian.Uint16((*[2]byte)(unsafe.Add(base, run+int(o.pos)))[:])
		case opSlotU32:
			*flow.Uint32At(r, o.off) = binary.BigEndian.Uint32((*[4]byte)(unsafe.Add(base, run+int(o.pos)))[:])
		case opSlotU64:
			*flow.Uint64At(r, o.off) = binary.BigEndian.Uint64((*[8]byte)(unsafe.Add(base, run+int(o.pos)))[:])
		case opSlotAddr4:
			*flow.AddrAt(r, o.off) = netip.AddrFrom4(*(*[4]byte)(unsafe.Add(base, run+int(o.pos))))
		case opSlotAddr6:
			*flow.AddrAt(r, o.off) = netip.AddrFrom16(*(*[16]byte)(unsafe.Add(base, run+int(o.pos))))
		case opSlotUint:
			x := readUint(o.fixed(data, run))
			switch o.size {
			case 1:
				*flow.Uint8At(r, o.off) = uint8(x)
			case 2:
				*flow.Uint16At(r, o.off) = uint16(x)
			case 4:
				*flow.Uint32At(r, o.off) = uint32(x)
			default:
				*flow.Uint64At(r, o.off) = x
			}
		case opSlotString:
			v, ok := o.value(data, run, &p)
			if !ok {
				return 0, false
			}
			if string(v) != o.last {
				o.last = d.intern(v)
			}
			*flow.StringAt(r, o.off) = o.last
		case opUint:
			r.SetUint(o.field, readUint(o.fixed(data, run)))
		case opString:
			v, ok := o.value(data, run, &p)
			if !ok {
				return 0, false
			}
			if string(v) != o.last {
				o.last = d.intern(v)
			}
			r.SetString(o.field, o.last)
		case opAddr4:
			r.SetAddr(o.field, netip.AddrFrom4([4]byte(o.fixed(data, run))))
		case opAddr6:
			r.SetAddr(o.field, netip.AddrFrom16([16]byte(o.fixed(data, run))))
		case opTime:
			v := o.fixed(data, run)
			var ns int64
			switch o.form {
			case formSeconds:
				ns = int64(readUint(v)) * 1e9
			case formMillis:
				ns = int64(readUint(v)) * 1e6
			case formMicros:
				ns = ntpToUnixNano(v, true)
			case formNanos:
				ns = ntpToUnixNano(v, false)
			case formDelta:
				ns = int64(exportTime)*1e9 - int64(readUint(v))*1e3
			case formSysUp:
				if o.end {
					ts.upEnd, ts.hasUpEnd = readUint(v), true
				} else {
					ts.upStart, ts.hasUpStart = readUint(v), true
				}
				continue
			}
			if o.end {
				if o.form >= ts.endForm {
					ts.end, ts.endForm = ns, o.form
				}
			} else if o.form >= ts.startForm {
				ts.start, ts.startForm = ns, o.form
			}
		case opInit:
			v := o.fixed(data, run)
			ts.initMillis, ts.hasInit = int64(readUint(v)), true
			r.Extra = append(r.Extra, flow.Field{Enterprise: o.ent, Element: o.elem, Value: v})
		default:
			v, ok := o.value(data, run, &p)
			if !ok {
				return 0, false
			}
			// Points into the message until copied below.
			r.Extra = append(r.Extra, flow.Field{Enterprise: o.ent, Element: o.elem, Variable: o.length == variableLength, Value: v})
		}
	}
	if len(r.Extra) > 0 {
		d.copyExtra(r, data)
	}
	// Every slot op sets its field: their Present bits are precomputed.
	r.Present[0] |= t.present[0]
	r.Present[1] |= t.present[1]
	if ts.hasUpStart || ts.hasUpEnd {
		d.sysUpTimes(&ts, exportTime)
	}
	if ts.startForm != 0 {
		r.FlowStart = ts.start
		r.Present.Add(flow.FlowStart)
	}
	if ts.endForm != 0 {
		r.FlowEnd = ts.end
		r.Present.Add(flow.FlowEnd)
	}
	return p, true
}

// copyExtra moves r's Extra values, which point into data (the message),
// into the batch arena with one copy spanning all of them: they lie in
// template order within the record.
func (d *Decoder) copyExtra(r *flow.Record, data []byte) {
	first := cap(data) - cap(r.Extra[0].Value)
	last := &r.Extra[len(r.Extra)-1]
	end := cap(data) - cap(last.Value) + len(last.Value)
	if end <= first {
		for i := range r.Extra {
			r.Extra[i].Value = nil // all empty
		}
		return
	}
	arena := d.st.b.CopyBytes(data[first:end])
	for i := range r.Extra {
		x := &r.Extra[i]
		if len(x.Value) == 0 {
			x.Value = nil
			continue
		}
		off := cap(data) - cap(x.Value) - first
		x.Value = arena[off : off+len(x.Value) : off+len(x.Value)]
	}
}

// sysUpTimes resolves flowStartSysUpTime/flowEndSysUpTime (ms since the
// exporter's systemInitTimeMilliseconds, from the record or the session's
// options records). Without an init time, the record's end is taken as the
// export time.
func (d *Decoder) sysUpTimes(ts *timeState, exportTime uint32) {
	if ts.startForm >= formSysUp && ts.endForm >= formSysUp {
		return // finer forms present
	}
	var base int64
	switch {
	case ts.hasInit:
		base = ts.initMillis
	case d.st.s.hasInit:
		base = d.st.s.initMillis
	default:
		last := ts.upStart
		if ts.hasUpEnd {
			last = ts.upEnd
		}
		base = int64(exportTime)*1000 - int64(last)
		d.stats.TimesApproximated.Add(1)
	}
	exportMillis := int64(exportTime) * 1000
	if ts.hasUpStart && ts.startForm < formSysUp {
		ts.start, ts.startForm = unwrapUptime(base, ts.upStart, exportMillis)*1e6, formSysUp
	}
	if ts.hasUpEnd && ts.endForm < formSysUp {
		ts.end, ts.endForm = unwrapUptime(base, ts.upEnd, exportMillis)*1e6, formSysUp
	}
}

// uptimeWrap is the period of a sysUpTime (unsigned32 milliseconds).
const uptimeWrap = 1 << 32

// unwrapUptime returns init+up in ms since epoch, moved by whole uptime
// periods (2^32 ms, ~49.7 days) to the one nearest the export time: the
// unsigned32 uptime wraps, and exporters replaying old traffic (softflowd
// -r) send uptimes that went "negative" modulo 2^32.
func unwrapUptime(init int64, up uint64, exportMillis int64) int64 {
	t := init + int64(up)
	if d := exportMillis - t; d > uptimeWrap/2 || d < -uptimeWrap/2 {
		k := (d + uptimeWrap/2) / uptimeWrap
		if d+uptimeWrap/2 < 0 {
			k = (d + uptimeWrap/2 - (uptimeWrap - 1)) / uptimeWrap // floor
		}
		t += k * uptimeWrap
	}
	return t
}

// intern returns v as a string shared with earlier equal values, so that
// repetitive strings (pod names, labels) do not allocate per record.
//
// A direct-mapped cache, indexed by quickHash, answers first: a Node's
// records name a few hundred Pods, and a hit costs a multiply and one
// comparison where the map hashes all of v and probes (a third of the
// decoder's time on records whose Pod names change from one to the next).
func (d *Decoder) intern(v []byte) string {
	if len(v) == 0 {
		return ""
	}
	if len(v) > internMaxLen {
		return string(v)
	}
	if d.recent == nil {
		d.recent = new([1 << recentBits]string)
	}
	slot := &d.recent[quickHash(v)]
	if *slot == string(v) {
		return *slot
	}
	s, ok := d.strs[string(v)]
	if !ok {
		if len(d.strs) >= internLimit || d.strBytes+len(v) > internBytes {
			clear(d.strs)
			d.strBytes = 0
		}
		s = string(v)
		d.strs[s] = s
		d.strBytes += len(s)
	}
	*slot = s
	return s
}

// quickHash returns recentBits bits of a hash of v's length and its first
// and last eight bytes, where names that share a prefix differ (pod name
// suffixes). Strings that differ only in between collide, and are then
// found in the map.
func quickHash(v []byte) uint64 {
	const golden = 0x9e3779b97f4a7c15
	n := len(v)
	var last, first uint64
	if n >= 8 {
		last, first = binary.LittleEndian.Uint64(v[n-8:]), binary.LittleEndian.Uint64(v[:8])
	} else {
		for _, c := range v {
			last = last<<8 | uint64(c)
		}
	}
	x := last ^ bits.RotateLeft64(first, 29) ^ uint64(n)
	x ^= x >> 32 // a suffix's bytes are the high ones: fold them down before mixing
	x *= golden
	x ^= x >> 29
	x *= golden
	return x >> (64 - recentBits)
}

// hold keeps a data set whose template is unknown, within the session's
// limits, until its template arrives or it expires.
func (d *Decoder) hold(ref *setRef) {
	s := d.st.s
	d.expirePending(s, d.st.now)
	if len(ref.body) > d.opts.PendingBytes {
		d.stats.PendingExpired.Add(1)
		return
	}
	for len(s.pending) > 0 && (len(s.pending) >= d.opts.PendingSets || s.pendingBytes+len(ref.body) > d.opts.PendingBytes) {
		d.dropPending(s, 1)
	}
	if l, ok := d.budget.addHeld(s.use, int64(len(ref.body))+heldOverhead); !ok {
		d.stats.PendingExpired.Add(1)
		d.limit(ref.offset, ref.id, l, fmt.Sprintf("data set of %d bytes waiting for template %d", len(ref.body), ref.id))
		return
	}
	s.pending = append(s.pending, pendingSet{
		id:         ref.id,
		offset:     ref.offset,
		exportTime: d.st.exportTime,
		arrived:    d.st.now,
		body:       bytes.Clone(ref.body),
	})
	s.pendingBytes += len(ref.body)
	d.stats.PendingHeld.Add(1)
}

// dropPending drops the n oldest held sets of s, counting them expired.
func (d *Decoder) dropPending(s *session, n int) {
	if n == 0 {
		return
	}
	for i := 0; i < n; i++ {
		s.pendingBytes -= len(s.pending[i].body)
	}
	d.budget.removeHeld(s.use, int64(n)*heldOverhead+sumBodies(s.pending[:n]))
	m := copy(s.pending, s.pending[n:])
	clear(s.pending[m:])
	s.pending = s.pending[:m]
	d.stats.PendingExpired.Add(uint64(n))
}

func (d *Decoder) expirePending(s *session, now time.Time) {
	n := 0
	for n < len(s.pending) && now.Sub(s.pending[n].arrived) > d.opts.PendingTTL {
		n++
	}
	if n > 0 {
		d.dropPending(s, n)
	}
}

// drainPending decodes the held sets of the current session whose template
// is now known, in arrival order, and keeps the others.
func (d *Decoder) drainPending() int {
	s := d.st.s
	d.expirePending(s, d.st.now)
	n := 0
	kept := s.pending[:0]
	for _, ps := range s.pending {
		t := d.lookup(ps.id)
		if t == nil {
			kept = append(kept, ps)
			continue
		}
		s.pendingBytes -= len(ps.body)
		d.budget.removeHeld(s.use, int64(len(ps.body))+heldOverhead)
		d.stats.PendingDecoded.Add(1)
		if t.options {
			d.optionsSet(t, ps.body, ps.offset)
		} else {
			n += d.dataSet(t, ps.body, ps.offset, ps.exportTime)
		}
	}
	clear(s.pending[len(kept):])
	s.pending = kept
	return n
}

func allZero(p []byte) bool {
	for _, c := range p {
		if c != 0 {
			return false
		}
	}
	return true
}

func sumBodies(ps []pendingSet) int64 {
	var n int64
	for i := range ps {
		n += int64(len(ps[i].body))
	}
	return n
}
