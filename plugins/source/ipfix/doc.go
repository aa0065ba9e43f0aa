// Package ipfix is the source.ipfix plugin: an IPFIX collecting process
// (RFC 7011) listening on UDP and TCP.
//
// # Readers and ordering
//
// UDP is read by Config.Readers sockets bound to the same address with
// SO_REUSEPORT, one goroutine and one [ipfix.Decoder] each. The kernel
// chooses a socket by hashing the datagram's 4-tuple, so every message of
// one exporter (one source address and port) reaches the same socket, and
// so the same decoder, in arrival order: an exporter's templates are always
// stored before its later data sets are decoded, and its messages are never
// reordered across decoders. The set of sockets is fixed for the life of
// the source, so the hash never moves an exporter to another socket.
//
// Each TCP connection is one transport session (RFC 7011 §10.4) with its
// own decoder; its templates are forgotten when the connection closes.
//
// # Loss
//
// Each UDP socket asks for Config.RcvBuf bytes of receive buffer
// (SO_RCVBUFFORCE as root, else SO_RCVBUF capped by net.core.rmem_max) and
// logs the size the kernel granted. The kernel's own count of datagrams it
// dropped because a socket buffer was full (SO_RXQ_OVFL) is logged and
// exported as weir_source_ipfix_kernel_drops_total: loss that happens
// before any user-space counter can see it.
//
// # Batching
//
// Each reader fills its own batch and emits it when it reaches the
// pipeline's batch size or when its first record is older than the batch
// timeout; read deadlines make an idle reader flush too. Shutdown lets each
// reader drain what its socket already holds, closes the sockets, emits
// every partial batch and waits for every goroutine.
package ipfix
