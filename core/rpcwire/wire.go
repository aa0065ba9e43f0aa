// Package rpcwire is the transport between Weir's rpc host (core/rpchost)
// and an out-of-process plugin (sdk/rpc): the go-plugin handshake, a
// two-method gRPC service whose messages are raw byte payloads, and the
// stream's framing. The bytes inside the payloads (batches, answers,
// manifests) are core/abi's.
//
// The service is written by hand (no protoc): its messages are
// google.protobuf.BytesValue, so a plugin in another language can serve it
// from this definition:
//
//	service weir.rpc.v2.Processor {
//	  rpc Init(google.protobuf.BytesValue) returns (google.protobuf.BytesValue);
//	  rpc Stream(stream google.protobuf.BytesValue) returns (stream google.protobuf.BytesValue);
//	}
//
// Init sends a JSON [InitRequest] and returns an ABI manifest (the plugin's
// kind, the record parts it reads, or why it rejects its config). Stream
// carries batches, each an ABI batch buffer or a packed batch
// (abi.MagicPacked) after a sequence number, and their answers, each a
// compact answer (abi.MagicCompact) or an ABI answer after the number of
// the batch it answers (see [Stream]). See docs/abi.md, "RPC transport".
package rpcwire

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"math"

	goplugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
)

// Handshake values. A plugin binary refuses to run unless the host sets the
// cookie in its environment; the protocol version must match exactly.
const (
	// ProtocolVersion is the version of this service, negotiated by
	// go-plugin at start. Version 1 had a unary Process call per batch
	// and ABI answers only; version 2 sent packed batches as cut-down ABI
	// record blocks.
	ProtocolVersion = 3
	// MagicCookieKey and MagicCookieValue mark a process started by Weir.
	// They are a UX check, not a security measure.
	MagicCookieKey   = "WEIR_PLUGIN_MAGIC_COOKIE"
	MagicCookieValue = "b2c4a5d1-weir-rpc-processor"
	// PluginName is the name the processor is dispensed under.
	PluginName = "processor"
	// ServiceName is the gRPC service's full name.
	ServiceName = "weir.rpc.v2.Processor"

	methodInit   = "/" + ServiceName + "/Init"
	methodStream = "/" + ServiceName + "/Stream"
)

// Handshake returns the go-plugin handshake both sides use.
func Handshake() goplugin.HandshakeConfig {
	return goplugin.HandshakeConfig{
		ProtocolVersion:  ProtocolVersion,
		MagicCookieKey:   MagicCookieKey,
		MagicCookieValue: MagicCookieValue,
	}
}

// Flow-control windows and socket buffers for both ends. A batch is a few
// hundred kilobytes; with gRPC's 64 KiB default window each call would
// stall on WINDOW_UPDATE round trips.
const (
	window      = 16 << 20
	ioBufferLen = 256 << 10
)

// DialOptions are the host's gRPC options for a plugin connection.
func DialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithInitialWindowSize(window),
		grpc.WithInitialConnWindowSize(window),
		grpc.WithReadBufferSize(ioBufferLen),
		grpc.WithWriteBufferSize(ioBufferLen),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(math.MaxInt32), grpc.MaxCallSendMsgSize(math.MaxInt32)),
		// A failed batch is never resent (the plugin restarts instead), so
		// gRPC need not keep sent batches for replay.
		grpc.WithDisableRetry(),
	}
}

// callCodec is the host's codec for the service's calls (see codec).
var le = binary.LittleEndian

var callCodec = grpc.ForceCodecV2(newCodec())

// ServerOptions are the plugin's gRPC server options, matching
// DialOptions; a batch may also exceed gRPC's default 4 MiB message limit.
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.InitialWindowSize(window),
		grpc.InitialConnWindowSize(window),
		grpc.ReadBufferSize(ioBufferLen),
		grpc.WriteBufferSize(ioBufferLen),
		grpc.MaxRecvMsgSize(math.MaxInt32),
		grpc.MaxSendMsgSize(math.MaxInt32),
		// The proto codec, with a copy-free path for the service's
		// payloads; go-plugin's services on the same server are unchanged.
		grpc.ForceServerCodecV2(newCodec()),
	}
}

// InitRequest is the JSON body of Init, sent once per plugin process before
// any batch.
type InitRequest struct {
	// ABI is the newest batch ABI version the host speaks (abi.Version).
	ABI int `json:"abi"`
	// Name is the processor instance's name in Weir's config, for logs.
	Name string `json:"name"`
	// Config is the `config:` value of the rpc processor, as JSON; null
	// when absent.
	Config json.RawMessage `json:"config"`
}

// Server is what a plugin implements. Both methods may be called from
// several goroutines at once. Buffers passed in belong to the callee.
type Server interface {
	// Init configures the plugin from a JSON InitRequest and returns an
	// ABI manifest.
	Init(ctx context.Context, req []byte) ([]byte, error)
	// Process handles one batch (an ABI batch buffer or a packed batch)
	// and returns a compact answer or an ABI answer. An error is sent to
	// the host as an answer with abi.StatusError and the error's text.
	Process(ctx context.Context, batch []byte) ([]byte, error)
}

// Releaser is implemented by a Server that reuses its answer buffers:
// Release(out) is called once gRPC no longer needs an answer out returned
// by Process (it has written it, or copied an Init reply).
type Releaser interface {
	Release(out []byte)
}

// Client calls a plugin's service over a go-plugin gRPC connection. It is
// safe for concurrent use.
type Client struct {
	conn *grpc.ClientConn
	done <-chan struct{}
}

// NewClient returns a client on conn. done, if not nil, is closed when the
// plugin process exits.
func NewClient(conn *grpc.ClientConn, done <-chan struct{}) *Client {
	return &Client{conn: conn, done: done}
}

// Done is closed when the plugin process has exited (nil if unknown).
func (c *Client) Done() <-chan struct{} { return c.done }

// Init sends a JSON InitRequest and returns the plugin's ABI manifest.
func (c *Client) Init(ctx context.Context, req []byte) ([]byte, error) {
	return c.call(ctx, methodInit, req)
}

// call sends in and returns the reply, which the caller owns. in is not
// retained after call returns.
func (c *Client) call(ctx context.Context, method string, in []byte) ([]byte, error) {
	req := payload{data: in}
	var rep payload
	if err := c.conn.Invoke(ctx, method, &req, &rep, callCodec); err != nil {
		return nil, err
	}
	return rep.data, nil
}

// serviceDesc is what protoc-gen-go-grpc would generate for the service in
// the package comment.
var serviceDesc = grpc.ServiceDesc{
	ServiceName: ServiceName,
	HandlerType: (*Server)(nil),
	Methods: []grpc.MethodDesc{
		{MethodName: "Init", Handler: unary(Server.Init, methodInit)},
	},
	Streams:  []grpc.StreamDesc{{StreamName: "Stream", Handler: serveStream, ServerStreams: true, ClientStreams: true}},
	Metadata: "weir/rpc/v2/processor.proto",
}

type method func(Server, context.Context, []byte) ([]byte, error)

func unary(m method, fullName string) func(any, context.Context, func(any) error, grpc.UnaryServerInterceptor) (any, error) {
	return func(srv any, ctx context.Context, dec func(any) error, icpt grpc.UnaryServerInterceptor) (any, error) {
		in := new(payload)
		if err := dec(in); err != nil {
			return nil, err
		}
		call := func(ctx context.Context, req any) (any, error) {
			out, err := m(srv.(Server), ctx, req.(*payload).data)
			if err != nil {
				return nil, err
			}
			rep := &payload{data: out}
			if r, ok := srv.(Releaser); ok && out != nil {
				rep.release = func() { r.Release(out) }
			}
			return rep, nil
		}
		if icpt == nil {
			return call(ctx, in)
		}
		return icpt(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: fullName}, call)
	}
}

// Register serves srv on s.
func Register(s *grpc.Server, srv Server) { s.RegisterService(&serviceDesc, srv) }

// Plugin is the go-plugin glue: the plugin side sets Impl and serves it; the
// host side dispenses a *Client.
type Plugin struct {
	goplugin.NetRPCUnsupportedPlugin
	// Impl is the plugin's implementation; nil on the host side.
	Impl Server
}

// GRPCServer registers Impl on s (plugin side).
func (p *Plugin) GRPCServer(_ *goplugin.GRPCBroker, s *grpc.Server) error {
	Register(s, p.Impl)
	return nil
}

// GRPCClient returns a *Client on conn (host side).
func (p *Plugin) GRPCClient(ctx context.Context, _ *goplugin.GRPCBroker, conn *grpc.ClientConn) (any, error) {
	// go-plugin cancels ctx when the plugin process exits.
	return NewClient(conn, ctx.Done()), nil
}

var _ goplugin.GRPCPlugin = (*Plugin)(nil)
