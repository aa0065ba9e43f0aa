// Package hostile reproduces, against the real weir binary, the attacks
// and failures of issue 12: hostile exporters (oversized records, template
// and session floods, idle TCP connections) and failing neighbours (a full
// socket backlog at SIGTERM). Memory bounds are asserted from the
// process's RSS against the configured limits, never from timings.
package hostile

import (
	"testing"

	"github.com/weir-flow/weir/test/weirtest"
)

var weirBin string

func TestMain(m *testing.M) { weirtest.Main(m, &weirBin) }

type weirProc = weirtest.Proc

// startWeir runs weir on yaml with args added to `weir run -c FILE` (see
// weirtest.Start) and waits until the pipeline runs.
func startWeir(t *testing.T, yaml string, args ...string) *weirProc {
	t.Helper()
	return weirtest.Start(t, weirBin, yaml, nil, args...)
}
