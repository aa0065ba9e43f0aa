package pipeline

import (
	"context"
	"errors"
	"fmt"
	"reflect"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weir-flow/weir/core/config"
	"github.com/weir-flow/weir/core/plugin"
)

// ReloadResult says what a reload did to each stage, by label
// ("processors[1]", or the stage's name) and plugin ID.
type ReloadResult struct {
	// Kept stages had the same plugin, config and files: they kept
	// running, with their state (templates, tables, plugin instances).
	Kept []string
	// Replaced stages changed; Added and Removed are new and gone labels.
	Replaced, Added, Removed []string
	// RestartOnly lists changed settings a reload does not apply (they
	// take effect at the next start).
	RestartOnly []string
}

// Changed reports whether the reload changed any stage.
func (r ReloadResult) Changed() bool {
	return len(r.Replaced)+len(r.Added)+len(r.Removed) > 0
}

// Reload swaps cfg's stages into the running pipeline without losing or
// duplicating a record:
//
//   - a stage whose plugin ID, config and files ([config.Files]) are
//     unchanged at the same label (its name, or its position) keeps running;
//   - new and changed processors and exporters are built and started first;
//     if any fails, they are stopped again and the running pipeline is left
//     exactly as it was (the error names each stage);
//   - the processor chain and the exporters are swapped between batches;
//     a replaced processor is shut down once no worker runs it, a replaced
//     exporter drains its queue and flushes before its successor exports
//     (so two writers never interleave in one file or stream);
//   - sources are touched only if their own config changed: the old one
//     drains into the pipeline and stops, then the new one binds and starts.
//     A source that cannot be rebuilt is restored from its old config; if
//     even that fails the pipeline keeps running without it, not ready.
//
// cfg must have passed config.Parse and CheckRun. Engine settings
// (pipeline.name, batch, queue, workers below the current count, telemetry)
// keep their values until restart; RestartOnly lists those that differ.
func (p *Pipeline) Reload(ctx context.Context, cfg *config.Config) (ReloadResult, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var res ReloadResult
	if !p.started || p.stopping.Load() {
		return res, errors.New("reload: the pipeline is not running")
	}
	res.RestartOnly = restartOnly(p.cfg, cfg)
	baseDir := cfg.BaseDir
	same := func(old *stage, s config.Stage) bool {
		return old.cfg.ID == s.ID && old.cfg.OnError == s.OnError && old.baseDir == baseDir &&
			reflect.DeepEqual(old.cfg.Config, s.Config) && old.files == filesDigest(s, baseDir)
	}
	label := func(s config.Stage) string { return s.Label }

	// Build what changed, without touching the running graph.
	var errs []error
	oldProcs := map[string]*processor{}
	for _, pr := range p.g.processors {
		oldProcs[pr.name] = pr
	}
	oldExps := map[string]*exporter{}
	for _, e := range p.g.exporters {
		oldExps[e.name] = e
	}
	next := newGraph()
	var builtProcs []*processor
	var builtExps []*exporter
	keptProc := map[*processor]bool{}
	keptExp := map[*exporter]bool{}
	for _, s := range cfg.Pipeline.Processors {
		if old, ok := oldProcs[label(s)]; ok && same(&old.stage, s) {
			keptProc[old] = true
			next.processors = append(next.processors, old)
			continue
		}
		pr, err := p.buildProcessor(s, baseDir, true)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		builtProcs = append(builtProcs, pr)
		next.processors = append(next.processors, pr)
	}
	// An exporter kept across the reload keeps its queue, so it is rebuilt
	// when its queue's capacity would change (auto depth, and the number of
	// exporters decides whether the queue blocks).
	capacity := cfg.Pipeline.Queue.ExporterCapacity(len(cfg.Pipeline.Exporters))
	for _, s := range cfg.Pipeline.Exporters {
		if old, ok := oldExps[label(s)]; ok && same(&old.stage, s) && cap(old.queue) == capacity {
			keptExp[old] = true
			next.exporters = append(next.exporters, old)
			continue
		}
		e, err := p.buildExporter(s, baseDir, true, capacity)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if old, ok := oldExps[label(s)]; ok {
			e.after = old.gone // export only once the predecessor is gone
		}
		builtExps = append(builtExps, e)
		next.exporters = append(next.exporters, e)
	}
	abandon := func() {
		for _, e := range builtExps {
			if e.started {
				close(e.queue)
				<-e.done
			}
			_ = e.Shutdown(ctx)
		}
		for _, pr := range builtProcs {
			if pr.out != nil {
				pr.out.close() // it never ran in the graph: nothing to flush
			}
			_ = pr.Shutdown(ctx)
		}
		p.forget(builtProcs, builtExps)
	}
	if err := errors.Join(errs...); err != nil {
		abandon()
		return res, fmt.Errorf("reload refused, the running pipeline is unchanged: %w", err)
	}
	for _, e := range builtExps {
		if err := e.Start(ctx); err != nil {
			abandon()
			return res, fmt.Errorf("reload refused, the running pipeline is unchanged: start %s: %w", e.cfg.Path, err)
		}
		e.started = true
		p.startExporter(e)
	}
	for _, pr := range builtProcs {
		if err := pr.Start(ctx); err != nil {
			abandon()
			return res, fmt.Errorf("reload refused, the running pipeline is unchanged: start %s: %w", pr.cfg.Path, err)
		}
	}

	// Swap between batches.
	p.swap.Lock()
	prev := p.g
	p.g = next
	// A replaced or removed Emitting processor flushes, on Shutdown, into
	// the live stages that follow its place in the new graph.
	for i, pr := range prev.processors {
		if pr.out != nil && !keptProc[pr] {
			pr.out.retiredFrom = downstream(prev.processors, i, next.processors)
		}
	}
	for _, pr := range next.processors {
		if keptProc[pr] {
			pr.cfg = cfg.Pipeline.Processors[indexOf(next.processors, pr)]
		}
	}
	p.swap.Unlock()
	p.addWorkers(p.workerCount(next.processors))

	// Retire what is no longer in the graph; no worker runs it any more.
	for _, pr := range prev.processors {
		if keptProc[pr] {
			continue
		}
		if err := pr.Shutdown(ctx); err != nil {
			p.log.Warn("reload: shutdown of a replaced processor", "stage", pr.name, "err", err)
		}
		if pr.out != nil {
			pr.out.close()
		}
		pr.metrics.unregisterAll()
	}
	for _, e := range prev.exporters {
		if keptExp[e] {
			continue
		}
		close(e.queue)
		select {
		case <-e.done:
		case <-ctx.Done():
			p.log.Warn("reload: a replaced exporter did not drain in time", "stage", e.name, "err", ctx.Err())
		}
		if err := e.Shutdown(ctx); err != nil {
			p.log.Warn("reload: shutdown of a replaced exporter", "stage", e.name, "err", err)
		}
		e.metrics.unregisterAll()
		close(e.gone)
	}
	for _, pr := range builtProcs {
		if err := pr.metrics.commit(); err != nil {
			p.log.Warn("reload: plugin metrics", "stage", pr.name, "err", err)
		}
	}
	for _, e := range builtExps {
		if err := e.metrics.commit(); err != nil {
			p.log.Warn("reload: plugin metrics", "stage", e.name, "err", err)
		}
	}

	// Sources: only those whose own config changed.
	oldSrcs := map[string]*source{}
	for _, s := range p.sources {
		oldSrcs[s.name] = s
	}
	var sources []*source
	keptSrc := map[*source]bool{}
	var toBuild []config.Stage
	// A push-down source applied the old first processor's selection
	// itself (plugin.Pushdown, once before Start): it is rebuilt when that
	// processor changed.
	firstChanged := len(prev.processors) != len(next.processors) ||
		(len(next.processors) > 0 && prev.processors[0] != next.processors[0])
	for _, s := range cfg.Pipeline.Sources {
		if old, ok := oldSrcs[label(s)]; ok && same(&old.stage, s) {
			if _, pd := old.Source.(plugin.Pushdown); pd && firstChanged {
				toBuild = append(toBuild, s)
				continue
			}
			keptSrc[old] = true
			old.cfg = s
			continue
		}
		toBuild = append(toBuild, s)
	}
	for _, s := range p.sources {
		if keptSrc[s] {
			continue
		}
		if err := s.Shutdown(ctx); err != nil {
			p.log.Warn("reload: shutdown of a replaced source", "stage", s.name, "err", err)
		}
		s.metrics.unregisterAll()
	}
	var srcErrs []error
	built := map[string]*source{}
	for _, s := range toBuild {
		src, err := p.startSource(ctx, s, baseDir)
		if err != nil {
			srcErrs = append(srcErrs, err)
			if old, ok := oldSrcs[label(s)]; ok {
				// Put the old one back: same config, same port.
				if src, err = p.startSource(ctx, old.cfg, old.baseDir); err != nil {
					srcErrs = append(srcErrs, fmt.Errorf("restore %s: %w", old.cfg.Path, err))
					continue
				}
			} else {
				continue
			}
		}
		built[label(s)] = src
	}
	for _, s := range cfg.Pipeline.Sources {
		if old, ok := oldSrcs[label(s)]; ok && keptSrc[old] {
			sources = append(sources, old)
		} else if src, ok := built[label(s)]; ok {
			sources = append(sources, src)
		}
	}
	p.sources = sources
	p.updateView()

	// Report.
	newLabels := map[string]bool{}
	for _, st := range p.stages() {
		newLabels[st.name] = true
	}
	for _, st := range p.stages() {
		id := st.name + " (" + st.cfg.ID + ")"
		_, wasProc := oldProcs[st.name]
		_, wasExp := oldExps[st.name]
		_, wasSrc := oldSrcs[st.name]
		switch {
		case isKept(st, keptProc, keptExp, keptSrc):
			res.Kept = append(res.Kept, id)
		case wasProc || wasExp || wasSrc:
			res.Replaced = append(res.Replaced, id)
		default:
			res.Added = append(res.Added, id)
		}
	}
	for _, pr := range prev.processors {
		if !newLabels[pr.name] {
			res.Removed = append(res.Removed, pr.name+" ("+pr.cfg.ID+")")
		}
	}
	for _, e := range prev.exporters {
		if !newLabels[e.name] {
			res.Removed = append(res.Removed, e.name+" ("+e.cfg.ID+")")
		}
	}
	for name, s := range oldSrcs {
		if !newLabels[name] {
			res.Removed = append(res.Removed, name+" ("+s.cfg.ID+")")
		}
	}
	p.dropUnusedStats()
	if err := errors.Join(srcErrs...); err != nil {
		p.notReady = fmt.Errorf("reload: %w", err)
		return res, fmt.Errorf("reload applied, but sources failed: %w", err)
	}
	p.notReady = nil
	return res, nil
}

// startSource builds and starts one source for Reload.
func (p *Pipeline) startSource(ctx context.Context, s config.Stage, baseDir string) (*source, error) {
	src, err := p.buildSource(s, baseDir, false)
	if err != nil {
		return nil, err
	}
	p.pushDown(src, p.g)
	if err := src.Start(ctx, &emitter{p: p, stats: src.stats}); err != nil {
		_ = src.Shutdown(ctx)
		src.metrics.unregisterAll()
		return nil, fmt.Errorf("start %s: %w", s.Path, err)
	}
	return src, nil
}

func isKept(st *stage, procs map[*processor]bool, exps map[*exporter]bool, srcs map[*source]bool) bool {
	for pr := range procs {
		if &pr.stage == st {
			return true
		}
	}
	for e := range exps {
		if &e.stage == st {
			return true
		}
	}
	for s := range srcs {
		if &s.stage == st {
			return true
		}
	}
	return false
}

// downstream is the index in next of the first processor that takes the
// records of prev[i] once prev[i] is retired: after its replacement (same
// label) if it has one, else the first later processor of prev still in
// next (kept, or replaced under the same label), else len(next) (only the
// exporters).
func downstream(prev []*processor, i int, next []*processor) int {
	at := func(name string) int {
		for j, pr := range next {
			if pr.name == name {
				return j
			}
		}
		return -1
	}
	if j := at(prev[i].name); j >= 0 {
		return j + 1
	}
	for _, pr := range prev[i+1:] {
		if j := at(pr.name); j >= 0 {
			return j
		}
	}
	return len(next)
}

func indexOf[T comparable](s []T, v T) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

// forget drops the counters of stages built by a refused reload, unless a
// running stage shares them.
func (p *Pipeline) forget(procs []*processor, exps []*exporter) {
	for _, pr := range procs {
		pr.metrics.unregisterAll()
	}
	for _, e := range exps {
		e.metrics.unregisterAll()
	}
	p.dropUnusedStats()
}

// dropUnusedStats forgets the counters and duration series of stages that
// no longer run; the caller holds p.mu and has updated the view.
func (p *Pipeline) dropUnusedStats() {
	used := map[*StageStats]bool{}
	for _, st := range p.stages() {
		used[st.stats] = true
	}
	for key, s := range p.stats {
		if !used[s] {
			delete(p.stats, key)
			p.hist.Delete(prometheus.Labels{"pipeline": p.name, "stage": s.Stage, "plugin": s.Plugin})
		}
	}
}

// restartOnly lists the engine settings that differ between the running
// config and next; a reload leaves them as they are.
func restartOnly(cur, next *config.Config) []string {
	var out []string
	check := func(key string, a, b any) {
		if !reflect.DeepEqual(a, b) {
			out = append(out, key)
		}
	}
	check("pipeline.name", cur.Pipeline.Name, next.Pipeline.Name)
	check("pipeline.batch", cur.Pipeline.Batch, next.Pipeline.Batch)
	check("pipeline.queue", cur.Pipeline.Queue, next.Pipeline.Queue)
	check("telemetry", cur.Telemetry, next.Telemetry)
	check("log.format", cur.Log.Format, next.Log.Format)
	if next.Pipeline.Workers != cur.Pipeline.Workers {
		out = append(out, "pipeline.workers")
	}
	return out
}
