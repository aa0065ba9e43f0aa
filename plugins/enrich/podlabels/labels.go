package podlabels

import (
	"sort"
	"strings"
	"unicode/utf8"
)

// labelEncoder turns a Pod's labels into the JSON object written to
// sourcePodLabels/destinationPodLabels. It is immutable after newLabelEncoder.
type labelEncoder struct {
	allow, deny []string
	maxBytes    int
}

func newLabelEncoder(l Labels) *labelEncoder {
	return &labelEncoder{
		allow:    dedupe(l.Allow),
		deny:     dedupe(l.Deny),
		maxBytes: int(l.MaxBytes),
	}
}

func dedupe(in []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// keep reports whether label key k passes the allow and deny lists.
func (e *labelEncoder) keep(k string) bool {
	for _, p := range e.deny {
		if match(p, k) {
			return false
		}
	}
	if len(e.allow) == 0 {
		return true
	}
	for _, p := range e.allow {
		if match(p, k) {
			return true
		}
	}
	return false
}

// encode returns labels as a compact JSON object with sorted keys, as
// encoding/json would print a map[string]string, after filtering and the
// size cap; "" when no label is kept. dropped counts labels left out by the
// cap (not by the lists).
func (e *labelEncoder) encode(labels map[string]string) (s string, dropped int) {
	if len(labels) == 0 {
		return "", 0
	}
	keys := make([]string, 0, len(labels))
	for k := range labels {
		if e.keep(k) {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return "", 0
	}
	sort.Strings(keys)
	buf := make([]byte, 0, 64)
	buf = append(buf, '{')
	var item []byte
	for _, k := range keys {
		item = item[:0]
		if len(buf) > 1 {
			item = append(item, ',')
		}
		item = appendJSONString(item, k)
		item = append(item, ':')
		item = appendJSONString(item, labels[k])
		// +1 for the closing brace.
		if e.maxBytes > 0 && len(buf)+len(item)+1 > e.maxBytes {
			dropped++
			continue
		}
		buf = append(buf, item...)
	}
	if len(buf) == 1 {
		return "", dropped
	}
	buf = append(buf, '}')
	return string(buf), dropped
}

// appendJSONString appends s as a JSON string, escaping as encoding/json
// does (including <, > and & for HTML safety) so output matches Antrea's.
func appendJSONString(buf []byte, s string) []byte {
	const hex = "0123456789abcdef"
	buf = append(buf, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				buf = append(buf, '\\', c)
			case c == '\n':
				buf = append(buf, '\\', 'n')
			case c == '\r':
				buf = append(buf, '\\', 'r')
			case c == '\t':
				buf = append(buf, '\\', 't')
			case c == '\b':
				buf = append(buf, '\\', 'b')
			case c == '\f':
				buf = append(buf, '\\', 'f')
			case c < 0x20 || c == '<' || c == '>' || c == '&':
				buf = append(buf, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				buf = append(buf, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			buf = append(buf, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			buf = append(buf, `\u202`...)
			buf = append(buf, hex[r&0xf])
		default:
			buf = append(buf, s[i:i+size]...)
		}
		i += size
	}
	return append(buf, '"')
}

// match reports whether key matches pattern p, where '*' matches any run of
// characters (including '/', which label prefixes contain).
func match(p, key string) bool {
	if !strings.Contains(p, "*") {
		return p == key
	}
	parts := strings.Split(p, "*")
	if !strings.HasPrefix(key, parts[0]) {
		return false
	}
	key = key[len(parts[0]):]
	last := parts[len(parts)-1]
	for _, part := range parts[1 : len(parts)-1] {
		i := strings.Index(key, part)
		if i < 0 {
			return false
		}
		key = key[i+len(part):]
	}
	return strings.HasSuffix(key, last)
}
