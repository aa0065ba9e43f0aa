package podlabels

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// ErrFileFormat is returned for a file that holds no Kubernetes object
// this plugin reads.
var ErrFileFormat = errors.New("not a Kubernetes object file")

// decoder decodes core/v1 objects and lists, YAML or JSON. It is immutable.
var decoder = func() runtime.Decoder {
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		panic(err) // static scheme registration
	}
	return serializer.NewCodecFactory(scheme).UniversalDeserializer()
}()

// cluster is the content of a file, ready for the store.
type cluster struct {
	pods      map[string]*podInfo
	nodes     map[string][]netip.Addr
	services  map[string][]svcPort
	truncated int
	ignored   int // objects of other kinds
}

// objects is a parsed file: the Pods, Nodes and Services it holds.
type objects struct {
	pods     []*corev1.Pod
	nodes    []*corev1.Node
	services []*corev1.Service
	ignored  int
}

// loadFile reads and decodes the object file at path.
func loadFile(path string) (*objects, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	objs, err := parseObjects(data)
	if err != nil {
		return nil, fmt.Errorf("decode %s: %w", path, err)
	}
	return objs, nil
}

// parseObjects decodes YAML or JSON documents, each an object or a list
// (v1 List, PodList, ServiceList, NodeList). Objects of other kinds are
// counted and skipped.
func parseObjects(data []byte) (*objects, error) {
	out := &objects{}
	reader := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	docs := 0
	for i := 0; ; i++ {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		if len(bytes.TrimSpace(doc)) == 0 || isComment(doc) {
			continue
		}
		docs++
		if err := out.add(doc, fmt.Sprintf("document %d", i)); err != nil {
			return nil, err
		}
	}
	if docs == 0 {
		return nil, fmt.Errorf("%w: no object", ErrFileFormat)
	}
	return out, nil
}

func isComment(doc []byte) bool {
	for line := range bytes.Lines(doc) {
		line = bytes.TrimSpace(line)
		if len(line) > 0 && line[0] != '#' {
			return false
		}
	}
	return true
}

// add decodes one object or list.
func (o *objects) add(raw []byte, where string) error {
	obj, gvk, err := decoder.Decode(raw, nil, nil)
	if err != nil {
		if runtime.IsNotRegisteredError(err) {
			o.ignored++
			return nil
		}
		return fmt.Errorf("%s: %w", where, err)
	}
	switch v := obj.(type) {
	case *corev1.Pod:
		o.pods = append(o.pods, v)
	case *corev1.Node:
		o.nodes = append(o.nodes, v)
	case *corev1.Service:
		o.services = append(o.services, v)
	case *corev1.PodList:
		for i := range v.Items {
			o.pods = append(o.pods, &v.Items[i])
		}
	case *corev1.NodeList:
		for i := range v.Items {
			o.nodes = append(o.nodes, &v.Items[i])
		}
	case *corev1.ServiceList:
		for i := range v.Items {
			o.services = append(o.services, &v.Items[i])
		}
	case *corev1.List:
		for i, item := range v.Items {
			if err := o.add(item.Raw, fmt.Sprintf("%s: items[%d]", where, i)); err != nil {
				return err
			}
		}
	default:
		_ = gvk
		o.ignored++
	}
	return nil
}

// index converts parsed objects for the store.
func (o *objects) index(enc *labelEncoder) *cluster {
	c := &cluster{
		pods:     make(map[string]*podInfo, len(o.pods)),
		nodes:    make(map[string][]netip.Addr, len(o.nodes)),
		services: make(map[string][]svcPort, len(o.services)),
		ignored:  o.ignored,
	}
	for _, p := range o.pods {
		info, truncated := podFromObject(p, enc)
		c.truncated += truncated
		c.pods[podKey(p)] = info
	}
	for _, n := range o.nodes {
		c.nodes[n.Name] = nodeAddresses(n)
	}
	for _, s := range o.services {
		c.services[serviceKey(s)] = servicePorts(s)
	}
	return c
}

// fileBackend loads a file and reloads it when it changes.
type fileBackend struct {
	path     string
	interval time.Duration
	enc      *labelEncoder
	store    *store
	metrics  *metrics
	log      *slog.Logger

	last os.FileInfo // the file as last loaded; touched by one goroutine at a time
}

func newFileBackend(path string, interval time.Duration, enc *labelEncoder, s *store, m *metrics, log *slog.Logger) *fileBackend {
	return &fileBackend{path: path, interval: interval, enc: enc, store: s, metrics: m, log: log}
}

// start loads the file (an error if it cannot) and polls it for changes.
func (b *fileBackend) start(ctx context.Context, wg *sync.WaitGroup) error {
	if err := b.reload(); err != nil {
		return err
	}
	if b.interval <= 0 {
		return nil
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(b.interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if b.changed() {
					if err := b.reload(); err != nil {
						b.log.Warn("reload failed; keeping the previous content", "file", b.path, "err", err)
					}
				}
			}
		}
	}()
	return nil
}

func (b *fileBackend) stop() {}

// changed reports whether the file differs from the one last loaded: its
// modification time, size or identity (a rename over it, as editors and
// ConfigMap volume updates do).
func (b *fileBackend) changed() bool {
	fi, err := os.Stat(b.path)
	if err != nil {
		// Gone or unreadable: keep serving what was loaded; reload once it
		// is back.
		return false
	}
	return b.last == nil || !fi.ModTime().Equal(b.last.ModTime()) || fi.Size() != b.last.Size() || !os.SameFile(fi, b.last)
}

// reload reads the file and replaces the store's content.
func (b *fileBackend) reload() error {
	fi, err := os.Stat(b.path)
	if err != nil {
		b.metrics.reloads.WithLabelValues("error").Inc()
		return fmt.Errorf("stat %s: %w", b.path, err)
	}
	objs, err := loadFile(b.path)
	if err != nil {
		b.metrics.reloads.WithLabelValues("error").Inc()
		// Do not retry the same broken content every tick.
		b.last = fi
		return err
	}
	c := objs.index(b.enc)
	if c.truncated > 0 {
		b.metrics.truncated.Add(float64(c.truncated))
	}
	b.store.replace(c.pods, c.nodes, c.services)
	b.last = fi
	b.metrics.reloads.WithLabelValues("ok").Inc()
	b.log.Info("loaded", "file", b.path, "pods", len(c.pods), "nodes", len(c.nodes), "services", len(c.services), "ignored", c.ignored)
	return nil
}
