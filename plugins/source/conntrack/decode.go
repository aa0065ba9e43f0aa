package conntrack

import (
	"encoding/binary"
	"errors"
	"fmt"

	ct "github.com/ti-mo/conntrack"
	"golang.org/x/sys/unix"
)

// ctFlow is what the store reads of a conntrack entry. The dump path
// decodes ctnetlink messages straight into one reused ctFlow, without
// allocating; events go through ti-mo/conntrack and [fromTiMo].
type ctFlow struct {
	key                                key
	tupleOK                            bool // both addresses and the protocol were present
	hasTCP                             bool
	tcpState                           uint8
	mark                               uint32
	packets, octets, rpackets, roctets uint64
	start, stop                        int64 // ns since epoch; 0 = no timestamp
}

// fromTiMo converts a decoded event flow.
func fromTiMo(f *ct.Flow, out *ctFlow) {
	*out = ctFlow{}
	out.tupleOK = setKey(&out.key, f)
	out.mark = f.Mark
	out.packets, out.octets = f.CountersOrig.Packets, f.CountersOrig.Bytes
	out.rpackets, out.roctets = f.CountersReply.Packets, f.CountersReply.Bytes
	if f.ProtoInfo.TCP != nil {
		out.hasTCP, out.tcpState = true, f.ProtoInfo.TCP.State
	}
	if !f.Timestamp.Start.IsZero() {
		out.start = f.Timestamp.Start.UnixNano()
	}
	if !f.Timestamp.Stop.IsZero() {
		out.stop = f.Timestamp.Stop.UnixNano()
	}
}

// ctnetlink attributes read by decodeFlow (linux/netfilter/nfnetlink_conntrack.h).
const (
	ctaProtoinfo     = 4
	ctaCountersOrig  = 9
	ctaCountersReply = 10
	ctaTimestamp     = 20

	ctaTupleIP    = 1
	ctaTupleZone  = 3
	ctaIPv4Src    = 1
	ctaIPv4Dst    = 2
	ctaIPv6Src    = 3
	ctaIPv6Dst    = 4
	ctaProtoSrc   = 2
	ctaProtoDst   = 3
	ctaICMPID     = 4
	ctaICMPType   = 5
	ctaICMPCode   = 6
	ctaICMPv6ID   = 7
	ctaICMPv6Type = 8
	ctaICMPv6Code = 9

	ctaProtoinfoTCP      = 1
	ctaProtoinfoTCPState = 1

	ctaCountersPackets   = 1
	ctaCountersBytes     = 2
	ctaCounters32Packets = 3
	ctaCounters32Bytes   = 4

	ctaTimestampStart = 1
	ctaTimestampStop  = 2

	nlaTypeMask = 0x3fff // without NLA_F_NESTED and NLA_F_NET_BYTEORDER
)

var errMalformed = errors.New("malformed ctnetlink message")

// nextAttr splits the first netlink attribute off b.
func nextAttr(b []byte) (typ uint16, v, rest []byte, ok bool) {
	if len(b) < 4 {
		return 0, nil, nil, false
	}
	l := int(binary.NativeEndian.Uint16(b))
	if l < 4 || l > len(b) {
		return 0, nil, nil, false
	}
	typ, v = binary.NativeEndian.Uint16(b[2:])&nlaTypeMask, b[4:l]
	if a := (l + 3) &^ 3; a < len(b) {
		rest = b[a:]
	}
	return typ, v, rest, true
}

// decodeFlow decodes the attributes of one ctnetlink entry (after the
// nfgenmsg header) into f. It reports false for malformed input; unknown
// attributes are skipped.
func decodeFlow(b []byte, f *ctFlow) bool {
	*f = ctFlow{}
	var haveSrc, haveDst, haveProto bool
	for len(b) > 0 {
		typ, v, rest, ok := nextAttr(b)
		if !ok {
			return false
		}
		b = rest
		switch typ {
		case ctaTupleOrig:
			for len(v) > 0 {
				t, tv, r, ok := nextAttr(v)
				if !ok {
					return false
				}
				v = r
				switch t {
				case ctaTupleIP:
					for len(tv) > 0 {
						a, av, r, ok := nextAttr(tv)
						if !ok {
							return false
						}
						tv = r
						switch {
						case a == ctaIPv4Src && len(av) == 4:
							f.key.family, haveSrc = 4, true
							copy(f.key.src[:], av)
						case a == ctaIPv4Dst && len(av) == 4:
							f.key.family, haveDst = 4, true
							copy(f.key.dst[:], av)
						case a == ctaIPv6Src && len(av) == 16:
							f.key.family, haveSrc = 6, true
							copy(f.key.src[:], av)
						case a == ctaIPv6Dst && len(av) == 16:
							f.key.family, haveDst = 6, true
							copy(f.key.dst[:], av)
						}
					}
				case ctaTupleProto:
					var icmpType, icmpCode uint8
					icmp := false
					for len(tv) > 0 {
						a, av, r, ok := nextAttr(tv)
						if !ok {
							return false
						}
						tv = r
						switch {
						case a == ctaProtoNum && len(av) == 1:
							f.key.proto, haveProto = av[0], true
						case a == ctaProtoSrc && len(av) == 2:
							f.key.sport = binary.BigEndian.Uint16(av)
						case a == ctaProtoDst && len(av) == 2:
							f.key.dport = binary.BigEndian.Uint16(av)
						case (a == ctaICMPID || a == ctaICMPv6ID) && len(av) == 2:
							f.key.sport, icmp = binary.BigEndian.Uint16(av), true
						case (a == ctaICMPType || a == ctaICMPv6Type) && len(av) == 1:
							icmpType, icmp = av[0], true
						case (a == ctaICMPCode || a == ctaICMPv6Code) && len(av) == 1:
							icmpCode, icmp = av[0], true
						}
					}
					if icmp {
						f.key.dport = uint16(icmpType)<<8 | uint16(icmpCode)
					}
				}
			}
		case ctaZone:
			if len(v) == 2 {
				f.key.zone = binary.BigEndian.Uint16(v)
			}
		case ctaMark:
			if len(v) == 4 {
				f.mark = binary.BigEndian.Uint32(v)
			}
		case ctaCountersOrig, ctaCountersReply:
			var p, o uint64
			for len(v) > 0 {
				a, av, r, ok := nextAttr(v)
				if !ok {
					return false
				}
				v = r
				switch {
				case a == ctaCountersPackets && len(av) == 8:
					p = binary.BigEndian.Uint64(av)
				case a == ctaCountersBytes && len(av) == 8:
					o = binary.BigEndian.Uint64(av)
				case a == ctaCounters32Packets && len(av) == 4:
					p = uint64(binary.BigEndian.Uint32(av))
				case a == ctaCounters32Bytes && len(av) == 4:
					o = uint64(binary.BigEndian.Uint32(av))
				}
			}
			if typ == ctaCountersOrig {
				f.packets, f.octets = p, o
			} else {
				f.rpackets, f.roctets = p, o
			}
		case ctaProtoinfo:
			if a, av, _, ok := nextAttr(v); ok && a == ctaProtoinfoTCP {
				for len(av) > 0 {
					t, tv, r, ok := nextAttr(av)
					if !ok {
						return false
					}
					av = r
					if t == ctaProtoinfoTCPState && len(tv) == 1 {
						f.hasTCP, f.tcpState = true, tv[0]
					}
				}
			}
		case ctaTimestamp:
			for len(v) > 0 {
				a, av, r, ok := nextAttr(v)
				if !ok {
					return false
				}
				v = r
				switch {
				case a == ctaTimestampStart && len(av) == 8:
					f.start = int64(binary.BigEndian.Uint64(av))
				case a == ctaTimestampStop && len(av) == 8:
					f.stop = int64(binary.BigEndian.Uint64(av))
				}
			}
		}
	}
	f.tupleOK = haveSrc && haveDst && haveProto
	return true
}

// dumper runs ctnetlink dumps on its own netlink socket and decodes the
// replies in one reused buffer: a poll allocates nothing per connection.
type dumper struct {
	fd  int
	buf []byte
	seq uint32
}

// newDumper opens the socket in the calling thread's network namespace.
func newDumper() (*dumper, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
	if err != nil {
		return nil, fmt.Errorf("netlink socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("bind netlink socket: %w", err)
	}
	// A large buffer keeps a fast kernel from overrunning a slow reader.
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20)
	return &dumper{fd: fd, buf: make([]byte, 1<<20)}, nil
}

func (d *dumper) Close() error { return unix.Close(d.fd) }

// errDumpInterrupted: the table changed under the dump (NLM_F_DUMP_INTR),
// which may have missed entries.
var errDumpInterrupted = errors.New("conntrack dump interrupted by a table change")

// dump sends req and calls fn for each entry of the reply; f is reused.
func (d *dumper) dump(req dumpRequest, fn func(*ctFlow)) error {
	m, err := req.message()
	if err != nil {
		return fmt.Errorf("build dump request: %w", err)
	}
	d.seq++
	m.Header.Sequence = d.seq
	m.Header.Length = uint32(unix.NLMSG_HDRLEN + (len(m.Data)+3)&^3)
	m.Data = append(m.Data, make([]byte, (len(m.Data)+3)&^3-len(m.Data))...)
	b, err := m.MarshalBinary()
	if err != nil {
		return fmt.Errorf("build dump request: %w", err)
	}
	if err := unix.Sendto(d.fd, b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("send dump request: %w", err)
	}
	var st parseState
	for {
		n, err := unix.Read(d.fd, d.buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("read dump: %w", err)
		}
		if done, err := st.parse(d.buf[:n], d.seq, fn); done || err != nil {
			return err
		}
	}
}

// parseState carries a dump's reply across reads.
type parseState struct {
	f                      ctFlow
	interrupted, malformed bool
}

// parse walks the netlink messages of one read, calling fn for each
// conntrack entry of request seq; done is true at the end of the dump.
func (st *parseState) parse(msgs []byte, seq uint32, fn func(*ctFlow)) (done bool, err error) {
	for len(msgs) >= unix.NLMSG_HDRLEN {
		l := int(binary.NativeEndian.Uint32(msgs))
		typ := binary.NativeEndian.Uint16(msgs[4:])
		flags := binary.NativeEndian.Uint16(msgs[6:])
		mseq := binary.NativeEndian.Uint32(msgs[8:])
		if l < unix.NLMSG_HDRLEN || l > len(msgs) {
			return true, fmt.Errorf("read dump: %w: message length %d", errMalformed, l)
		}
		body := msgs[unix.NLMSG_HDRLEN:l]
		if a := (l + 3) &^ 3; a < len(msgs) {
			msgs = msgs[a:]
		} else {
			msgs = nil
		}
		if mseq != seq {
			continue // a late reply to an earlier request
		}
		if flags&unix.NLM_F_DUMP_INTR != 0 {
			st.interrupted = true
		}
		switch typ {
		case unix.NLMSG_DONE:
			if len(body) >= 4 {
				if e := int32(binary.NativeEndian.Uint32(body)); e < 0 {
					return true, fmt.Errorf("dump: %w", unix.Errno(-e))
				}
			}
			switch {
			case st.malformed:
				return true, fmt.Errorf("dump: %w", errMalformed)
			case st.interrupted:
				return true, errDumpInterrupted
			}
			return true, nil
		case unix.NLMSG_ERROR:
			if len(body) >= 4 {
				if e := int32(binary.NativeEndian.Uint32(body)); e < 0 {
					return true, fmt.Errorf("dump: %w", unix.Errno(-e))
				}
			}
			return true, nil
		}
		if typ>>8 != 1 || len(body) < 4 { // NFNL_SUBSYS_CTNETLINK; nfgenmsg
			continue
		}
		if !decodeFlow(body[4:], &st.f) {
			st.malformed = true
			continue
		}
		fn(&st.f)
	}
	return false, nil
}
