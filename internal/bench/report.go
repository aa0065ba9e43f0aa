package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// Report is what `weir bench --json` prints: the runs of one chain, or a
// comparison of two.
type Report struct {
	// Host is the machine the report was made on.
	Host *Host `json:"host,omitempty"`
	// Runs are a single chain's runs, one per round.
	Runs []*Result `json:"runs,omitempty"`
	// RunsNsPerRecord spreads the chain's ns/record over the runs.
	RunsNsPerRecord *Spread `json:"runs_ns_per_record,omitempty"`
	// Comparison is set by --compare.
	Comparison *Comparison `json:"comparison,omitempty"`
}

// WriteJSON writes r as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteText writes r as the tables `weir bench` prints.
func (r *Report) WriteText(w io.Writer) error {
	ew := &errWriter{w: w}
	if r.Host != nil {
		fmt.Fprintf(ew, "host      %s\n", r.Host)
	}
	switch {
	case r.Comparison != nil:
		writeComparison(ew, r.Comparison)
	case len(r.Runs) > 0:
		res := medianRun(r.Runs)
		writeHeader(ew, res)
		if len(r.Runs) > 1 {
			sp := r.RunsNsPerRecord
			if sp == nil {
				s := runsSpread(r.Runs)
				sp = &s
			}
			fmt.Fprintf(ew, "rounds    %d; chain ns/record median %s (min %s, max %s; mean %s ± %s); the table is the median round\n",
				sp.N, ns(sp.Median), ns(sp.Min), ns(sp.Max), ns(sp.Mean), ns(sp.Stddev))
		}
		fmt.Fprintln(ew)
		WriteTable(ew, res)
	}
	return ew.err
}

// runsSpread spreads the chain ns/record of runs.
func runsSpread(runs []*Result) Spread {
	xs := make([]float64, len(runs))
	for i, r := range runs {
		xs[i] = r.Total.NsPerRecord
	}
	return NewSpread(xs)
}

// medianRun returns the run with the median chain ns/record.
func medianRun(runs []*Result) *Result {
	best, bestDist := runs[0], -1.0
	med := runsSpread(runs).Median
	for _, r := range runs {
		d := r.Total.NsPerRecord - med
		if d < 0 {
			d = -d
		}
		if bestDist < 0 || d < bestDist {
			best, bestDist = r, d
		}
	}
	return best
}

func writeHeader(w io.Writer, res *Result) {
	fmt.Fprintf(w, "chain     %s\n", res.Chain)
	fmt.Fprintf(w, "input     %s\n", res.Input)
	io := "sources replaced by the feeder, exporters by a counting sink"
	if res.WithIO {
		io = "sources replaced by the feeder, configured exporters included"
	}
	fmt.Fprintf(w, "fed       %d records in %d batches of %d (after %d warm-up records), 1 goroutine, %.2fs wall; %s\n",
		res.Records, res.Batches, res.BatchSize, res.WarmupRecords, res.WallSeconds, io)
}

// WriteTable writes one run's per-stage table, its memory line and any
// stage errors.
func WriteTable(w io.Writer, res *Result) {
	t := &table{left: 2}
	t.add("stage", "plugin", "in", "out", "dropped", "records/s", "ns/rec", "p50", "p99", "allocs/rec", "B/rec")
	row := func(s *StageResult) {
		t.add(s.Name, s.Plugin, fmt.Sprint(s.In), fmt.Sprint(s.Out), fmt.Sprint(s.Dropped), si(s.RecordsPerSecond),
			ns(s.NsPerRecord), ns(s.NsPerRecordP50), ns(s.NsPerRecordP99),
			fmt.Sprintf("%.2f", s.AllocsPerRecord), fmt.Sprintf("%.0f", s.BytesPerRecord))
	}
	for i := range res.Stages {
		row(&res.Stages[i])
	}
	row(&res.Total)
	t.add("sink", "", fmt.Sprint(res.Sink.Records))
	t.write(w)
	m := res.Memory
	rss := "unknown"
	if m.PeakRSSBytes > 0 {
		rss = mib(m.PeakRSSBytes)
		if !m.PeakRSSReset {
			rss += " (since process start)"
		}
	}
	fmt.Fprintf(w, "memory    peak RSS %s, peak Go heap %s\n", rss, mib(m.PeakHeapBytes))
	for _, s := range res.Stages {
		if s.Errored > 0 {
			fmt.Fprintf(w, "warning   %s (%s) failed on batches of %d records, passed on as left: %s\n", s.Name, s.Plugin, s.Errored, s.FirstError)
		}
	}
}

// table aligns columns: the first left ones to the left, the rest (numbers)
// to the right.
type table struct {
	left int
	rows [][]string
}

func (t *table) add(cells ...string) { t.rows = append(t.rows, cells) }

func (t *table) write(w io.Writer) {
	var widths []int
	for _, r := range t.rows {
		for i, c := range r {
			if i >= len(widths) {
				widths = append(widths, 0)
			}
			widths[i] = max(widths[i], utf8.RuneCountInString(c))
		}
	}
	for _, r := range t.rows {
		var b strings.Builder
		for i, c := range r {
			pad := strings.Repeat(" ", widths[i]-utf8.RuneCountInString(c))
			if i > 0 {
				b.WriteString("  ")
			}
			if i < t.left {
				b.WriteString(c)
				if i < len(r)-1 {
					b.WriteString(pad)
				}
			} else {
				b.WriteString(pad)
				b.WriteString(c)
			}
		}
		fmt.Fprintln(w, b.String())
	}
}

func writeComparison(w io.Writer, c *Comparison) {
	med := c.Median()
	fmt.Fprintf(w, "base      %s\n", c.Base)
	fmt.Fprintf(w, "other     %s\n", c.Other)
	if med.Base != nil {
		fmt.Fprintf(w, "input     %s\n", med.Base.Input)
		fed := fmt.Sprintf("%d records per chain", med.Base.Records)
		if med.Other.Records != med.Base.Records {
			fed = fmt.Sprintf("%d (base) and %d (other) records", med.Base.Records, med.Other.Records)
		}
		size := fmt.Sprint(med.Base.BatchSize)
		if med.Other.BatchSize != med.Base.BatchSize {
			size = fmt.Sprintf("%d (base) and %d (other)", med.Base.BatchSize, med.Other.BatchSize)
		}
		fmt.Fprintf(w, "rounds    %d of %s in batches of %s, the chains fed alternately batch by batch\n",
			len(c.Rounds), fed, size)
	}
	fmt.Fprintln(w)
	t := &table{}
	t.add("round", "base p50", "other p50", "ratio", "base mean", "other mean", "mean ratio")
	for i, r := range c.Rounds {
		t.add(fmt.Sprint(i+1), ns(r.Base.Total.NsPerRecordP50), ns(r.Other.Total.NsPerRecordP50), fmt.Sprintf("%.3f×", r.Ratio),
			ns(r.Base.Total.NsPerRecord), ns(r.Other.Total.NsPerRecord), fmt.Sprintf("%.3f×", r.RatioMean))
	}
	t.write(w)
	fmt.Fprintln(w, "          (chain ns/record: p50 over batches, and mean = total time / records)")
	sp := c.Ratio
	fmt.Fprintf(w, "\nratio     other/base %.3f× (p50 ns/record, median of %d rounds; min %.3f×, max %.3f×; mean %.3f ± %.3f)\n",
		sp.Median, sp.N, sp.Min, sp.Max, sp.Mean, sp.Stddev)
	sp = c.RatioMean
	fmt.Fprintf(w, "          %.3f× on mean ns/record (min %.3f×, max %.3f×), which preempted batches inflate\n",
		sp.Median, sp.Min, sp.Max)
	if med.Base == nil {
		return
	}
	fmt.Fprintf(w, "\nbase, median round:\n")
	WriteTable(w, med.Base)
	fmt.Fprintf(w, "\nother, median round:\n")
	WriteTable(w, med.Other)
}

// ns formats nanoseconds per record.
func ns(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.3gms", v/1e6)
	case v >= 1e4:
		return fmt.Sprintf("%.3gµs", v/1e3)
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.1f", v)
}

// si formats a rate with a k/M/G suffix.
func si(v float64) string {
	switch {
	case v >= 1e9:
		return fmt.Sprintf("%.2fG", v/1e9)
	case v >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.1fk", v/1e3)
	}
	return fmt.Sprintf("%.0f", v)
}

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// errWriter keeps the first write error so formatting code stays linear.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return len(p), nil
	}
	n, err := e.w.Write(p)
	e.err = err
	return n, nil
}

// stageLabel names a stage in plots: its position and plugin.
func stageLabel(prefix string, s *StageResult) string {
	parts := []string{}
	if prefix != "" {
		parts = append(parts, prefix)
	}
	if s.Plugin != "" {
		parts = append(parts, s.Plugin)
	} else {
		parts = append(parts, s.Name)
	}
	return strings.Join(parts, ": ")
}
