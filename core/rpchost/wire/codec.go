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
	m, ok := v.(*payload)
	if !ok {
		return c.proto.Unmarshal(data, v)
	}
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
