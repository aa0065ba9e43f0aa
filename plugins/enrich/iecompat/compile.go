package iecompat

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/knadh/koanf/parsers/yaml"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/ipfix"
)

// compiledShim is a Shim ready to run: resolved IEs and one op per action.
type compiledShim struct {
	name  string
	match matcher
	ops   []op
}

// matcher is a compiled Match.
type matcher struct {
	prefixes   []netip.Prefix
	domains    []uint32
	has, lacks []ieRef
}

// matchesSource reports whether r's exporter and observation domain
// match; the result is the same for every record of one message.
func (m *matcher) matchesSource(r *flow.Record) bool {
	if len(m.prefixes) > 0 {
		a := r.Exporter.Addr().Unmap()
		found := false
		for _, p := range m.prefixes {
			if p.Contains(a) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	if len(m.domains) > 0 {
		found := false
		for _, d := range m.domains {
			if d == r.ObservationDomainID {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// matchesIEs reports whether r carries the IEs of Has and none of Lacks.
func (m *matcher) matchesIEs(r *flow.Record) bool {
	for i := range m.has {
		if !present(r, &m.has[i]) {
			return false
		}
	}
	for i := range m.lacks {
		if present(r, &m.lacks[i]) {
			return false
		}
	}
	return true
}

// op is a compiled action. apply returns why it was skipped, or ok.
type op interface {
	apply(r *flow.Record, w writer) errReason
}

type renameOp struct {
	from, to  ieRef
	overwrite bool
}

func (o *renameOp) apply(r *flow.Record, w writer) errReason {
	if !present(r, &o.from) {
		return ok
	}
	if !o.overwrite && present(r, &o.to) {
		return reasonConflict
	}
	if !o.from.typed && !o.to.typed {
		// Verbatim to verbatim: renumber in place, bytes unchanged.
		remove(r, &o.to) // absent, empty or overwritten
		f := r.FindExtra(o.from.key)
		f.Enterprise, f.Element = o.to.key.Enterprise, o.to.key.Element
		return ok
	}
	v, _ := get(r, &o.from)
	if reason := set(r, w, &o.to, &v); reason != ok {
		return reason
	}
	remove(r, &o.from)
	return ok
}

type widthOp struct {
	ie        ieRef
	n         int
	signed    bool // the new type is signed
	srcSigned bool // the value as sent is signed
}

func (o *widthOp) apply(r *flow.Record, w writer) errReason {
	f := r.FindExtra(o.ie.key)
	if f == nil || len(f.Value) == 0 || len(f.Value) == o.n {
		return ok
	}
	if len(f.Value) > 8 {
		return reasonConvert
	}
	u, _ := ipfix.DecodeUnsigned(f.Value)
	if o.srcSigned {
		i, _ := ipfix.DecodeSigned(f.Value)
		if i < 0 && !o.signed {
			return reasonOverflow
		}
		u = uint64(i)
	}
	var tmp [16]byte
	enc, reason := putInt(&tmp, o.n, u, o.signed)
	if reason != ok {
		return reason
	}
	f.Value, f.Variable = w.b.CopyBytes(enc), false
	return ok
}

type dropOp struct{ ie ieRef }

func (o *dropOp) apply(r *flow.Record, _ writer) errReason {
	remove(r, &o.ie)
	return ok
}

type deriveFunc uint8

const (
	deriveCopy deriveFunc = iota
	deriveSum
	deriveMin
	deriveMax
)

type deriveOp struct {
	ie        ieRef
	from      []ieRef
	fn        deriveFunc
	overwrite bool
}

func (o *deriveOp) apply(r *flow.Record, w writer) errReason {
	if !o.overwrite && present(r, &o.ie) {
		return ok // the record's own value wins
	}
	if o.fn == deriveCopy {
		for i := range o.from {
			if v, has := get(r, &o.from[i]); has {
				return set(r, w, &o.ie, &v)
			}
		}
		return ok
	}
	var (
		acc   uint64
		found bool
	)
	for i := range o.from {
		v, has := get(r, &o.from[i])
		if !has {
			continue
		}
		u, isUint := v.uintOf()
		if !isUint {
			return reasonConvert
		}
		switch {
		case !found:
			acc = u
		case o.fn == deriveSum:
			if acc+u < acc {
				return reasonOverflow
			}
			acc += u
		case o.fn == deriveMin:
			acc = min(acc, u)
		case o.fn == deriveMax:
			acc = max(acc, u)
		}
		found = true
	}
	if !found {
		return ok
	}
	return set(r, w, &o.ie, &value{kind: vUint, u: acc})
}

type defaultOp struct {
	ie ieRef
	v  value
}

func (o *defaultOp) apply(r *flow.Record, w writer) errReason {
	if present(r, &o.ie) {
		return ok
	}
	return set(r, w, &o.ie, &o.v)
}

// compileShims compiles shims; at names the key of each problem, e.g.
// "shims" or "antrea.yaml: shims". names collects shim names across calls
// to reject duplicates (nil: a fresh set).
func compileShims(shims []Shim, at string, names map[string]string) ([]compiledShim, []error) {
	if names == nil {
		names = map[string]string{}
	}
	var (
		out  []compiledShim
		errs []error
	)
	for i, s := range shims {
		key := fmt.Sprintf("%s[%d]", at, i)
		cs := compiledShim{name: s.Name}
		switch {
		case strings.TrimSpace(s.Name) == "":
			errs = append(errs, fmt.Errorf("%s.name: missing", key))
		case names[s.Name] != "":
			errs = append(errs, fmt.Errorf("%s.name: %q is also the name of %s", key, s.Name, names[s.Name]))
		default:
			names[s.Name] = key
		}
		var mErrs []error
		cs.match, mErrs = compileMatch(s.Match, key+".match")
		errs = append(errs, mErrs...)
		if len(s.Actions) == 0 {
			errs = append(errs, fmt.Errorf("%s.actions: a shim needs at least one action", key))
		}
		for j, a := range s.Actions {
			o, aErrs := compileAction(a, fmt.Sprintf("%s.actions[%d]", key, j))
			errs = append(errs, aErrs...)
			if o != nil {
				cs.ops = append(cs.ops, o)
			}
		}
		out = append(out, cs)
	}
	return out, errs
}

func compileMatch(m Match, at string) (matcher, []error) {
	var (
		out  matcher
		errs []error
	)
	for i, e := range m.Exporters {
		e = strings.TrimSpace(e)
		var p netip.Prefix
		var err error
		if strings.Contains(e, "/") {
			p, err = netip.ParsePrefix(e)
			p = p.Masked()
		} else {
			var a netip.Addr
			a, err = netip.ParseAddr(e)
			p = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s.exporters[%d]: %q is not an IP address or CIDR prefix", at, i, e))
			continue
		}
		if p.Addr().Is4In6() {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		out.prefixes = append(out.prefixes, p)
	}
	out.domains = m.ObservationDomains
	for i, s := range m.Has {
		ref, err := resolveIE(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s.has[%d]: %w", at, i, err))
			continue
		}
		out.has = append(out.has, ref)
	}
	for i, s := range m.Lacks {
		ref, err := resolveIE(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s.lacks[%d]: %w", at, i, err))
			continue
		}
		out.lacks = append(out.lacks, ref)
	}
	return out, errs
}

// compileAction checks a and returns its op; every problem names its key.
func compileAction(a Action, at string) (op, []error) {
	var errs []error
	fail := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: %s", at, key, fmt.Sprintf(format, args...)))
	}
	ie, err := resolveIE(a.IE)
	if err != nil {
		fail("ie", "%v", err)
	}
	// unused reports keys set that op does not read.
	unused := func(keys ...string) {
		for _, k := range keys {
			set := false
			switch k {
			case "to":
				set = a.To != ""
			case "type":
				set = a.Type != ""
			case "from":
				set = len(a.From) > 0
			case "func":
				set = a.Func != ""
			case "value":
				set = a.Value != nil
			case "overwrite":
				set = a.Overwrite
			case "from_type":
				set = a.FromType != ""
			}
			if set {
				fail(k, "does not apply to op %s", a.Op)
			}
		}
	}
	// declare applies `type` to a target IE.
	declare := func(ref *ieRef) {
		if a.Type == "" {
			return
		}
		t, err := parseType(a.Type)
		switch {
		case err != nil:
			fail("type", "%v", err)
		case ref.typed:
			fail("type", "%s is a typed field of the record; its type is fixed", ref)
		default:
			ref.dtype, ref.hasType = t, true
		}
	}
	switch a.Op {
	case "rename":
		unused("from", "func", "value", "from_type")
		to, err := resolveIE(a.To)
		if err != nil {
			fail("to", "%v", err)
			break
		}
		declare(&to)
		if len(errs) > 0 {
			break
		}
		if to.key == ie.key {
			fail("to", "%s is the IE being renamed", to)
		}
		if ie.typed && to.typed && ie.kind() != to.kind() {
			fail("to", "%s and %s hold different kinds of value", ie, to)
		}
		return &renameOp{from: ie, to: to, overwrite: a.Overwrite}, errs
	case "width":
		unused("to", "from", "func", "value", "overwrite")
		if err != nil {
			break
		}
		if ie.typed {
			fail("ie", "%s is a typed field, always exported at its canonical width; width applies to verbatim IEs", ie)
		}
		t, terr := parseType(a.Type)
		n, signed, isInt := intWidth(t)
		switch {
		case a.Type == "":
			fail("type", "missing (the new integer type, e.g. unsigned64)")
		case terr != nil:
			fail("type", "%v", terr)
		case !isInt:
			fail("type", "%s is not an integer type", a.Type)
		}
		srcSigned := signed
		if a.FromType != "" {
			ft, ferr := parseType(a.FromType)
			_, fSigned, fInt := intWidth(ft)
			switch {
			case ferr != nil:
				fail("from_type", "%v", ferr)
			case !fInt:
				fail("from_type", "%s is not an integer type", a.FromType)
			}
			srcSigned = fSigned
		}
		if len(errs) > 0 {
			break
		}
		return &widthOp{ie: ie, n: n, signed: signed, srcSigned: srcSigned}, errs
	case "drop":
		unused("to", "type", "from", "func", "value", "overwrite", "from_type")
		if len(errs) > 0 {
			break
		}
		return &dropOp{ie: ie}, errs
	case "derive":
		unused("to", "value", "from_type")
		declare(&ie)
		o := &deriveOp{ie: ie, overwrite: a.Overwrite}
		switch a.Func {
		case "", "copy":
			o.fn = deriveCopy
		case "sum":
			o.fn = deriveSum
		case "min":
			o.fn = deriveMin
		case "max":
			o.fn = deriveMax
		default:
			fail("func", "%q is not copy, sum, min or max", a.Func)
		}
		if len(a.From) == 0 {
			fail("from", "missing (the IEs to derive %s from)", a.IE)
		}
		for i, s := range a.From {
			ref, err := resolveIE(s)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s.from[%d]: %w", at, i, err))
				continue
			}
			if ref.key == ie.key {
				errs = append(errs, fmt.Errorf("%s.from[%d]: %s is the IE being derived", at, i, ref))
			}
			o.from = append(o.from, ref)
		}
		if o.fn != deriveCopy && err == nil && !isIntegerIE(&o.ie) {
			fail("func", "%s needs an integer target; %s is not one", a.Func, a.IE)
		}
		if len(errs) > 0 {
			break
		}
		return o, errs
	case "default":
		unused("to", "from", "func", "overwrite", "from_type")
		declare(&ie)
		if a.Value == nil {
			fail("value", "missing")
		}
		if len(errs) > 0 {
			break
		}
		v, verr := constValue(&ie, a.Value)
		if verr != nil {
			fail("value", "%v", verr)
			break
		}
		return &defaultOp{ie: ie, v: v}, errs
	case "":
		fail("op", "missing (rename, width, drop, derive or default)")
	default:
		fail("op", "%q is not rename, width, drop, derive or default", a.Op)
	}
	return nil, errs
}

func isIntegerIE(ref *ieRef) bool {
	if ref.typed {
		return ref.kind() == flow.KindUnsigned
	}
	_, _, isInt := intWidth(ref.dtype)
	return ref.hasType && isInt
}

// constValue converts a config value for the IE ref, checking that it fits.
func constValue(ref *ieRef, raw any) (value, error) {
	if ref.typed {
		switch ref.kind() {
		case flow.KindUnsigned:
			u, err := constUint(raw)
			if err != nil {
				return value{}, err
			}
			if w := flow.Fields[ref.field].Width; w < 8 && u>>(8*w) != 0 {
				return value{}, fmt.Errorf("%d does not fit %s (%d bytes)", u, ref, w)
			}
			return value{kind: vUint, u: u}, nil
		case flow.KindTime:
			ns, err := constTime(raw, time.Millisecond)
			return value{kind: vTime, u: ns}, err
		case flow.KindString:
			s, isString := raw.(string)
			if !isString {
				return value{}, fmt.Errorf("%v (%T) is not a string", raw, raw)
			}
			return value{kind: vString, s: s}, nil
		case flow.KindAddress:
			a, err := constAddr(raw)
			if err == nil && is6(a) != ref.v6 {
				err = fmt.Errorf("%v is not an address of %s's family", raw, ref)
			}
			return value{kind: vAddr, a: a}, err
		}
	}
	if !ref.hasType {
		return value{}, fmt.Errorf("%s is in no registry: declare its type with `type`", ref)
	}
	var (
		tmp [16]byte
		enc []byte
	)
	t := ref.dtype
	if n, signed, isInt := intWidth(t); isInt {
		var u uint64
		if signed {
			i, err := constInt(raw)
			if err != nil {
				return value{}, err
			}
			u = uint64(i)
		} else {
			var err error
			if u, err = constUint(raw); err != nil {
				return value{}, err
			}
		}
		var reason errReason
		if enc, reason = putInt(&tmp, n, u, signed); reason != ok {
			return value{}, fmt.Errorf("%v does not fit %s", raw, t)
		}
	} else {
		switch t {
		case ipfix.String:
			s, isString := raw.(string)
			if !isString {
				return value{}, fmt.Errorf("%v (%T) is not a string", raw, raw)
			}
			enc = []byte(s)
		case ipfix.IPv4Address, ipfix.IPv6Address:
			a, err := constAddr(raw)
			if err != nil {
				return value{}, err
			}
			if is6(a) != (t == ipfix.IPv6Address) {
				return value{}, fmt.Errorf("%v is not an %s", raw, t)
			}
			enc = addrBytes(a, &tmp)
		case ipfix.DateTimeSeconds, ipfix.DateTimeMilliseconds:
			unit := time.Second
			if t == ipfix.DateTimeMilliseconds {
				unit = time.Millisecond
			}
			ns, err := constTime(raw, unit)
			if err != nil {
				return value{}, err
			}
			var reason errReason
			if enc, reason = encode(ref, &value{kind: vTime, u: ns}, &tmp); reason != ok {
				return value{}, fmt.Errorf("%v does not fit %s", raw, t)
			}
		case ipfix.Boolean:
			bv, isBool := raw.(bool)
			if !isBool {
				return value{}, fmt.Errorf("%v (%T) is not a boolean", raw, raw)
			}
			enc = []byte{2} // RFC 7011 §6.1.5: 1 is true, 2 is false
			if bv {
				enc[0] = 1
			}
		case ipfix.Float32, ipfix.Float64:
			f, err := constFloat(raw)
			if err != nil {
				return value{}, err
			}
			if t == ipfix.Float32 {
				enc = make([]byte, 4)
				putBE(enc, uint64(math.Float32bits(float32(f))))
			} else {
				enc = make([]byte, 8)
				putBE(enc, math.Float64bits(f))
			}
		default:
			return value{}, fmt.Errorf("defaults of type %s are not supported", t)
		}
	}
	return value{kind: vBytes, b: append([]byte(nil), enc...), bt: t, hasBT: true}, nil
}

func putBE(b []byte, v uint64) {
	for i := len(b) - 1; i >= 0; i-- {
		b[i] = byte(v)
		v >>= 8
	}
}

func constInt(raw any) (int64, error) {
	switch v := raw.(type) {
	case int:
		return int64(v), nil
	case int64:
		return v, nil
	case uint64:
		if v > math.MaxInt64 {
			return 0, fmt.Errorf("%d is out of range", v)
		}
		return int64(v), nil
	case float64:
		if v == math.Trunc(v) && math.Abs(v) < 1<<63 {
			return int64(v), nil
		}
	case string:
		if i, err := strconv.ParseInt(strings.TrimSpace(v), 0, 64); err == nil {
			return i, nil
		}
	}
	return 0, fmt.Errorf("%v (%T) is not an integer", raw, raw)
}

func constUint(raw any) (uint64, error) {
	switch v := raw.(type) {
	case uint64:
		return v, nil
	case string:
		if u, err := strconv.ParseUint(strings.TrimSpace(v), 0, 64); err == nil {
			return u, nil
		}
		return 0, fmt.Errorf("%q is not an unsigned integer", v)
	}
	i, err := constInt(raw)
	if err != nil {
		return 0, err
	}
	if i < 0 {
		return 0, fmt.Errorf("%d is negative", i)
	}
	return uint64(i), nil
}

func constFloat(raw any) (float64, error) {
	switch v := raw.(type) {
	case float64:
		return v, nil
	case int:
		return float64(v), nil
	case int64:
		return float64(v), nil
	}
	return 0, fmt.Errorf("%v (%T) is not a number", raw, raw)
}

// constTime reads an RFC 3339 time or an integer count of unit since the
// epoch, as nanoseconds.
func constTime(raw any, unit time.Duration) (uint64, error) {
	if s, isString := raw.(string); isString {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil || t.Before(time.Unix(0, 0)) {
			return 0, fmt.Errorf("%q is not an RFC 3339 time after 1970", s)
		}
		return uint64(t.UnixNano()), nil
	}
	u, err := constUint(raw)
	if err != nil {
		return 0, err
	}
	if u > math.MaxInt64/uint64(unit) {
		return 0, fmt.Errorf("%d is out of range", u)
	}
	return u * uint64(unit), nil
}

func constAddr(raw any) (netip.Addr, error) {
	s, isString := raw.(string)
	if !isString {
		return netip.Addr{}, fmt.Errorf("%v (%T) is not an address", raw, raw)
	}
	a, err := netip.ParseAddr(strings.TrimSpace(s))
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%q is not an IP address", s)
	}
	return a.Unmap(), nil
}

// shimFile is the content of a shim file.
type shimFile struct {
	Shims []Shim `koanf:"shims"`
}

// ErrShimFile wraps every problem with a shim file.
var ErrShimFile = errors.New("shim file")

// loadShims reads c's files (relative to baseDir) and compiles them with the
// inline shims, files first.
func loadShims(c *Config, baseDir string) ([]compiledShim, error) {
	var (
		all   []compiledShim
		errs  []error
		names = map[string]string{}
	)
	for i, path := range c.Files {
		if path == "" {
			continue
		}
		full := path
		if !filepath.IsAbs(full) && baseDir != "" {
			full = filepath.Join(baseDir, full)
		}
		at := fmt.Sprintf("files[%d] (%s)", i, path)
		shims, err := readShimFile(full)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", at, err))
			continue
		}
		cs, shimErrs := compileShims(shims, at+": shims", names)
		all = append(all, cs...)
		errs = append(errs, shimErrs...)
	}
	cs, shimErrs := compileShims(c.Shims, "shims", names)
	all = append(all, cs...)
	errs = append(errs, shimErrs...)
	return all, errors.Join(errs...)
}

// readShimFile decodes a shim file strictly: an unknown key is an error.
func readShimFile(path string) ([]Shim, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrShimFile, err)
	}
	return decodeShimFile(data)
}

func decodeShimFile(data []byte) ([]Shim, error) {
	raw, err := yaml.Parser().Unmarshal(data)
	if err != nil {
		return nil, fmt.Errorf("%w: parse yaml: %w", ErrShimFile, err)
	}
	var f shimFile
	// mapstructure v2.4.0 panics on a map key that is not a string (YAML
	// `1: x`) when decoding into a struct; make every key a string first.
	normalized := stringKeys(raw)
	dec, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{
		TagName:     "koanf",
		Result:      &f,
		ErrorUnused: true,
	})
	if err != nil {
		return nil, err
	}
	if err := dec.Decode(normalized); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrShimFile, err)
	}
	return f.Shims, nil
}

// stringKeys returns v with every map key, at any depth, made a string.
func stringKeys(v any) any {
	switch v := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			out[k] = stringKeys(e)
		}
		return out
	case map[any]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			out[fmt.Sprint(k)] = stringKeys(e)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = stringKeys(e)
		}
		return out
	}
	return v
}
