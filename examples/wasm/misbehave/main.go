// Command misbehave is a WASM module that fails on purpose, to test how
// the host contains failures. It implements ABI v1 directly with
// core/abi, without the SDK, so a panic is not recovered and an answer
// can be garbage: it also shows how to write a guest without the SDK.
//
// Config:
//
//	mode: loop | trap | panic | oom | garbage | none   # default none
//	every: N                                          # misbehave on every Nth batch; default 1
//
// Otherwise it keeps every record. Modes:
//   - loop: spins forever (the host's timeout kills it)
//   - trap: writes outside linear memory (a WebAssembly trap)
//   - panic: an unrecovered Go panic (the Go runtime exits the module)
//   - oom: allocates until the memory limit is hit
//   - garbage: answers out-of-range pointers, bad bytes or wrong counts
//
// Build: GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o misbehave.wasm .
//lint:file-ignore U1000 used by the wasip1 exports (exports_wasip1.go), which staticcheck does not see on linux

package main

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/weir-flow/weir/core/abi"
)

// Config is the module's config.
type Config struct {
	Mode  string `json:"mode"`
	Every int    `json:"every"`
}

var (
	cfg     = Config{Mode: "none", Every: 1}
	batches int
	in, out []byte
	answer  abi.Answer
	hoard   [][]byte // oom mode keeps everything it allocates
	spin    uint64   // loop mode's counter
)

// configure parses and checks the config; the error is the message the
// host reports.
func configure(config []byte) error {
	if t := bytes.TrimSpace(config); len(t) > 0 && !bytes.Equal(t, []byte("null")) {
		dec := json.NewDecoder(bytes.NewReader(config))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&cfg); err != nil {
			return fmt.Errorf("misbehave config: %w", err)
		}
	}
	switch cfg.Mode {
	case "loop", "trap", "panic", "oom", "garbage", "none":
	default:
		return fmt.Errorf("misbehave config: mode %q: want loop, trap, panic, oom, garbage or none", cfg.Mode)
	}
	if cfg.Every < 1 {
		return fmt.Errorf("misbehave config: every %d: want 1 or more", cfg.Every)
	}
	return nil
}

// manifest answers init.
func manifest(config []byte) []byte {
	m := abi.Manifest{Version: abi.Version, Kind: abi.KindFilter}
	if err := configure(config); err != nil {
		m.Status, m.Message = abi.StatusError, err.Error()
	}
	out = m.Append(out[:0])
	return out
}

// process answers one batch: keep everything, or misbehave. garbage
// returns the (ptr, len) to answer instead of out, when it lies about
// where the answer is.
func process(buf []byte) (answerBuf []byte, lie bool, ptr, n uint32) {
	v, err := abi.ParseBatch(buf)
	if err != nil {
		answer = abi.Answer{Status: abi.StatusError, Message: err.Error()}
		out = answer.Append(out[:0])
		return out, false, 0, 0
	}
	batches++
	answer = abi.Answer{Count: v.Len(), Verdicts: answer.Verdicts.KeepAll(v.Len())}
	if cfg.Mode != "none" && batches%cfg.Every == 0 {
		switch cfg.Mode {
		case "loop":
			for {
				spin++
			}
		case "trap":
			trap()
		case "panic":
			panic(fmt.Sprintf("misbehave: panic on batch %d", batches))
		case "oom":
			for {
				hoard = append(hoard, make([]byte, 1<<20))
				hoard[len(hoard)-1][0] = 1
			}
		case "garbage":
			switch (batches / cfg.Every) % 3 {
			case 0:
				return nil, true, 0xfffffff0, 4096 // beyond memory
			case 1:
				out = append(out[:0], "not an answer at all, not even close"...)
				return out, false, 0, 0
			default:
				answer.Count++ // verdicts for a record that does not exist
				answer.Verdicts = answer.Verdicts.KeepAll(answer.Count)
			}
		}
	}
	out = answer.Append(out[:0])
	return out, false, 0, 0
}

func main() {}
