package plugin

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"
)

// Failure reasons: why a stage failed on a batch, the same for built-in,
// WASM and RPC plugins. They label weir_stage_records_errored_total.
const (
	// ReasonTimeout: the plugin did not answer within its deadline.
	ReasonTimeout = "timeout"
	// ReasonCrash: the plugin trapped, panicked, ran out of memory, or its
	// process died; the host replaces it.
	ReasonCrash = "crash"
	// ReasonBadAnswer: the plugin's answer broke the ABI.
	ReasonBadAnswer = "bad_answer"
	// ReasonPluginError: the plugin reported an error for the batch; also
	// the reason of an error that names none.
	ReasonPluginError = "plugin_error"
	// ReasonRejectedConfig: the plugin refused its config at start.
	ReasonRejectedConfig = "rejected_config"
	// ReasonUnavailable: no plugin instance was running (a restart is
	// pending).
	ReasonUnavailable = "unavailable"
)

// Reasons lists every failure reason, in a fixed order.
var Reasons = []string{ReasonTimeout, ReasonCrash, ReasonBadAnswer, ReasonPluginError, ReasonRejectedConfig, ReasonUnavailable}

// Error is a stage's typed failure: a reason from [Reasons] and the cause.
// Hosts return it from Process; the engine reads the reason with
// [ReasonOf] and applies the stage's on_error policy.
type Error struct {
	Reason string
	Err    error
}

// Fail returns err as an *Error with reason.
func Fail(reason string, err error) error { return &Error{Reason: reason, Err: err} }

func (e *Error) Error() string { return fmt.Sprintf("%s: %v", e.Reason, e.Err) }

func (e *Error) Unwrap() error { return e.Err }

// ReasonOf returns the reason of the *Error in err's chain, or
// ReasonPluginError for an error without one.
func ReasonOf(err error) string {
	var e *Error
	if errors.As(err, &e) && e.Reason != "" {
		return e.Reason
	}
	return ReasonPluginError
}

// On-error policies: what the engine does with a batch a processor failed
// on. The stage option on_error selects one; fail-open is the default.
const (
	// FailOpen passes the batch on unchanged; its records count in
	// weir_stage_records_errored_total{reason}.
	FailOpen = "fail-open"
	// FailClosed drops the batch's records; they count in
	// weir_stage_records_dropped_total{reason="error"}.
	FailClosed = "fail-closed"
)

// LogLimiter rate-limits repeated log lines (a failure per batch during an
// outage, a malformed datagram per read during a flood): at most one line
// per interval, counting the ones it suppressed. The zero value allows one
// line per second. It is safe for concurrent use and takes no lock, so a
// receive loop can ask it for every bad datagram.
type LogLimiter struct {
	// Interval is the least time between two lines; 0 means one second.
	Interval time.Duration

	last       atomic.Int64 // UnixNano of the last line allowed; 0 never
	suppressed atomic.Uint64
}

// Allow reports whether a line may be logged now and, if so, how many
// were suppressed since the last one.
func (l *LogLimiter) Allow(now time.Time) (suppressed uint64, ok bool) {
	every := l.Interval
	if every <= 0 {
		every = time.Second
	}
	n, last := now.UnixNano(), l.last.Load()
	if (last != 0 && n-last < int64(every)) || !l.last.CompareAndSwap(last, n) {
		l.suppressed.Add(1)
		return 0, false
	}
	return l.suppressed.Swap(0), true
}
