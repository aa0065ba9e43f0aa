package rpcwire

import (
	"bytes"
	"reflect"
	"testing"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// TestFrameCodec checks stream messages: a BytesValue holding the sequence
// number and the payload, framed in place when the buffer has headroom,
// and never copied on the way out; an owner's release runs once gRPC frees
// the message.
func TestFrameCodec(t *testing.T) {
	c := newCodec()
	for _, size := range []int{0, 1, 200, 70000} {
		data := bytes.Repeat([]byte{7}, size)
		buf := append(make([]byte, FrameHeadroom), data...)
		released := 0
		for _, f := range []*frame{
			{seq: 42, buf: buf, data: buf[FrameHeadroom:]},
			{seq: 42, data: data, release: func() { released++ }},
		} {
			msg, err := c.Marshal(f)
			if err != nil {
				t.Fatal(err)
			}
			last := msg[len(msg)-1].ReadOnlyData()
			if size > 0 && &last[len(last)-1] != &buf[len(buf)-1] && &last[len(last)-1] != &data[len(data)-1] {
				t.Error("payload copied")
			}
			out := msg.Materialize()
			var bv wrapperspb.BytesValue
			if err := proto.Unmarshal(out, &bv); err != nil || len(bv.Value) != 8+size || le.Uint64(bv.Value) != 42 {
				t.Fatalf("proto reads %d bytes, %v", len(bv.Value), err)
			}
			var g frame
			if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(out)}, &g); err != nil || g.seq != 42 || !bytes.Equal(g.data, data) {
				t.Fatalf("Unmarshal: seq %d, %d bytes, %v", g.seq, len(g.data), err)
			}
			g.free()
			msg.Free()
		}
		// A buffer under gRPC's pooling threshold is not handed back: it
		// is garbage, like any small slice.
		if want := 1; !mem.IsBelowBufferPoolingThreshold(size) && released != want {
			t.Errorf("%d bytes: released %d times, want %d", size, released, want)
		}
	}
	// A frame split over several DATA frames is read whole.
	out := append([]byte{0x0a, 12}, le.AppendUint64(nil, 9)...)
	out = append(out, 1, 2, 3, 4)
	var g frame
	if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(out[:3]), mem.SliceBuffer(out[3:])}, &g); err != nil || g.seq != 9 || !bytes.Equal(g.data, []byte{1, 2, 3, 4}) {
		t.Errorf("split frame: seq %d, %x, %v", g.seq, g.data, err)
	}
	g.free()
	if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer([]byte{0x0a, 0x02, 1, 2})}, &g); err == nil {
		t.Error("frame without a sequence number accepted")
	}
}

func TestCodec(t *testing.T) {
	c := newCodec()
	for _, data := range [][]byte{nil, {1}, bytes.Repeat([]byte{7}, 300)} {
		released := false
		msg, err := c.Marshal(&payload{data: data, release: func() { released = true }})
		out := msg.Materialize()
		if err != nil || !released {
			t.Fatalf("Marshal: %v, released %v", err, released)
		}
		// The bytes are a BytesValue's.
		var bv wrapperspb.BytesValue
		if err := proto.Unmarshal(out, &bv); err != nil || !bytes.Equal(bv.Value, data) {
			t.Fatalf("proto reads %x, %v; want %x", bv.Value, err, data)
		}
		want, _ := proto.Marshal(&bv)
		var p payload
		if err := c.Unmarshal(slice(want), &p); err != nil || !bytes.Equal(p.data, data) {
			t.Fatalf("Unmarshal = %x, %v; want %x", p.data, err, data)
		}
	}
	// Unknown fields are skipped, garbage is an error.
	var p payload
	if err := c.Unmarshal(slice([]byte{0x10, 0x05, 0x0a, 0x01, 0x09}), &p); err != nil || !reflect.DeepEqual(p.data, []byte{9}) {
		t.Errorf("unknown field: %x, %v", p.data, err)
	}
	if err := c.Unmarshal(slice([]byte{0x0a, 0x09, 0x01}), &p); err == nil {
		t.Error("truncated value accepted")
	}
	// Other messages go to the proto codec.
	msg, err := c.Marshal(wrapperspb.String("x"))
	if err != nil {
		t.Fatal(err)
	}
	var s wrapperspb.StringValue
	if err := c.Unmarshal(msg, &s); err != nil || s.Value != "x" {
		t.Errorf("proto fallback: %q, %v", s.Value, err)
	}
}

func slice(b []byte) mem.BufferSlice { return mem.BufferSlice{mem.SliceBuffer(b)} }
