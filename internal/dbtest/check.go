package dbtest

import (
	"context"
	"testing"
	"time"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/internal/flowtable"
	"github.com/weir-flow/weir/internal/sinkbuf"
)

// Row reads back the row with an id (see [ID]): one string per column of
// cols, formatted as [Expected] formats them.
type Row func(id int) ([]string, error)

// SpotCheck compares every column of the rows with ids, read by row, with
// the records of b. postgres selects Expected's PostgreSQL formatting.
func SpotCheck(t *testing.T, cols []flowtable.Column, b *flow.Batch, postgres bool, row Row, ids ...int) {
	t.Helper()
	recs := map[int]*flow.Record{}
	for _, r := range b.Records {
		recs[ID(r)] = r
	}
	for _, id := range ids {
		got, err := row(id)
		if err != nil {
			t.Fatalf("row %d: %v", id, err)
		}
		for i := range cols {
			if want := Expected(&cols[i], recs[id], postgres); got[i] != want {
				t.Errorf("row %d: %s = %q, want %q", id, cols[i].Name, got[i], want)
			}
		}
	}
}

// Scan returns n strings and the pointers a driver's Scan fills them
// through.
func Scan(n int) ([]string, []any) {
	got := make([]string, n)
	dest := make([]any, n)
	for i := range got {
		dest[i] = &got[i]
	}
	return got, dest
}

// Exporter is what the database exporters (through [sinkbuf.Sink]) offer
// a test.
type Exporter interface {
	Export(ctx context.Context, b *flow.Batch) error
	Buffer() *sinkbuf.Buffer
}

// Feed exports recs in pipeline-sized batches of 256 and waits until the
// exporter has inserted them all; it returns the time that took.
func Feed(tb testing.TB, e Exporter, recs *flow.Batch) time.Duration {
	tb.Helper()
	n := uint64(recs.Len())
	before := e.Buffer().Inserted()
	start := time.Now()
	for j := 0; j < recs.Len(); j += 256 {
		if err := e.Export(context.Background(), &flow.Batch{Records: recs.Records[j:min(j+256, recs.Len())]}); err != nil {
			tb.Fatal(err)
		}
	}
	for e.Buffer().Inserted() < before+n {
		time.Sleep(100 * time.Microsecond)
	}
	return time.Since(start)
}
