//go:build weir_noplot

package bench

import (
	"errors"
	"fmt"
)

// ErrPlotFormat is returned by [Report.Plot] for a file name whose
// extension is not a format the plot library writes.
var ErrPlotFormat = errors.New("unsupported plot format (want .svg, .png, .pdf, .eps, .jpg or .tif)")

// ErrNoPlot is returned by [Report.Plot] in a binary built with the
// weir_noplot tag, which leaves the plot library out.
var ErrNoPlot = errors.New("this weir was built without plots (-tags weir_noplot)")

// Plot fails: see [ErrNoPlot].
func (r *Report) Plot(path string) error { return fmt.Errorf("plot %s: %w", path, ErrNoPlot) }
