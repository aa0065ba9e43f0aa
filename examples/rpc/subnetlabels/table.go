package main

import (
	"encoding/binary"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// Table maps address prefixes to labels, loaded from CSV rows
// "cidr,key,value".
//
// An address gets, for each key, the value of the longest prefix that
// contains it and sets that key. Because prefixes that contain one address
// are nested, that set depends only on the longest matching prefix, so it
// is merged once per prefix at load time.
type Table struct {
	// v4 and v6 hold each family's prefixes grouped by length, longest
	// first.
	v4, v6 []level
	// cache remembers the answer for recently seen addresses: a flow
	// source sees the same few addresses over and over, and one probe
	// here replaces a map lookup per prefix length.
	cache [cacheSize]atomic.Pointer[cached]
}

// cacheSize is the number of addresses Lookup remembers (direct-mapped;
// a power of two).
const cacheSize = 4096

// cached is an address and its Lookup result (nil: no prefix matches).
type cached struct {
	addr netip.Addr
	e    *entry
}

// level holds the prefixes of one length, keyed by their masked address
// as integers (cheaper map keys than netip.Prefix or bytes).
type level struct {
	bits int
	v4   map[uint32]*entry
	v6   map[[2]uint64]*entry
}

// entry is a prefix's effective labels: its own, plus those of the shorter
// prefixes containing it for keys it does not set.
type entry struct {
	labels map[string]string
	json   string // labels as a JSON object, keys sorted
	// merged caches Merge's results by existing labels (string → string):
	// records carry the labels of a few pods, over and over, and a merge
	// decodes and re-encodes JSON. It holds at most maxMerged results.
	merged  sync.Map
	nMerged atomic.Int64
}

// maxMerged bounds each entry's Merge cache, so memory stays bounded
// whatever labels arrive.
const maxMerged = 4096

// LoadTable reads CSV rows "cidr,key,value". A first row "cidr,key,value"
// is a header; blank lines and lines starting with '#' are skipped. A bare
// address is a host prefix (/32 or /128). Every problem is reported with
// its line.
func LoadTable(r io.Reader) (*Table, error) {
	cr := csv.NewReader(r)
	cr.Comment = '#'
	cr.FieldsPerRecord = -1
	cr.TrimLeadingSpace = true
	own := map[netip.Prefix]map[string]string{}
	var errs []error
	for row := 0; ; row++ {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		line, _ := cr.FieldPos(0)
		if row == 0 && len(rec) == 3 && strings.EqualFold(strings.TrimSpace(rec[0]), "cidr") {
			continue
		}
		if len(rec) != 3 {
			errs = append(errs, fmt.Errorf("line %d: %d fields, want cidr,key,value", line, len(rec)))
			continue
		}
		cidr, key, value := strings.TrimSpace(rec[0]), strings.TrimSpace(rec[1]), strings.TrimSpace(rec[2])
		p, err := parsePrefix(cidr)
		if err != nil {
			errs = append(errs, fmt.Errorf("line %d: cidr %q: %w", line, cidr, err))
			continue
		}
		if key == "" {
			errs = append(errs, fmt.Errorf("line %d: empty key", line))
			continue
		}
		if own[p] == nil {
			own[p] = map[string]string{}
		}
		if old, dup := own[p][key]; dup && old != value {
			errs = append(errs, fmt.Errorf("line %d: %s sets %q twice (%q and %q)", line, p, key, old, value))
			continue
		}
		own[p][key] = value
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return build(own), nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	if p.Addr().Is4In6() {
		// ::ffff:10.0.0.0/104 is 10.0.0.0/8.
		if p.Bits() < 96 {
			return netip.Prefix{}, errors.New("IPv4-mapped prefix shorter than /96")
		}
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p.Masked(), nil
}

func build(own map[netip.Prefix]map[string]string) *Table {
	t := &Table{}
	for p := range own {
		eff := map[string]string{}
		// Every shorter table prefix containing p contributes the keys
		// that no longer one sets.
		for bits := p.Bits(); bits >= 0; bits-- {
			q, _ := p.Addr().Prefix(bits)
			for k, v := range own[q] {
				if _, set := eff[k]; !set {
					eff[k] = v
				}
			}
		}
		js, _ := json.Marshal(eff)
		e := &entry{labels: eff, json: string(js)}
		levels := &t.v6
		if p.Addr().Is4() {
			levels = &t.v4
		}
		i := slices.IndexFunc(*levels, func(l level) bool { return l.bits == p.Bits() })
		if i < 0 {
			*levels = append(*levels, level{bits: p.Bits(), v4: map[uint32]*entry{}, v6: map[[2]uint64]*entry{}})
			i = len(*levels) - 1
		}
		if p.Addr().Is4() {
			(*levels)[i].v4[v4Key(p.Addr())] = e
		} else {
			(*levels)[i].v6[v6Key(p.Addr())] = e
		}
	}
	for _, levels := range [][]level{t.v4, t.v6} {
		slices.SortFunc(levels, func(a, b level) int { return b.bits - a.bits })
	}
	return t
}

// Lookup returns the labels of a: those of its longest matching prefix,
// merged with the prefixes containing it. It returns nil if no prefix
// matches.
//
// It is safe for concurrent use.
func (t *Table) Lookup(a netip.Addr) *entry {
	if !a.IsValid() {
		return nil
	}
	// The cache is keyed by the address as given: the same address has
	// the same answer, and normalising it is left to a miss.
	slot := &t.cache[cacheIndex(a)]
	if c := slot.Load(); c != nil && c.addr == a {
		return c.e
	}
	e := t.lookup(a.Unmap().WithZone(""))
	slot.Store(&cached{addr: a, e: e})
	return e
}

func (t *Table) lookup(a netip.Addr) *entry {
	if a.Is4() {
		k := v4Key(a)
		for _, l := range t.v4 {
			if e := l.v4[k&maskBits32(l.bits)]; e != nil {
				return e
			}
		}
		return nil
	}
	k := v6Key(a)
	for _, l := range t.v6 {
		if e := l.v6[[2]uint64{k[0] & maskBits64(l.bits), k[1] & maskBits64(l.bits-64)}]; e != nil {
			return e
		}
	}
	return nil
}

func v4Key(a netip.Addr) uint32 {
	b := a.As4()
	return binary.BigEndian.Uint32(b[:])
}

func v6Key(a netip.Addr) [2]uint64 {
	b := a.As16()
	return [2]uint64{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

// maskBits32 and maskBits64 keep the first bits bits of a word (all for
// 32/64 or more, none for 0 or less).
func maskBits32(bits int) uint32 {
	if bits <= 0 {
		return 0
	}
	return ^uint32(0) << (32 - min(bits, 32))
}

func maskBits64(bits int) uint64 {
	if bits <= 0 {
		return 0
	}
	return ^uint64(0) << (64 - min(bits, 64))
}

// cacheIndex hashes an address to a cache slot (Fibonacci hashing). Byte
// order does not matter here, so the words are read as they lie.
func cacheIndex(a netip.Addr) int {
	var h uint64
	if a.Is4() {
		b := a.As4()
		h = uint64(binary.LittleEndian.Uint32(b[:])) * 0x9e3779b97f4a7c15
	} else {
		// AppendBinary, not As16: As16's array is built by two 8-byte
		// stores and read back whole, which stalls on store forwarding.
		var buf [16]byte
		b, _ := a.WithZone("").AppendBinary(buf[:0])
		if len(b) == 16 {
			h = (binary.LittleEndian.Uint64(b[:8])*0x9e3779b97f4a7c15 ^ binary.LittleEndian.Uint64(b[8:])) * 0x9e3779b97f4a7c15
		}
	}
	return int(h >> (64 - 12)) // cacheSize = 1<<12
}

// Merge returns existing (a JSON object of labels, or "") with e's labels
// added for the keys existing does not have: labels the exporter observed
// win over the table's. ok is false when existing is not a JSON object; it
// is then left as it is.
func (e *entry) Merge(existing string) (out string, ok bool) {
	if existing == "" || existing == "{}" || strings.TrimSpace(existing) == "" {
		return e.json, true
	}
	if v, hit := e.merged.Load(existing); hit {
		r := v.(mergeResult)
		return r.out, r.ok
	}
	out, ok = e.merge(existing)
	if e.nMerged.Add(1) <= maxMerged {
		e.merged.Store(existing, mergeResult{out, ok})
	}
	return out, ok
}

type mergeResult struct {
	out string
	ok  bool
}

func (e *entry) merge(existing string) (out string, ok bool) {
	var cur map[string]json.RawMessage
	if err := json.Unmarshal([]byte(existing), &cur); err != nil || cur == nil {
		return existing, false
	}
	added := false
	for k, v := range e.labels {
		if _, set := cur[k]; set {
			continue
		}
		js, _ := json.Marshal(v)
		cur[k] = js
		added = true
	}
	if !added {
		return existing, true
	}
	js, _ := json.Marshal(cur)
	return string(js), true
}
