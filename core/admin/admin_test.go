package admin_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weir-flow/weir/core/admin"
	"github.com/weir-flow/weir/core/pipeline"
)

func get(t *testing.T, method, url string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestServer(t *testing.T) {
	for _, pprof := range []bool{false, true} {
		reg := prometheus.NewRegistry()
		reg.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "weir_test_total", Help: "x"}))
		s, err := admin.Listen(admin.Options{Address: "127.0.0.1:0", Pprof: pprof, Gatherer: reg, Version: "weir test"})
		if err != nil {
			t.Fatal(err)
		}
		go s.Serve()
		t.Cleanup(func() { s.Close() })
		base := "http://" + s.Addr().String()
		var ready error = errors.New("sources[0]: not listening")
		type step struct {
			name, method, path string
			code               int
			want               string
		}
		check := func(steps []step) {
			t.Helper()
			for _, st := range steps {
				code, body := get(t, st.method, base+st.path)
				if code != st.code || !strings.Contains(body, st.want) {
					t.Errorf("pprof=%v %s: %s %s = %d %q, want %d with %q", pprof, st.name, st.method, st.path, code, body, st.code, st.want)
				}
			}
		}
		check([]step{
			{"before start", "GET", "/readyz", 503, "not ready: starting"},
			{"alive before start", "GET", "/healthz", 200, "ok"},
			{"metrics", "GET", "/metrics", 200, "weir_test_total 0"},
			{"reload before start", "POST", "/-/reload", 503, "not running"},
		})
		s.SetPipeline(&admin.Status{Name: "main", Ready: func() error { return ready },
			Stats: func() []pipeline.Snapshot {
				return []pipeline.Snapshot{{Stage: "in", Plugin: "source.ipfix", Kind: "source", In: 5, Out: 5},
					{Stage: "edge", Plugin: "filter.protocol", Kind: "processor", In: 5, Out: 3, Filtered: 2, Nanos: 500},
					{Stage: "exporters[0]", Plugin: "export.jsonl", Kind: "exporter", In: 3, Out: 3}}
			}})
		s.SetReload(func(context.Context) (string, error) { return "reloaded: kept 3", nil })
		check([]step{
			{"stage not ready", "GET", "/readyz", 503, "not ready: sources[0]: not listening"},
		})
		ready = nil
		pprofCode, pprofWant := 404, "404"
		if pprof {
			pprofCode, pprofWant = 200, "goroutine"
		}
		check([]step{
			{"running", "GET", "/readyz", 200, "ready"},
			{"status page", "GET", "/", 200, `<b>edge</b><small>filter.protocol</small>`},
			{"reload", "POST", "/-/reload", 200, "reloaded: kept 3"},
			{"reload by GET", "GET", "/-/reload", 405, ""},
			{"unknown path", "GET", "/anything", 404, "404"},
			{"metrics subpath", "GET", "/metrics/x", 404, "404"},
			{"pprof", "GET", "/debug/pprof/", pprofCode, pprofWant},
		})
		s.SetNotReady("shutting down")
		check([]step{
			{"shutting down", "GET", "/readyz", 503, "not ready: shutting down"},
			{"alive while shutting down", "GET", "/healthz", 200, "ok"},
		})
	}
}
