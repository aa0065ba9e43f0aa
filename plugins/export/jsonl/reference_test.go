package jsonl

import (
	"encoding/hex"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/ipfix"
)

const refTimeLayout = "2006-01-02T15:04:05.000Z07:00"

// refAppendRecord is the encoder before issue 15 (strconv, time.Format,
// FormatValue), kept to check the fast one byte for byte. It appends r as one JSON object (no newline) to dst: the
// exporter's address and observation domain, the present typed fields, and,
// if extra is set, the verbatim IEs.
func refAppendRecord(dst []byte, r *flow.Record, extra bool) []byte {
	dst = append(dst, '{')
	first := true
	key := func(name string) {
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = append(dst, '"')
		dst = append(dst, name...)
		dst = append(dst, '"', ':')
	}
	if a := r.Exporter.Addr(); a.IsValid() {
		a = a.Unmap()
		if a.Is4() {
			key("exporterIPv4Address")
		} else {
			key("exporterIPv6Address")
		}
		dst = strconv.AppendQuote(dst, a.String())
		key("exporterTransportPort")
		dst = strconv.AppendUint(dst, uint64(r.Exporter.Port()), 10)
	}
	key("observationDomainId")
	dst = strconv.AppendUint(dst, uint64(r.ObservationDomainID), 10)
	present := r.PresentSet()
	for id, ok := present.Next(0); ok; id, ok = present.Next(id + 1) {
		f := &flow.Fields[id]
		switch f.Kind {
		case flow.KindAddress:
			a := r.Addr(f.ID)
			if !a.IsValid() {
				continue
			}
			if a.Unmap().Is4() {
				key(f.Name)
				a = a.Unmap()
			} else {
				key(f.Name6)
			}
			dst = append(dst, '"')
			dst = a.AppendTo(dst)
			dst = append(dst, '"')
		case flow.KindString:
			key(f.Name)
			dst = refAppendString(dst, r.String(f.ID))
		case flow.KindTime:
			key(f.Name)
			dst = append(dst, '"')
			dst = time.Unix(0, int64(r.Uint(f.ID))).UTC().AppendFormat(dst, refTimeLayout)
			dst = append(dst, '"')
		default:
			key(f.Name)
			dst = strconv.AppendUint(dst, r.Uint(f.ID), 10)
		}
	}
	if extra {
		for i := range r.Extra {
			x := &r.Extra[i]
			info, ok := ipfix.LookupIE(x.Key())
			if !ok {
				if !first {
					dst = append(dst, ',')
				}
				first = false
				dst = fmt.Appendf(dst, `"ie%d_%d":"`, x.Enterprise, x.Element)
				dst = hex.AppendEncode(dst, x.Value)
				dst = append(dst, '"')
				continue
			}
			key(info.Name)
			dst = refAppendValue(dst, ipfix.FormatValue(info.Type, x.Value))
		}
	}
	return append(dst, '}')
}

func refAppendValue(dst []byte, v any) []byte {
	switch v := v.(type) {
	case string:
		return refAppendString(dst, v)
	case uint64:
		return strconv.AppendUint(dst, v, 10)
	case int64:
		return strconv.AppendInt(dst, v, 10)
	case float64:
		return strconv.AppendFloat(dst, v, 'g', -1, 64)
	case bool:
		return strconv.AppendBool(dst, v)
	case nil:
		return append(dst, "null"...)
	default:
		return refAppendString(dst, fmt.Sprint(v))
	}
}

// appendString appends s as a JSON string.
func refAppendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			dst = append(dst, c)
			i++
			continue
		}
		if c < utf8.RuneSelf {
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\t':
				dst = append(dst, '\\', 't')
			case '\r':
				dst = append(dst, '\\', 'r')
			default:
				dst = fmt.Appendf(dst, `\u%04x`, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, `\ufffd`...)
		} else {
			dst = append(dst, s[i:i+size]...)
		}
		i += size
	}
	return append(dst, '"')
}
