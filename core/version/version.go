// Package version reports what Weir binary this is, from the build
// information the Go toolchain embeds (runtime/debug.ReadBuildInfo): module
// version, VCS revision and time, and Go version.
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
)

// Info describes the running binary.
type Info struct {
	// Version is the main module's version: a tag, a pseudo-version, or
	// "(devel)" for a build from a work tree without VCS information.
	Version string
	// Revision is the VCS commit (vcs.revision), "" when unknown; Modified
	// is set when the work tree had uncommitted changes (vcs.modified).
	Revision string
	Modified bool
	// Time is the commit time, RFC 3339 (vcs.time), "" when unknown.
	Time string
	// GoVersion is the toolchain that built the binary, e.g. "go1.26.8".
	GoVersion string
	// Tags are the build tags (-tags), "" for none.
	Tags string
}

// revision is set with -ldflags "-X …/core/version.revision=…" by the
// Makefile, for builds the toolchain does not stamp (a git worktree).
var revision string

// Get reads the build information of the running binary.
func Get() Info {
	info := Info{Version: "(devel)", GoVersion: runtime.Version()}
	info.Revision = revision
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return info
	}
	if bi.Main.Version != "" {
		info.Version = bi.Main.Version
	}
	info.GoVersion = bi.GoVersion
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			info.Revision = s.Value
		case "vcs.time":
			info.Time = s.Value
		case "vcs.modified":
			info.Modified = s.Value == "true"
		case "-tags":
			info.Tags = s.Value
		}
	}
	return info
}

// String is one line: "weir v1.2.3 (revision abc123, 2026-01-02T03:04:05Z,
// modified) go1.26.8".
func (i Info) String() string {
	s := "weir " + i.Version
	if i.Revision != "" {
		s += " (revision " + i.Revision
		if i.Time != "" {
			s += ", " + i.Time
		}
		if i.Modified {
			s += ", modified"
		}
		s += ")"
	}
	s += " " + i.GoVersion
	if i.Tags != "" {
		s += fmt.Sprintf(" tags=%s", i.Tags)
	}
	return s
}

// Collector returns the weir_build_info gauge: always 1, labelled version,
// revision and goversion, as Prometheus' own build_info metrics are.
func Collector(i Info) prometheus.Collector {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "weir_build_info",
		Help: "Always 1; the labels describe the running binary.",
		ConstLabels: prometheus.Labels{
			"version":   i.Version,
			"revision":  i.Revision,
			"goversion": i.GoVersion,
		},
	})
	g.Set(1)
	return g
}
