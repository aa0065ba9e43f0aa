package wire

import (
	"fmt"

	"google.golang.org/grpc/encoding"
	_ "google.golang.org/grpc/encoding/proto" // registers the "proto" codec codec falls back to
	"google.golang.org/protobuf/encoding/protowire"
)

// payload is the message of Init and Process on both ends: the Value of a
// google.protobuf.BytesValue, which codec writes and reads without
// protobuf's intermediate copies.
type payload struct {
	data []byte
	// release, if set, is called once Marshal has copied data, so that the
	// owner can reuse the buffer.
	release func()
}

// codec is gRPC's "proto" codec with a fast path for *payload: the bytes
// on the wire are those of a BytesValue, so a peer using plain protobuf
// (another language) interoperates. Every other message (go-plugin's own
// services share the server) goes to the proto codec.
//
// # Notes
//   - Unmarshal keeps a reference to data instead of copying it: gRPC
//     hands a codec a buffer of its own per message (grpc 1.65 allocates
//     it when no receive pool is configured, and later versions copy into
//     a fresh slice for a v1 codec).
type codec struct{ proto encoding.Codec }

func newCodec() codec { return codec{proto: encoding.GetCodec("proto")} }

func (codec) Name() string { return "proto" }

// valueField is field 1 (Value) of google.protobuf.BytesValue.
const valueField protowire.Number = 1

func (c codec) Marshal(v any) ([]byte, error) {
	if f, ok := v.(*frame); ok {
		return marshalFrame(f), nil
	}
	m, ok := v.(*payload)
	if !ok {
		return c.proto.Marshal(v)
	}
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
	return out, nil
}

func (c codec) Unmarshal(data []byte, v any) error {
	if f, ok := v.(*frame); ok {
		var m payload
		if err := m.unmarshal(data); err != nil {
			return err
		}
		if len(m.data) < seqSize {
			return fmt.Errorf("stream message of %d bytes has no sequence number", len(m.data))
		}
		f.seq, f.data = le.Uint64(m.data), m.data[seqSize:]
		return nil
	}
	m, ok := v.(*payload)
	if !ok {
		return c.proto.Unmarshal(data, v)
	}
	return m.unmarshal(data)
}

// marshalFrame writes f as a BytesValue: in place in f.buf's headroom when
// it has one, else into a new buffer (then f.release runs).
func marshalFrame(f *frame) []byte {
	n := seqSize + len(f.data)
	head := protowire.SizeTag(valueField) + protowire.SizeVarint(uint64(n)) + seqSize
	if f.buf != nil && head <= FrameHeadroom {
		out := f.buf[FrameHeadroom-head:]
		p := protowire.AppendTag(out[:0], valueField, protowire.BytesType)
		p = protowire.AppendVarint(p, uint64(n))
		le.PutUint64(out[len(p):], f.seq)
		return out
	}
	out := make([]byte, 0, head+len(f.data))
	out = protowire.AppendTag(out, valueField, protowire.BytesType)
	out = protowire.AppendVarint(out, uint64(n))
	out = le.AppendUint64(out, f.seq)
	out = append(out, f.data...)
	if f.release != nil {
		f.release()
		f.release, f.data = nil, nil
	}
	return out
}

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

var _ encoding.Codec = codec{}
