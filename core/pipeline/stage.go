package pipeline

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weir-flow/weir/core/config"
)

// stageMetrics is the Registerer a plugin instance gets: it remembers what
// the instance registered so a reload can unregister it when the instance
// goes, and, for an instance built by a reload, holds the registrations
// back (checked against a scratch registry) until the instance it replaces
// has unregistered the same names.
type stageMetrics struct {
	reg        prometheus.Registerer
	mu         sync.Mutex
	scratch    *prometheus.Registry // non-nil while registrations are held back
	pending    []prometheus.Collector
	registered []prometheus.Collector
}

func newStageMetrics(reg prometheus.Registerer, deferred bool) *stageMetrics {
	m := &stageMetrics{reg: reg}
	if deferred {
		m.scratch = prometheus.NewRegistry()
	}
	return m
}

func (m *stageMetrics) Register(c prometheus.Collector) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.scratch != nil {
		if err := m.scratch.Register(c); err != nil {
			return err
		}
		m.pending = append(m.pending, c)
		return nil
	}
	if err := m.reg.Register(c); err != nil {
		return err
	}
	m.registered = append(m.registered, c)
	return nil
}

func (m *stageMetrics) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := m.Register(c); err != nil {
			panic(err)
		}
	}
}

func (m *stageMetrics) Unregister(c prometheus.Collector) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.scratch != nil {
		return m.scratch.Unregister(c)
	}
	return m.reg.Unregister(c)
}

// commit registers what was held back; a name still taken (by a stage that
// was not replaced) is returned as an error and left out.
func (m *stageMetrics) commit() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.scratch == nil {
		return nil
	}
	var first error
	for _, c := range m.pending {
		if err := m.reg.Register(c); err != nil {
			if first == nil {
				first = err
			}
			continue
		}
		m.registered = append(m.registered, c)
	}
	m.scratch, m.pending = nil, nil
	return first
}

// unregisterAll removes every metric the instance registered.
func (m *stageMetrics) unregisterAll() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, c := range m.registered {
		m.reg.Unregister(c)
	}
	m.registered, m.pending = nil, nil
}

// filesDigest hashes the content of the files a stage's config depends on
// ([config.Files]), so a reload replaces a stage whose WASM module or RPC
// binary was rebuilt. "" when the config names no file; a file that cannot
// be read hashes as its error, so it differs from any content.
func filesDigest(s config.Stage, baseDir string) string {
	f, ok := s.Config.(config.Files)
	if !ok {
		return ""
	}
	h := sha256.New()
	for _, path := range f.Files(baseDir) {
		io.WriteString(h, path)
		h.Write([]byte{0})
		if fh, err := os.Open(path); err != nil {
			io.WriteString(h, err.Error())
		} else {
			_, err := io.Copy(h, fh)
			fh.Close()
			if err != nil {
				io.WriteString(h, err.Error())
			}
		}
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}

var _ prometheus.Registerer = (*stageMetrics)(nil)
