package abi

// A packed batch is the RPC transport's batch: only the fields the plugin's
// mask names, each in its natural width, with IPv4 addresses in 4 bytes and
// strings and IPv6 addresses in a shared tail. Bytes cost about 2 ns of CPU
// each on their way through gRPC, TLS and the socket (BenchmarkPayload in
// core/rpchost), so a record of four fields travels in 18-50 bytes instead
// of an ABI block's 360.
//
//	 0 u32 MagicPacked ("WEIQ")
//	 4 u16 ABI version
//	 6 u16 header size (PackedHeaderSize; a reader skips what it does not know)
//	 8 u32 records
//	12 u32 bytes per record (checked against the mask's layout)
//	16 u32 mask flags (FlagExtra, FlagExporter; others are not sent)
//	20 u32 reserved, 0
//	24 u64 mask fields, word 0
//	32 u64 mask fields, word 1
//	40 u32 tail bytes
//	44 u32 data bytes
//	then the records, the tail, the data section.
//
// A record is, in order:
//   - presence bits, one per masked field in field order, then one "in the
//     tail" bit per masked address field, each group rounded up to whole
//     bytes (bit k of the group is bit k%8 of its byte k/8);
//   - the exporter, if flagged: its address as 16 bytes and a family byte
//     (0, 4, 6), a zero byte, u16 port, u32 observation domain;
//   - the Extra reference, if flagged: AppendExtra's u32 offset and u32
//     count into the data section;
//   - each masked field in field order: an address in 4 bytes, the IPv4
//     address itself or, with its tail bit, the u32 end of its bytes in the
//     tail (16 bytes; 0 for a present but invalid address); a string as the
//     u32 end of its bytes in the tail; a number or time in its ABI width.
//
// Tail entries follow each other in record and field order: each starts
// where the previous ended, the first at 0. Every string has an entry,
// empty when the string is; an absent address is 4 zero bytes, off the
// tail.
const MagicPacked uint32 = 'W' | 'E'<<8 | 'I'<<16 | 'Q'<<24

// PackedHeaderSize is the size of a packed batch's header.
const PackedHeaderSize = 48

const (
	pVersion    = 4
	pHeaderSize = 6
	pCount      = 8
	pRecordSize = 12
	pFlags      = 16
	pReserved   = 20
	pFields     = 24
	pTailLen    = 40
	pDataLen    = 44

	extraRefSize = 8
)
