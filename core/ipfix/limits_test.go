package ipfix

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/internal/cputime"
)

func exporterPort(ip string, port int) netip.AddrPort {
	return netip.AddrPortFrom(netip.MustParseAddr(ip), uint16(port))
}

// TestLimits reproduces issue 12's floods against each limit: what a limit
// refuses is reported as a *LimitError matching ErrLimit and counted, and
// the accounted state never exceeds the limit.
func TestLimits(t *testing.T) {
	small := templateRecord(256, ie(8, 4), ie(12, 4))
	data := set(256, rec(ip("10.0.0.1"), ip("10.0.0.2")))
	for _, tc := range []struct {
		name    string
		lim     Limits
		limit   Limit
		refused uint64
		flood   func(t *testing.T, d *Decoder) []error
		check   func(t *testing.T, u Usage)
	}{
		{
			name: "sessions", lim: Limits{Sessions: 10}, limit: LimitSessions, refused: 990,
			flood: func(t *testing.T, d *Decoder) []error { // 1,000 header-only datagrams from 1,000 ports
				var errs []error
				for p := range 1000 {
					if _, err := d.Decode(flow.NewBatch(0), message(1, 0), exporterPort("10.0.0.1", 1000+p)); err != nil {
						errs = append(errs, err)
					}
				}
				return errs
			},
			check: func(t *testing.T, u Usage) {
				if u.Sessions != 10 {
					t.Errorf("sessions = %d, want 10", u.Sessions)
				}
			},
		},
		{
			name: "sessions_per_exporter", lim: Limits{SessionsPerExporter: 3}, limit: LimitSessionsPerExporter, refused: 7,
			flood: func(t *testing.T, d *Decoder) []error {
				var errs []error
				for p := range 10 {
					if _, err := d.Decode(flow.NewBatch(0), message(1, 0), exporterPort("10.0.0.1", 1000+p)); err != nil {
						errs = append(errs, err)
					}
				}
				// Another exporter still gets in.
				if _, err := d.Decode(flow.NewBatch(0), message(1, 0), exporterPort("10.0.0.2", 1000)); err != nil {
					t.Errorf("second exporter refused: %v", err)
				}
				return errs
			},
			check: func(t *testing.T, u Usage) {
				if u.Sessions != 4 || u.Exporters != 2 {
					t.Errorf("sessions %d of %d exporters, want 4 of 2", u.Sessions, u.Exporters)
				}
			},
		},
		{
			name: "template_fields", lim: Limits{TemplateFields: 1000}, limit: LimitTemplateFields, refused: 1,
			flood: func(t *testing.T, d *Decoder) []error {
				var errs []error
				for _, m := range [][]byte{wideTemplate(300, 16000, 0), message(1, 0, set(setIDTemplate, small))} {
					if _, err := d.Decode(flow.NewBatch(0), m, testExporter); err != nil {
						errs = append(errs, err)
					}
				}
				b := flow.NewBatch(0)
				if n, err := d.Decode(b, message(1, 0, data), testExporter); n != 1 || err != nil {
					t.Errorf("small template after the refused one: %d records, %v", n, err)
				}
				return errs
			},
			check: func(t *testing.T, u Usage) {
				if want := templateCost(2, len(small)); u.TemplateBytes != want {
					t.Errorf("template bytes = %d, want %d (the small template only)", u.TemplateBytes, want)
				}
			},
		},
		{
			name: "templates_per_session", lim: Limits{TemplatesPerSession: 5}, limit: LimitTemplatesPerSession, refused: 95,
			flood: func(t *testing.T, d *Decoder) []error {
				var errs []error
				for id := range 100 {
					m := message(1, 0, set(setIDTemplate, templateRecord(uint16(256+id), ie(8, 4))))
					if _, err := d.Decode(flow.NewBatch(0), m, testExporter); err != nil {
						errs = append(errs, err)
					}
				}
				return errs
			},
			check: func(t *testing.T, u Usage) {
				if want := 5 * templateCost(1, 8); u.TemplateBytes != want {
					t.Errorf("template bytes = %d, want %d", u.TemplateBytes, want)
				}
			},
		},
		{
			name: "template_bytes", lim: Limits{TemplateBytes: 1 << 20}, limit: LimitTemplateBytes, refused: uint64(800 - 1<<20/templateCost(16000, 64000)),
			flood: func(t *testing.T, d *Decoder) []error { // 800 16,000-field templates (51 MB on the wire)
				var errs []error
				for i := range 800 {
					m := wideTemplate(uint16(256+i), 16000, 0)
					if _, err := d.Decode(flow.NewBatch(0), m, exporterPort("10.0.0.1", 1000+i%50)); err != nil {
						errs = append(errs, err)
					}
				}
				return errs
			},
			check: func(t *testing.T, u Usage) {
				if u.TemplateBytes > 1<<20 || u.TemplateBytes == 0 {
					t.Errorf("template bytes = %d, want 1..%d", u.TemplateBytes, 1<<20)
				}
			},
		},
		{
			name: "template_bytes_per_exporter", lim: Limits{TemplateBytesPerExporter: 4096}, limit: LimitTemplateBytesPerExporter, refused: 1,
			flood: func(t *testing.T, d *Decoder) []error {
				_, err := d.Decode(flow.NewBatch(0), wideTemplate(256, 100, 0), testExporter)
				return []error{err}
			},
			check: func(t *testing.T, u Usage) {
				if u.TemplateBytes != 0 {
					t.Errorf("template bytes = %d, want 0", u.TemplateBytes)
				}
			},
		},
		{
			name: "held_bytes", lim: Limits{HeldBytes: 100 << 10}, limit: LimitHeldBytes, refused: uint64(2582 - 100<<10/(16000+heldOverhead)),
			flood: func(t *testing.T, d *Decoder) []error { // data sets for templates never sent, from many sessions
				var errs []error
				body := make([]byte, 16000)
				for i := range 2582 {
					m := message(1, 0, set(uint16(256+i%1000), body))
					if _, err := d.Decode(flow.NewBatch(0), m, exporterPort("10.0.0.1", 1000+i)); err != nil {
						errs = append(errs, err)
					}
				}
				return errs
			},
			check: func(t *testing.T, u Usage) {
				if u.HeldBytes > 100<<10 || u.HeldBytes == 0 {
					t.Errorf("held bytes = %d, want 1..%d", u.HeldBytes, 100<<10)
				}
			},
		},
		{
			name: "held_bytes_per_exporter", lim: Limits{HeldBytesPerExporter: 1000}, limit: LimitHeldBytesPerExporter, refused: 1,
			flood: func(t *testing.T, d *Decoder) []error {
				_, err := d.Decode(flow.NewBatch(0), message(1, 0, set(300, make([]byte, 2000))), testExporter)
				return []error{err}
			},
			check: func(t *testing.T, u Usage) {
				if u.HeldBytes != 0 {
					t.Errorf("held bytes = %d, want 0", u.HeldBytes)
				}
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			budget := NewBudget(tc.lim)
			clk := newClock()
			d := NewDecoder(DecoderOptions{Budget: budget, Now: clk.Now, PendingSets: 1 << 20, PendingBytes: 1 << 30})
			errs := tc.flood(t, d)
			limited := 0
			for _, err := range errs {
				var le *LimitError
				if errors.As(err, &le) {
					limited++
					if le.Limit != tc.limit || !errors.Is(err, ErrLimit) {
						t.Fatalf("error %v: limit %s, want %s", err, le.Limit, tc.limit)
					}
				}
			}
			if got := budget.Refused(tc.limit); got != tc.refused || limited == 0 {
				t.Errorf("refused %d (%d errors), want %d", got, limited, tc.refused)
			}
			tc.check(t, budget.Usage())
			// Everything is returned when the sessions go.
			clk.Advance(time.Hour)
			d.Expire()
			d.Close()
			if u := budget.Usage(); u != (Usage{}) {
				t.Errorf("after Expire and Close: %+v, want nothing accounted", u)
			}
		})
	}
}

// TestIdleSessionsExpireByDefault: a session that holds nothing is
// forgotten after PendingTTL even without TemplateTTL, so a header-only
// flood from many ports does not stay in memory.
func TestIdleSessionsExpireByDefault(t *testing.T) {
	clk := newClock()
	budget := NewBudget(Limits{})
	d := NewDecoder(DecoderOptions{Budget: budget, Now: clk.Now})
	for p := range 1000 {
		d.Decode(flow.NewBatch(0), message(1, 0), exporterPort("10.0.0.1", 1000+p))
	}
	d.Decode(flow.NewBatch(0), message(1, 0, set(setIDTemplate, templateRecord(256, ie(8, 4)))), testExporter)
	if n := budget.Usage().Sessions; n != 1001 {
		t.Fatalf("sessions = %d, want 1001", n)
	}
	clk.Advance(DefaultPendingTTL + time.Second)
	d.Expire()
	if n := budget.Usage().Sessions; n != 1 {
		t.Errorf("sessions after PendingTTL = %d, want 1 (the one with a template)", n)
	}
}

// BenchmarkTemplateRefused is the cost of a 16,000-field template that the
// template_fields limit refuses: parsing only, no compiling.
func BenchmarkTemplateRefused(b *testing.B) {
	msgs := [][]byte{wideTemplate(256, 16000, 0), wideTemplate(256, 16000, 1)}
	d := NewDecoder(DecoderOptions{Budget: NewBudget(Limits{TemplateFields: 1024})})
	batch := flow.NewBatch(0)
	b.ReportAllocs()
	b.ResetTimer()
	cpu := cputime.Start()
	for i := 0; i < b.N; i++ {
		if _, err := d.Decode(batch, msgs[i%2], testExporter); !errors.Is(err, ErrLimit) {
			b.Fatal(err)
		}
	}
	cpu.Report(b, b.N, "op")
}
