package abi

import (
	"errors"
	"fmt"
	"math/bits"
	"unsafe"

	"github.com/weir-flow/weir/core/flow"
)

// Version is the ABI version this package implements. A host accepts a
// plugin only if its version is in [MinVersion, Version].
const Version = 1

// MinVersion is the oldest ABI version this package accepts.
const MinVersion = 1

// Magic numbers opening each buffer kind, as little-endian uint32s of the
// ASCII strings "WEIR" (batch), "WEIA" (answer) and "WEIM" (manifest).
const (
	MagicBatch    uint32 = 'W' | 'E'<<8 | 'I'<<16 | 'R'<<24
	MagicAnswer   uint32 = 'W' | 'E'<<8 | 'I'<<16 | 'A'<<24
	MagicManifest uint32 = 'W' | 'E'<<8 | 'I'<<16 | 'M'<<24
)

// Batch header layout: byte offsets from the start of a batch buffer.
const (
	hMagic       = 0  // u32 MagicBatch
	hVersion     = 4  // u16 ABI version
	hHeaderSize  = 6  // u16 header size (BatchHeaderSize)
	hCount       = 8  // u32 record count
	hRecordSize  = 12 // u32 bytes per record block
	hRecordsOff  = 16 // u32 offset of the first record block
	hDataOff     = 20 // u32 offset of the data section
	hDataLen     = 24 // u32 length of the data section
	hFlags       = 28 // u32 Mask flags (FlagExtra, FlagExporter)
	hFields      = 32 // [2]u64 Mask fields: typed fields whose values are encoded
	hFieldsWord1 = 40

	// BatchHeaderSize is the size of the batch header in bytes.
	BatchHeaderSize = 48
)

// header is a batch header, field by field (docs/abi.md, "Batch
// header").
type header struct {
	Magic      uint32 // MagicBatch
	Version    uint16 // ABI version
	HeaderSize uint16 // BatchHeaderSize or more
	Count      uint32 // records
	RecordSize uint32 // bytes per record block; 0 for columns
	RecordsOff uint32 // offset of the record blocks or columns
	DataOff    uint32 // offset of the data section
	DataLen    uint32 // length of the data section
	Flags      uint32 // mask flags
	Fields     flow.FieldSet
}

// readHeader reads the header at the start of buf, which must be at least
// BatchHeaderSize bytes long; it does not check it (see [ParseBatch]). On
// a little-endian machine it is one copy: guests read it on every batch.
func readHeader(buf []byte) header {
	_ = buf[BatchHeaderSize-1]
	if littleEndian {
		return *(*header)(unsafe.Pointer(unsafe.SliceData(buf)))
	}
	return header{
		Magic: le.Uint32(buf[hMagic:]), Version: le.Uint16(buf[hVersion:]), HeaderSize: le.Uint16(buf[hHeaderSize:]),
		Count: le.Uint32(buf[hCount:]), RecordSize: le.Uint32(buf[hRecordSize:]), RecordsOff: le.Uint32(buf[hRecordsOff:]),
		DataOff: le.Uint32(buf[hDataOff:]), DataLen: le.Uint32(buf[hDataLen:]), Flags: le.Uint32(buf[hFlags:]),
		Fields: flow.FieldSet{le.Uint64(buf[hFields:]), le.Uint64(buf[hFieldsWord1:])},
	}
}

// Record block layout: byte offsets from the start of a record block. The
// fixed prelude is followed by the typed fields in [flow.Fields] order.
const (
	rPresent        = 0  // [2]u64 presence bitmap (flow.FieldSet), masked
	rExporter       = 16 // [16]byte exporter address (As16)
	rExporterFamily = 32 // u8 0 (none), 4 or 6
	rExporterPort   = 34 // u16 exporter port
	rDomain         = 36 // u32 observation domain ID
	rExtraOff       = 40 // u32 offset of the Extra entries in the data section
	rExtraCount     = 44 // u32 number of Extra entries
	rFields         = 48 // first typed field

	addrSize = 17 // [16]byte address (As16) + u8 family (0, 4 or 6)
	strSize  = 8  // u32 offset in the data section + u32 length
)

// Typed field offsets in a record block. Each follows the previous one;
// a test checks the chain against flow.Fields.
const (
	oSourceAddress                  = rFields
	oDestinationAddress             = oSourceAddress + addrSize
	oSourceTransportPort            = oDestinationAddress + addrSize
	oDestinationTransportPort       = oSourceTransportPort + 2
	oProtocolIdentifier             = oDestinationTransportPort + 2
	oIPClassOfService               = oProtocolIdentifier + 1
	oTCPControlBits                 = oIPClassOfService + 1
	oFlowEndReason                  = oTCPControlBits + 2
	oIngressInterface               = oFlowEndReason + 1
	oEgressInterface                = oIngressInterface + 4
	oFlowStart                      = oEgressInterface + 4
	oFlowEnd                        = oFlowStart + 8
	oOctetDeltaCount                = oFlowEnd + 8
	oPacketDeltaCount               = oOctetDeltaCount + 8
	oOctetTotalCount                = oPacketDeltaCount + 8
	oPacketTotalCount               = oOctetTotalCount + 8
	oReverseOctetDeltaCount         = oPacketTotalCount + 8
	oReversePacketDeltaCount        = oReverseOctetDeltaCount + 8
	oReverseOctetTotalCount         = oReversePacketDeltaCount + 8
	oReversePacketTotalCount        = oReverseOctetTotalCount + 8
	oOriginalExporterAddress        = oReversePacketTotalCount + 8
	oOriginalObservationDomainID    = oOriginalExporterAddress + addrSize
	oSourcePodNamespace             = oOriginalObservationDomainID + 4
	oSourcePodName                  = oSourcePodNamespace + strSize
	oDestinationPodNamespace        = oSourcePodName + strSize
	oDestinationPodName             = oDestinationPodNamespace + strSize
	oSourceNodeName                 = oDestinationPodName + strSize
	oDestinationNodeName            = oSourceNodeName + strSize
	oDestinationClusterIP           = oDestinationNodeName + strSize
	oDestinationServicePort         = oDestinationClusterIP + addrSize
	oDestinationServicePortName     = oDestinationServicePort + 2
	oIngressNetworkPolicyName       = oDestinationServicePortName + strSize
	oIngressNetworkPolicyNamespace  = oIngressNetworkPolicyName + strSize
	oIngressNetworkPolicyRuleName   = oIngressNetworkPolicyNamespace + strSize
	oIngressNetworkPolicyRuleAction = oIngressNetworkPolicyRuleName + strSize
	oIngressNetworkPolicyType       = oIngressNetworkPolicyRuleAction + 1
	oEgressNetworkPolicyName        = oIngressNetworkPolicyType + 1
	oEgressNetworkPolicyNamespace   = oEgressNetworkPolicyName + strSize
	oEgressNetworkPolicyRuleName    = oEgressNetworkPolicyNamespace + strSize
	oEgressNetworkPolicyRuleAction  = oEgressNetworkPolicyRuleName + strSize
	oEgressNetworkPolicyType        = oEgressNetworkPolicyRuleAction + 1
	oTCPState                       = oEgressNetworkPolicyType + 1
	oFlowType                       = oTCPState + strSize
	oEgressNodeName                 = oFlowType + 1
	oSourcePodLabels                = oEgressNodeName + strSize
	oDestinationPodLabels           = oSourcePodLabels + strSize

	// unrolledSize is the size of the record block that encodeFull and
	// decodeFull write out field by field, for speed: the block of the
	// fields above. When flow.Fields grows past them, RecordSize grows
	// too and the unrolled code steps aside for the generic one (slower
	// for the All mask, but complete).
	unrolledSize = oDestinationPodLabels + strSize
)

// RecordSize is the size of a record block in bytes: the prelude, then
// every typed field of flow.Fields in order (docs/abi.md). It is derived
// from flow.Fields at init.
var RecordSize int

// unrolled reports whether the field-by-field encode and decode of a whole
// record (encodeFull, decodeFull) cover every typed field.
var unrolled bool

// Extra entry layout in the data section (ExtraEntrySize bytes each).
const (
	eEnterprise = 0  // u32 enterprise number
	eElement    = 4  // u16 element ID
	eFlags      = 6  // u8 bit 0: variable length
	eValueOff   = 8  // u32 value offset in the data section
	eValueLen   = 12 // u32 value length

	// ExtraEntrySize is the size of one Extra entry in bytes.
	ExtraEntrySize = 16
)

// fieldOffset and fieldSize give each typed field's place in a record
// block, derived from flow.Fields at init; the constants above are the
// first unrolledSize bytes of it (TestLayoutMatchesFields).
var (
	fieldOffset [flow.NumFields]uint32
	fieldSize   [flow.NumFields]uint32
)

func init() {
	off := uint32(rFields)
	for i := range flow.Fields {
		f := &flow.Fields[i]
		var size uint32
		switch f.Kind {
		case flow.KindAddress:
			size = addrSize
		case flow.KindString:
			size = strSize
		case flow.KindTime:
			size = 8
		default:
			size = uint32(f.Width)
		}
		fieldOffset[i], fieldSize[i] = off, size
		off += size
	}
	RecordSize = int(off)
	unrolled = RecordSize == unrolledSize
}

// Mask flags: parts of a record besides the typed fields.
const (
	// FlagExtra: the Extra IEs are encoded.
	FlagExtra uint32 = 1 << 0
	// FlagExporter: Exporter and ObservationDomainID are encoded.
	FlagExporter uint32 = 1 << 1
	// FlagColumns is a layout flag, not a part of the record: the records
	// are stored by column instead of in record blocks, and only the parts
	// the mask selects are stored (see [ColumnsSize] and docs/abi.md,
	// "Columns"). A plugin asks for it in its manifest; a host that does
	// not know the flag sends record blocks, so a reader handles both.
	FlagColumns uint32 = 1 << 2
	// FlagNoPresence, with FlagColumns, leaves out the presence column:
	// every field of the mask reads as present, an absent one as zero. A
	// batch filter that treats absent as zero asks for it and spares the
	// host 16 bytes per record.
	FlagNoPresence uint32 = 1 << 3

	flagsKnown = FlagExtra | FlagExporter | FlagColumns | FlagNoPresence
)

// Mask selects what of each record a batch buffer carries: the plugin
// declares what it reads, and the host encodes only that. Fields outside
// the mask decode as absent (zero).
type Mask struct {
	// Fields are the typed fields whose values and presence are encoded.
	Fields flow.FieldSet
	// Flags are FlagExtra and FlagExporter, and the layout flags
	// FlagColumns and FlagNoPresence.
	Flags uint32
}

// All is the mask that encodes every part of a record, in record blocks.
var All = func() Mask {
	var m Mask
	for i := 0; i < flow.NumFields; i++ {
		m.Fields.Add(flow.FieldID(i))
	}
	m.Flags = FlagExtra | FlagExporter
	return m
}()

// MaskOf returns a mask of the given typed fields and flags.
func MaskOf(flags uint32, fields ...flow.FieldID) Mask {
	m := Mask{Flags: flags & flagsKnown}
	for _, f := range fields {
		if int(f) < flow.NumFields {
			m.Fields.Add(f)
		}
	}
	return m
}

// IsAll reports whether m encodes every part of a record in record
// blocks.
func (m Mask) IsAll() bool { return m == All }

// Columns reports whether m asks for the columnar layout.
func (m Mask) Columns() bool { return m.Flags&FlagColumns != 0 }

// presence reports whether a columnar buffer of m has a presence column.
func (m Mask) presence() bool { return m.Flags&FlagNoPresence == 0 }

// Column widths of the record prelude in the columnar layout.
const (
	colPresence = 16                    // presence bitmap, two u64
	colExporter = rExtraOff - rExporter // address, family, reserved, port, domain: 24 bytes
	colExtra    = 8                     // Extra offset and count
)

// align8 rounds n up to a multiple of 8.
func align8(n int) int { return (n + 7) &^ 7 }

// ColumnsSize returns the size in bytes of the columns of n records with
// mask m: the presence column (16 bytes a record) unless m has
// FlagNoPresence, the exporter column
// (24) if m has FlagExporter, the Extra column (8) if m has FlagExtra,
// then a column per typed field of m at its canonical size, in field
// order; each column starts at a multiple of 8 bytes.
func ColumnsSize(m Mask, n int) int {
	m = m.normalize()
	size := 0
	if m.presence() {
		size = align8(n * colPresence)
	}
	if m.Flags&FlagExporter != 0 {
		size += align8(n * colExporter)
	}
	if m.Flags&FlagExtra != 0 {
		size += align8(n * colExtra)
	}
	for w := range m.Fields {
		for word := m.Fields[w]; word != 0; word &= word - 1 {
			size += align8(n * int(fieldSize[w*64+bits.TrailingZeros64(word)]))
		}
	}
	return size
}

// normalize drops bits for fields and flags this build does not know.
func (m Mask) normalize() Mask {
	m.Fields[0] &= All.Fields[0]
	m.Fields[1] &= All.Fields[1]
	m.Flags &= flagsKnown
	return m
}

// ErrMalformed is wrapped by every error about a buffer that does not
// follow the layout: bad magic, offsets or lengths out of range, unknown
// update operations.
var ErrMalformed = errors.New("malformed abi buffer")

// VersionError reports a buffer or plugin whose ABI version this package
// does not support.
type VersionError struct {
	Got uint16 // version found
}

func (e *VersionError) Error() string {
	if MinVersion == Version {
		return fmt.Sprintf("abi version %d is not supported: this build of weir supports abi version %d", e.Got, Version)
	}
	return fmt.Sprintf("abi version %d is not supported: this build of weir supports abi versions %d to %d", e.Got, MinVersion, Version)
}

// CheckVersion returns a *VersionError if v is not supported.
func CheckVersion(v uint16) error {
	if v < MinVersion || v > Version {
		return &VersionError{Got: v}
	}
	return nil
}

func malformed(format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), ErrMalformed)
}
