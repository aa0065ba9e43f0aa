package ipfix

import (
	"encoding/hex"
	"math"
	"net"
	"sync"
	"time"

	"github.com/vmware/go-ipfix/pkg/entities"
	"github.com/vmware/go-ipfix/pkg/registry"

	"github.com/weir-flow/weir/core/flow"
)

// IEInfo describes an IE from the IANA and Antrea registries (loaded from
// github.com/vmware/go-ipfix).
type IEInfo struct {
	Name   string
	Type   DataType
	Length uint16 // registry length; 65535 for variable
}

// DataType is an abstract data type of RFC 7012 §3.1 (and RFC 6313 for the
// list types). Its values mirror go-ipfix's entities.IEDataType.
type DataType uint8

// Abstract data types, RFC 7012 §3.1.
const (
	OctetArray DataType = iota
	Unsigned8
	Unsigned16
	Unsigned32
	Unsigned64
	Signed8
	Signed16
	Signed32
	Signed64
	Float32
	Float64
	Boolean
	MACAddress
	String
	DateTimeSeconds
	DateTimeMilliseconds
	DateTimeMicroseconds
	DateTimeNanoseconds
	IPv4Address
	IPv6Address
	BasicList
	SubTemplateList
	SubTemplateMultiList
	numDataTypes
)

var dataTypeNames = [numDataTypes]string{
	"octetArray", "unsigned8", "unsigned16", "unsigned32", "unsigned64",
	"signed8", "signed16", "signed32", "signed64", "float32", "float64",
	"boolean", "macAddress", "string", "dateTimeSeconds",
	"dateTimeMilliseconds", "dateTimeMicroseconds", "dateTimeNanoseconds",
	"ipv4Address", "ipv6Address", "basicList", "subTemplateList",
	"subTemplateMultiList",
}

// String returns the RFC 7012 name of t, e.g. "unsigned64".
func (t DataType) String() string {
	if t < numDataTypes {
		return dataTypeNames[t]
	}
	return "invalid"
}

// registryScanLimit bounds the element IDs copied from go-ipfix's registry;
// the highest IANA element is 529 and the highest Antrea one 172 in v0.17.0.
const registryScanLimit = 4096

var (
	registryOnce sync.Once
	ieByKey      map[flow.IEKey]IEInfo
	ieByName     map[string]flow.IEKey
)

// loadRegistry copies go-ipfix's global registry into immutable maps once,
// so lookups are lock-free and unaffected by later LoadRegistry calls.
func loadRegistry() {
	registryOnce.Do(func() {
		registry.LoadRegistry()
		ieByKey = make(map[flow.IEKey]IEInfo, 1500)
		ieByName = make(map[string]flow.IEKey, 1500)
		for _, pen := range []uint32{flow.IANA, flow.ReversePEN, flow.AntreaPEN} {
			for id := 0; id < registryScanLimit; id++ {
				ie, err := registry.GetInfoElementFromID(uint16(id), pen)
				if err != nil || ie == nil {
					continue
				}
				k := flow.IEKey{Enterprise: pen, Element: uint16(id)}
				t := DataType(ie.DataType)
				if ie.DataType == entities.InvalidDataType || t >= numDataTypes {
					t = OctetArray
				}
				ieByKey[k] = IEInfo{Name: ie.Name, Type: t, Length: ie.Len}
				if _, dup := ieByName[ie.Name]; !dup {
					ieByName[ie.Name] = k
				}
			}
		}
		for _, l := range localIEs {
			ieByKey[l.key] = l.info
			ieByName[l.info.Name] = l.key
		}
	})
}

// LookupIE returns the registry entry of IE k (IANA, reverse PEN 29305,
// Antrea PEN 56506 or Weir-local, see local.go).
func LookupIE(k flow.IEKey) (IEInfo, bool) {
	loadRegistry()
	info, ok := ieByKey[k]
	return info, ok
}

// LookupIEByName returns the IE named name (IANA, reverse or Antrea), e.g.
// "sourceIPv4Address", "reverseOctetDeltaCount" or "sourcePodName".
func LookupIEByName(name string) (flow.IEKey, IEInfo, bool) {
	loadRegistry()
	k, ok := ieByName[name]
	if !ok {
		return flow.IEKey{}, IEInfo{}, false
	}
	return k, ieByKey[k], true
}

// FormatValue returns a JSON-friendly rendering of an IE value v of type t,
// for exporters that print Extra IEs by name: unsigned and signed integers
// (any reduced size, RFC 7011 §6.2) as uint64/int64, floats as float64
// (non-finite ones as strings), booleans as bool, strings as string,
// addresses and MAC addresses as their text form, times as RFC 3339 strings
// in UTC, and everything else (octet arrays, lists, values whose length does
// not fit the type) as lowercase hex.
func FormatValue(t DataType, v []byte) any {
	switch t {
	case Unsigned8, Unsigned16, Unsigned32, Unsigned64:
		if u, ok := DecodeUnsigned(v); ok {
			return u
		}
	case Signed8, Signed16, Signed32, Signed64:
		if i, ok := DecodeSigned(v); ok {
			return i
		}
	case Float32:
		if len(v) == 4 {
			f, _ := DecodeFloat(v)
			return jsonFloat(f)
		}
	case Float64:
		if f, ok := DecodeFloat(v); ok {
			return jsonFloat(f)
		}
	case Boolean:
		if b, ok := DecodeBoolean(v); ok {
			return b
		}
		if len(v) == 1 {
			return uint64(v[0])
		}
	case MACAddress:
		if len(v) == 6 {
			return net.HardwareAddr(v).String()
		}
	case String:
		if s, ok := DecodeString(v); ok {
			return s
		}
	case DateTimeSeconds, DateTimeMilliseconds, DateTimeMicroseconds, DateTimeNanoseconds:
		if ns, ok := DecodeTime(t, v); ok {
			return formatTime(ns)
		}
	case IPv4Address:
		if len(v) == 4 {
			a, _ := DecodeAddress(v)
			return a.String()
		}
	case IPv6Address:
		if len(v) == 16 {
			a, _ := DecodeAddress(v)
			return a.String()
		}
	}
	return hex.EncodeToString(v)
}

func jsonFloat(f float64) any {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return formatFloatSpecial(f)
	}
	return f
}

func formatFloatSpecial(f float64) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case f > 0:
		return "+Inf"
	}
	return "-Inf"
}

func formatTime(ns int64) string {
	return time.Unix(0, ns).UTC().Format(time.RFC3339Nano)
}
