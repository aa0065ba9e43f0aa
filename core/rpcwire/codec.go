package rpcwire

import (
	"fmt"

	"google.golang.org/grpc/encoding"
	_ "google.golang.org/grpc/encoding/proto" // registers the "proto" codec codec falls back to
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
)

// payload is the message of Init on both ends: the Value of a
// google.protobuf.BytesValue, which codec writes and reads without
// protobuf's intermediate copies.
type payload struct {
	data []byte
	// release, if set, is called once Marshal has copied data, so that the
	// owner can reuse the buffer.
	release func()
}

// codec is gRPC's "proto" codec with a fast path for *frame and *payload:
// the bytes on the wire are those of a BytesValue, so a peer using plain
// protobuf (another language) interoperates. Every other message
// (go-plugin's own services share the server) goes to the proto codec.
//
// A batch is neither copied into nor allocated by gRPC on its way out
// (Marshal hands gRPC the caller's buffer) and a received frame is copied
// once, into a buffer of gRPC's pool that the frame holds until its owner
// calls frame.free.
type codec struct{ proto encoding.CodecV2 }

func newCodec() codec { return codec{proto: encoding.GetCodecV2("proto")} }

func (codec) Name() string { return "proto" }

// valueField is field 1 (Value) of google.protobuf.BytesValue.
const valueField protowire.Number = 1

func (c codec) Marshal(v any) (mem.BufferSlice, error) {
	switch m := v.(type) {
	case *frame:
		return marshalFrame(m), nil
	case *payload:
		var out []byte
		if len(m.data) > 0 { // proto3: an empty bytes field is not written
			out = make([]byte, 0, protowire.SizeTag(valueField)+protowire.SizeBytes(len(m.data)))
			out = protowire.AppendTag(out, valueField, protowire.BytesType)
			out = protowire.AppendBytes(out, m.data)
		}
		if m.release != nil {
			m.release()
			m.release, m.data = nil, nil
		}
		return mem.BufferSlice{mem.SliceBuffer(out)}, nil
	}
	return c.proto.Marshal(v)
}

func (c codec) Unmarshal(data mem.BufferSlice, v any) error {
	switch m := v.(type) {
	case *frame:
		// gRPC frees data after Unmarshal: keep a buffer of our own, in
		// one piece (data is one buffer per HTTP/2 DATA frame).
		held := data.MaterializeToBuffer(mem.DefaultBufferPool())
		var p payload
		if err := p.unmarshal(held.ReadOnlyData()); err != nil {
			held.Free()
			return err
		}
		if len(p.data) < seqSize {
			held.Free()
			return fmt.Errorf("stream message of %d bytes has no sequence number", len(p.data))
		}
		m.seq, m.data, m.held = le.Uint64(p.data), p.data[seqSize:], held
		return nil
	case *payload:
		return m.unmarshal(data.Materialize())
	}
	return c.proto.Unmarshal(data, v)
}

// marshalFrame writes f as a BytesValue without copying its payload: the
// framing goes in f.buf's headroom when it has one, else into a buffer of
// its own before the payload, which f.release gets back once gRPC has
// written it.
func marshalFrame(f *frame) mem.BufferSlice {
	n := seqSize + len(f.data)
	head := protowire.SizeTag(valueField) + protowire.SizeVarint(uint64(n)) + seqSize
	if f.buf != nil && head <= FrameHeadroom {
		out := f.buf[FrameHeadroom-head:]
		p := protowire.AppendTag(out[:0], valueField, protowire.BytesType)
		p = protowire.AppendVarint(p, uint64(n))
		le.PutUint64(out[len(p):], f.seq)
		return mem.BufferSlice{mem.SliceBuffer(out)}
	}
	h := make([]byte, 0, head)
	h = protowire.AppendTag(h, valueField, protowire.BytesType)
	h = protowire.AppendVarint(h, uint64(n))
	h = le.AppendUint64(h, f.seq)
	if f.release == nil {
		return mem.BufferSlice{mem.SliceBuffer(h), mem.SliceBuffer(f.data)}
	}
	data := f.data
	return mem.BufferSlice{mem.SliceBuffer(h), mem.NewBuffer(&data, releaseFunc(f.release))}
}

// releaseFunc is a mem.BufferPool of one buffer: gRPC's Put hands it back
// to its owner through the function.
type releaseFunc func()

func (releaseFunc) Get(n int) *[]byte { b := make([]byte, n); return &b }
func (f releaseFunc) Put(*[]byte)     { f() }

// unmarshal reads a BytesValue, keeping a reference to data.
func (m *payload) unmarshal(data []byte) error {
	m.data = nil
	for len(data) > 0 {
		num, typ, n := protowire.ConsumeTag(data)
		if n < 0 {
			return fmt.Errorf("bytes value: %w", protowire.ParseError(n))
		}
		data = data[n:]
		if num == valueField && typ == protowire.BytesType {
			b, n := protowire.ConsumeBytes(data)
			if n < 0 {
				return fmt.Errorf("bytes value: %w", protowire.ParseError(n))
			}
			m.data = b[:len(b):len(b)] // the last one wins, as in protobuf
			data = data[n:]
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, data) // unknown field: skip
		if n < 0 {
			return fmt.Errorf("bytes value: %w", protowire.ParseError(n))
		}
		data = data[n:]
	}
	return nil
}

var _ encoding.CodecV2 = codec{}
