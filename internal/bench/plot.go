//go:build !weir_noplot

package bench

import (
	"errors"
	"fmt"
	"image/color"
	"math"
	"path/filepath"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
)

// ErrPlotFormat is returned by [Report.Plot] for a file name whose
// extension is not a format the plot library writes.
var ErrPlotFormat = errors.New("unsupported plot format (want .svg, .png, .pdf, .eps, .jpg or .tif)")

// Plot draws the report's per-stage cost as a bar chart — ns/record p50 and
// p99 for every stage and for the whole chain (the median round; both
// chains for a comparison) — and saves it to path, in the format its
// extension names (.svg, .png, .pdf, .eps, .jpg, .tif).
func (r *Report) Plot(path string) error {
	ext := strings.ToLower(strings.TrimPrefix(filepath.Ext(path), "."))
	switch ext {
	case "svg", "png", "pdf", "eps", "jpg", "jpeg", "tif", "tiff":
	default:
		return fmt.Errorf("plot %s: %w", path, ErrPlotFormat)
	}
	var (
		labels   []string
		p50, p99 plotter.Values
		title    string
	)
	addRun := func(prefix string, res *Result) {
		for i := range res.Stages {
			s := &res.Stages[i]
			labels = append(labels, stageLabel(prefix, s))
			p50 = append(p50, s.NsPerRecordP50)
			p99 = append(p99, s.NsPerRecordP99)
		}
		labels = append(labels, stageLabel(prefix, &res.Total))
		p50 = append(p50, res.Total.NsPerRecordP50)
		p99 = append(p99, res.Total.NsPerRecordP99)
	}
	switch {
	case r.Comparison != nil:
		med := r.Comparison.Median()
		if med.Base == nil {
			return fmt.Errorf("plot %s: comparison has no rounds", path)
		}
		addRun("base", med.Base)
		addRun("other", med.Other)
		title = fmt.Sprintf("weir bench: %s vs %s (batch %d; other/base %.2f×)",
			filepath.Base(r.Comparison.Base), filepath.Base(r.Comparison.Other), med.Base.BatchSize, r.Comparison.Ratio.Median)
	case len(r.Runs) > 0:
		res := medianRun(r.Runs)
		addRun("", res)
		title = fmt.Sprintf("weir bench: %s (batch %d)", filepath.Base(res.Chain), res.BatchSize)
	default:
		return fmt.Errorf("plot %s: report has no run", path)
	}

	p := plot.New()
	p.Title.Text = title
	p.Title.Padding = vg.Points(8)
	p.Y.Label.Text = "ns/record"
	// Room above the tallest bar for the legend, and beside the outer
	// bars, which the axis range (category positions only) would clip.
	top := 0.0
	for _, v := range p99 {
		top = max(top, v)
	}
	for _, v := range p50 {
		top = max(top, v)
	}
	p.Y.Min, p.Y.Max = 0, max(1, top*1.25)
	p.X.Min, p.X.Max = -0.6, float64(len(labels))-0.4
	w := vg.Points(24)
	bars50, err := plotter.NewBarChart(p50, w)
	if err != nil {
		return fmt.Errorf("plot %s: %w", path, err)
	}
	bars50.Color = color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}
	bars50.LineStyle.Width = 0
	bars50.Offset = -w / 2
	bars99, err := plotter.NewBarChart(p99, w)
	if err != nil {
		return fmt.Errorf("plot %s: %w", path, err)
	}
	bars99.Color = color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff}
	bars99.LineStyle.Width = 0
	bars99.Offset = w / 2
	p.Add(bars50, bars99, plotter.NewGrid())
	p.Legend.Add("p50", bars50)
	p.Legend.Add("p99", bars99)
	p.Legend.Top = true
	p.NominalX(labels...)
	if len(labels) > 3 {
		p.X.Tick.Label.Rotation = math.Pi / 8
		p.X.Tick.Label.XAlign = text.XRight // labels end under their bar
		p.X.Tick.Label.YAlign = text.YCenter
	}
	width := vg.Length(max(6, 1.3*float64(len(labels))+2)) * vg.Inch
	if err := p.Save(width, 4*vg.Inch, path); err != nil {
		return fmt.Errorf("plot %s: %w", path, err)
	}
	return nil
}
