package admin

import (
	"html/template"
	"net/http"
	"time"

	"github.com/weir-flow/weir/core/pipeline"
)

var statusTmpl = template.Must(template.New("status").Funcs(template.FuncMap{
	"nsPerRecord": func(s pipeline.Snapshot) uint64 { return s.Nanos / s.In },
}).Parse(`<!doctype html>
<html><head><meta charset="utf-8"><meta http-equiv="refresh" content="5">
<title>Weir: {{.Name}}</title>
<style>
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
.graph{display:flex;align-items:flex-start;gap:.5em;flex-wrap:wrap}
.col{display:flex;flex-direction:column;gap:.5em}
.arrow{align-self:center;font-size:2em;color:#888}
.stage{border:1px solid #888;border-radius:6px;padding:.4em .7em;min-width:12em}
.stage b{display:block}.stage small{color:#666}
table{border-collapse:collapse;margin-top:1.5em}td,th{border:1px solid #ccc;padding:.2em .6em;text-align:right}
td:first-child,td:nth-child(2),th{text-align:left}
</style></head><body>
<h1>Weir pipeline “{{.Name}}”</h1>
<p>{{.Version}} · up {{.Uptime}} · {{if .NotReady}}<b>not ready: {{.NotReady}}</b>{{else}}ready{{end}} · reloads: {{.Reloads}} ·
<a href="/metrics">metrics</a> · <a href="/healthz">healthz</a> · <a href="/readyz">readyz</a>{{if .Pprof}} · <a href="/debug/pprof/">pprof</a>{{end}}</p>
<div class="graph">
{{range $i, $col := .Columns}}{{if $i}}<div class="arrow">→</div>{{end}}<div class="col">
{{range $col}}<div class="stage"><b>{{.Stage}}</b><small>{{.Plugin}}</small><br>in {{.In}} · out {{.Out}}</div>
{{end}}</div>{{end}}
</div>
<table><tr><th>stage</th><th>plugin</th><th>in</th><th>out</th><th>filtered</th><th>errored</th><th>queue_full</th><th>batches</th><th>ns/record</th></tr>
{{range .Stages}}<tr><td>{{.Stage}}</td><td>{{.Plugin}}</td><td>{{.In}}</td><td>{{.Out}}</td><td>{{.Filtered}}</td><td>{{.Errored}}</td><td>{{.Overflow}}</td><td>{{.Batches}}</td><td>{{if .In}}{{nsPerRecord .}}{{end}}</td></tr>
{{end}}</table>
</body></html>
`))

type statusView struct {
	Name, Version, Uptime, NotReady string
	Reloads                         uint64
	Pprof                           bool
	Columns                         [][]pipeline.Snapshot
	Stages                          []pipeline.Snapshot
}

func (s *Server) statusPage(w http.ResponseWriter, _ *http.Request) {
	v := statusView{
		Version: s.opts.Version,
		Uptime:  time.Since(s.started).Truncate(time.Second).String(),
		Reloads: s.reloads.Load(),
		Pprof:   s.opts.Pprof,
	}
	if err := s.ready(); err != nil {
		v.NotReady = err.Error()
	}
	if st := s.status.Load(); st != nil {
		v.Name = st.Name
		if st.Stats != nil {
			v.Stages = st.Stats()
		}
	}
	byKind := map[string][]pipeline.Snapshot{}
	for _, sn := range v.Stages {
		byKind[sn.Kind] = append(byKind[sn.Kind], sn)
	}
	for _, k := range []string{"source", "processor", "exporter"} {
		if k == "processor" {
			// The chain runs in order: one column per processor.
			for _, sn := range byKind[k] {
				v.Columns = append(v.Columns, []pipeline.Snapshot{sn})
			}
			continue
		}
		if len(byKind[k]) > 0 {
			v.Columns = append(v.Columns, byKind[k])
		}
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := statusTmpl.Execute(w, v); err != nil {
		s.opts.Logger.Warn("status page", "err", err)
	}
}
