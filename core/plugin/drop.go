package plugin

import (
	"errors"
	"strconv"
)

// Drop reasons: why an exporter dropped some records of a batch and
// delivered the rest. They label weir_stage_records_dropped_total of the
// exporter's stage. An exporter may use its own reason too (lowercase
// snake_case); these are the shared ones.
const (
	// DropRecordTooLarge: the record does not fit in one outgoing message.
	DropRecordTooLarge = "record_too_large"
	// DropEmptyRecord: the record has nothing the exporter can encode.
	DropEmptyRecord = "empty_record"
	// DropSendError: the transport refused the message holding the record
	// (a UDP send error).
	DropSendError = "send_error"
	// DropWriteError: a write kept failing past its retry budget (a full
	// disk).
	DropWriteError = "write_error"
	// DropBufferFull: the exporter's buffer had no room (when_full: drop).
	DropBufferFull = "buffer_full"
	// DropRejected: the peer refused the records as bad data.
	DropRejected = "rejected"
	// DropDeliveryFailed: delivery failed after its retries or timeout.
	DropDeliveryFailed = "delivery_failed"
	// DropShutdown: still buffered when the shutdown deadline passed.
	DropShutdown = "shutdown"
)

// DropReasons lists the shared drop reasons, in a fixed order.
var DropReasons = []string{DropRecordTooLarge, DropEmptyRecord, DropSendError, DropWriteError,
	DropBufferFull, DropRejected, DropDeliveryFailed, DropShutdown}

// DroppedError is an exporter's partial result: Records records of the
// batch were dropped for Reason and the others delivered. Export returns
// it (alone, wrapped, or several joined with errors.Join) instead of
// failing the whole batch; the engine counts the delivered records in
// weir_stage_records_out_total and these in
// weir_stage_records_dropped_total{reason}. Err is the cause, or nil.
type DroppedError struct {
	Reason  string
	Records int
	Err     error
}

// Dropped returns a *DroppedError: records records dropped for reason,
// because of err (may be nil).
func Dropped(reason string, records int, err error) error {
	return &DroppedError{Reason: reason, Records: records, Err: err}
}

func (e *DroppedError) Error() string {
	s := strconv.Itoa(e.Records) + " records dropped (" + e.Reason + ")"
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *DroppedError) Unwrap() error { return e.Err }

// Drops walks err's tree (wrapped and joined errors) and calls fn with each
// *DroppedError in it. It reports whether err holds only drops, that is
// whether the batch was otherwise delivered: false for nil, or when some
// leaf of the tree is an error other than a *DroppedError (the batch
// failed).
func Drops(err error, fn func(reason string, records int)) (partial bool) {
	if err == nil {
		return false
	}
	return walkDrops(err, fn)
}

func walkDrops(err error, fn func(string, int)) bool {
	switch e := err.(type) {
	case *DroppedError:
		fn(e.Reason, e.Records)
		return true
	case interface{ Unwrap() []error }:
		only := true
		for _, c := range e.Unwrap() {
			if c != nil && !walkDrops(c, fn) {
				only = false
			}
		}
		return only
	}
	if c := errors.Unwrap(err); c != nil {
		return walkDrops(c, fn)
	}
	return false
}

// Outcome is how a [Deferred] exporter reports what became of the records
// it accepted, once it knows. Its methods are safe for concurrent use and
// cheap (atomic adds).
type Outcome interface {
	// Delivered counts records the peer accepted.
	Delivered(records int)
	// Dropped counts records dropped for reason (see [DropReasons]).
	Dropped(reason string, records int)
}

// Deferred is implemented by exporters that buffer records and deliver
// them after Export returned (database and Kafka exporters). The engine
// calls SetOutcome once, before Start. For such an exporter the engine
// counts a record as out only when the exporter reports it through
// Outcome.Delivered, and as dropped when it reports Outcome.Dropped or
// returns a [DroppedError] from Export; so, for its stage,
// in = out + dropped + errored + what it still buffers. When Export fails
// (an error other than drops) the engine counts the batch's records as
// errored: the exporter must then not report them through Outcome.
type Deferred interface {
	SetOutcome(Outcome)
}

// NopOutcome discards what it is told; the zero value of a Deferred
// exporter's outcome before SetOutcome.
type NopOutcome struct{}

// Delivered does nothing.
func (NopOutcome) Delivered(int) {}

// Dropped does nothing.
func (NopOutcome) Dropped(string, int) {}
