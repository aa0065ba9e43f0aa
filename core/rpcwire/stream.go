package rpcwire

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/mem"

	"github.com/weir-flow/weir/core/abi"
)

// Batches travel on one long-lived bidirectional Stream call: each message
// is a google.protobuf.BytesValue whose value is a little-endian u64
// sequence number followed by a batch (host to plugin) or by the answer to
// the batch of that number (plugin to host). The host sends several
// batches before the first answer returns; the plugin answers each as soon
// as it is done, in any order. A unary call per batch would pay gRPC's
// per-call cost (a new HTTP/2 stream, headers, trailers, status) every
// time.

// FrameHeadroom is the number of bytes a batch buffer given to
// [Stream.Call] keeps free before its payload: Call writes the message's
// framing (BytesValue tag and length, sequence number) there, so the
// batch is not copied.
const FrameHeadroom = 1 + 5 + 8 // tag, varint length, u64 sequence

// seqSize is the size of the sequence number that starts a frame's value.
const seqSize = 8

// frame is a message of the Stream call.
type frame struct {
	seq  uint64
	data []byte // payload, after the sequence number
	// buf, if set, is the payload with FrameHeadroom free bytes before
	// it (data is then buf[FrameHeadroom:]); Marshal frames it in place.
	buf []byte
	// release, if set, is called once gRPC has written data.
	release func()
	// held, on a received frame, is the buffer data points into.
	held mem.Buffer
}

// free hands a received frame's buffer back to gRPC's pool; data is not
// to be read afterwards.
func (f *frame) free() {
	if f.held != nil {
		f.held.Free()
		f.held, f.data = nil, nil
	}
}

// Answer is a plugin's answer to a batch. Data lies in a pooled buffer:
// call Release once done with it.
type Answer struct {
	Data []byte
	held mem.Buffer
}

// Release hands the answer's buffer back; Data is not to be read
// afterwards. Releasing twice, or a zero Answer, does nothing.
func (a *Answer) Release() {
	if a.held != nil {
		a.held.Free()
		a.held, a.Data = nil, nil
	}
}

var streamDesc = grpc.StreamDesc{StreamName: "Stream", ServerStreams: true, ClientStreams: true}

// Stream carries batches to a plugin on one Stream call, several at a
// time, and matches answers to calls by sequence number. It is safe for
// concurrent use. Its receiving goroutine runs until the call ends: the
// plugin exits or the connection breaks, or Close.
type Stream struct {
	cs      grpc.ClientStream
	cancel  context.CancelFunc
	sending chan struct{} // held during SendMsg: gRPC allows one at a time
	wg      sync.WaitGroup

	mu      sync.Mutex
	seq     uint64
	pending map[uint64]chan Answer
	err     error         // why the stream ended; set before done closes
	done    chan struct{} // closed when the stream has ended
}

// OpenStream starts the Stream call. The stream lives until Close or until
// the connection ends, whatever ctx does after OpenStream returns.
func (c *Client) OpenStream(ctx context.Context) (*Stream, error) {
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	cs, err := c.conn.NewStream(sctx, &streamDesc, methodStream, callCodec)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("open batch stream: %w", err)
	}
	s := &Stream{cs: cs, cancel: cancel, sending: make(chan struct{}, 1), pending: make(map[uint64]chan Answer), done: make(chan struct{})}
	s.wg.Add(1)
	go s.receive()
	return s, nil
}

// Call sends the batch buf[FrameHeadroom:] and waits for its answer, which
// the caller releases. Call overwrites buf[:FrameHeadroom]. It returns early
// with ctx's error when ctx ends, or with the stream's error when the
// stream ends (the plugin exited, the connection broke). If ctx ends while
// the batch is being sent (flow control holds it back), Call ends the
// stream.
//
// # Notes
//   - gRPC may still hold buf when Call returns an error: reuse buf only
//     after Call returned an answer.
func (s *Stream) Call(ctx context.Context, buf []byte) (Answer, error) {
	if len(buf) < FrameHeadroom {
		return Answer{}, fmt.Errorf("batch buffer of %d bytes has no %d-byte headroom", len(buf), FrameHeadroom)
	}
	ch := make(chan Answer, 1)
	s.mu.Lock()
	if s.err != nil {
		err := s.err
		s.mu.Unlock()
		return Answer{}, err
	}
	s.seq++
	seq := s.seq
	s.pending[seq] = ch
	s.mu.Unlock()

	// One send at a time, but a call waiting for its turn still honours
	// ctx.
	select {
	case s.sending <- struct{}{}:
	case <-ctx.Done():
		s.forget(seq)
		return Answer{}, ctx.Err()
	}
	// SendMsg blocks while flow control holds the batch back (a plugin
	// that stopped reading): past ctx's end, the stream is cut, which
	// unblocks it; the caller then restarts the plugin.
	stop := context.AfterFunc(ctx, s.cancel)
	err := s.cs.SendMsg(&frame{seq: seq, buf: buf, data: buf[FrameHeadroom:]})
	cut := !stop()
	<-s.sending
	if cut {
		s.forget(seq)
		return Answer{}, ctx.Err()
	}
	if err != nil {
		// io.EOF: the call ended, and its status comes from the receiver.
		select {
		case <-s.done:
		case <-ctx.Done():
			s.forget(seq)
			return Answer{}, ctx.Err()
		}
	}
	select {
	case a := <-ch:
		return a, nil
	case <-s.done:
		select {
		case a := <-ch: // answered just before the end
			return a, nil
		default:
		}
		return Answer{}, s.err
	case <-ctx.Done():
		s.forget(seq)
		select {
		case a := <-ch: // answered as ctx ended
			a.Release()
		default:
		}
		return Answer{}, ctx.Err()
	}
}

// Done is closed when the stream has ended; Err then says why.
func (s *Stream) Done() <-chan struct{} { return s.done }

// Err returns why the stream ended, or nil while it runs.
func (s *Stream) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

func (s *Stream) forget(seq uint64) {
	s.mu.Lock()
	delete(s.pending, seq)
	s.mu.Unlock()
}

// receive hands each answer to its call until the stream ends.
func (s *Stream) receive() {
	defer s.wg.Done()
	for {
		var f frame
		if err := s.cs.RecvMsg(&f); err != nil {
			if errors.Is(err, io.EOF) {
				err = errors.New("plugin ended the batch stream")
			}
			s.mu.Lock()
			s.err = err
			clear(s.pending)
			s.mu.Unlock()
			close(s.done)
			return
		}
		s.mu.Lock()
		ch := s.pending[f.seq]
		delete(s.pending, f.seq)
		s.mu.Unlock()
		if ch == nil { // an answer to a call that gave up
			f.free()
			continue
		}
		ch <- Answer{Data: f.data, held: f.held}
	}
}

// Close ends the call and waits for the receiving goroutine. Calls still
// waiting fail.
func (s *Stream) Close() {
	s.cancel()
	s.wg.Wait()
}

// serveStream is the plugin side of Stream: it reads batches and answers
// each through srv.Process, several at once. Its workers take turns at
// receiving: the one that gets a batch lets the next one receive and
// processes the batch itself, so a batch is not handed between goroutines
// on its way in, and workers live as long as the stream (their stacks are
// grown once, not per batch).
func serveStream(srv any, ss grpc.ServerStream) error {
	w := &streamWorkers{srv: srv.(Server), ss: ss, ended: make(chan error, 1)}
	w.start()
	err := <-w.ended
	w.wg.Wait()
	if errors.Is(err, io.EOF) {
		return nil // the host closed its side
	}
	return err
}

// streamWorkers serve one Stream call.
type streamWorkers struct {
	srv     Server
	ss      grpc.ServerStream
	recvMu  sync.Mutex // held by the receiving worker
	sendMu  sync.Mutex // gRPC allows one SendMsg at a time
	waiting atomic.Int32
	wg      sync.WaitGroup
	ended   chan error // the first receive error
}

func (w *streamWorkers) start() {
	w.wg.Add(1)
	w.waiting.Add(1)
	go w.work()
}

func (w *streamWorkers) work() {
	defer w.wg.Done()
	for {
		w.recvMu.Lock()
		w.waiting.Add(-1)
		var in frame
		if err := w.ss.RecvMsg(&in); err != nil {
			select {
			case w.ended <- err:
			default:
			}
			w.recvMu.Unlock()
			return // the workers still waiting get the same error
		}
		if w.waiting.Load() == 0 {
			w.start() // someone must receive the next batch while this one runs
		}
		w.recvMu.Unlock()
		w.answer(&in)
		in.free()
		w.waiting.Add(1)
	}
}

func (w *streamWorkers) answer(in *frame) {
	out, err := w.srv.Process(w.ss.Context(), in.data)
	if err != nil {
		out = abi.CompactError(abi.StatusError, err.Error())
	}
	rep := &frame{seq: in.seq, data: out}
	if r, ok := w.srv.(Releaser); ok && err == nil && out != nil {
		rep.release = func() { r.Release(out) }
	}
	w.sendMu.Lock()
	// An error ends the call: the receiving worker sees it too.
	_ = w.ss.SendMsg(rep)
	w.sendMu.Unlock()
}
