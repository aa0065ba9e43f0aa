package main

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
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
}

// level holds the prefixes of one length, keyed by their masked address
// bytes (a cheaper map key than netip.Prefix).
type level struct {
	bits     int
	prefixes map[[16]byte]*entry
}

// entry is a prefix's effective labels: its own, plus those of the shorter
// prefixes containing it for keys it does not set.
type entry struct {
	labels map[string]string
	json   string // labels as a JSON object, keys sorted
}

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
			*levels = append(*levels, level{bits: p.Bits(), prefixes: map[[16]byte]*entry{}})
			i = len(*levels) - 1
		}
		(*levels)[i].prefixes[p.Addr().As16()] = e
	}
	for _, levels := range [][]level{t.v4, t.v6} {
		slices.SortFunc(levels, func(a, b level) int { return b.bits - a.bits })
	}
	return t
}

// Lookup returns the labels of a: those of its longest matching prefix,
// merged with the prefixes containing it. It returns nil if no prefix
// matches.
func (t *Table) Lookup(a netip.Addr) *entry {
	if !a.IsValid() {
		return nil
	}
	a = a.Unmap()
	levels := t.v6
	if a.Is4() {
		levels = t.v4
	}
	for _, l := range levels {
		p, _ := a.Prefix(l.bits)
		if e := l.prefixes[p.Addr().As16()]; e != nil {
			return e
		}
	}
	return nil
}

// Merge returns existing (a JSON object of labels, or "") with e's labels
// added for the keys existing does not have: labels the exporter observed
// win over the table's. ok is false when existing is not a JSON object; it
// is then left as it is.
func (e *entry) Merge(existing string) (out string, ok bool) {
	if strings.TrimSpace(existing) == "" || existing == "{}" {
		return e.json, true
	}
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
