package podlabels

import (
	"cmp"
	"context"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"time"
	"unique"
)

// endpoint is what an address resolves to. Its strings are computed once per
// Pod or Node update and shared by every record that resolves to it.
type endpoint struct {
	podName      string
	podNamespace string
	nodeName     string
	labels       string // JSON object, "" when no label is kept
	// stale marks a deleted Pod kept for the grace period, or a Pod that
	// has terminated (Succeeded/Failed) and whose address may be reused.
	stale bool
}

// snapshot is an immutable view of the index, read without locks.
type snapshot struct {
	ips      *addrTable // Pod and Node addresses
	services *svcTable  // (ClusterIP, port, protocol) → "namespace/name:port"
}

var emptySnapshot = &snapshot{ips: newAddrTable(0), services: newSvcTable(0)}

// podInfo is the part of a Pod the index needs.
type podInfo struct {
	endpoint
	ips      []netip.Addr
	created  time.Time
	terminal bool
}

// tombstone keeps a deleted Pod's address resolving until expires.
type tombstone struct {
	ep      *endpoint
	expires time.Time
}

// svcPort is one Service port: a ClusterIP, the port, its IANA protocol
// number, and its Antrea name.
type svcPort struct {
	addr  netip.Addr
	port  uint16
	proto uint8
	name  string
}

// store is the mutable source of truth that backends update. Every change
// marks the store dirty; a rebuild turns it into a new snapshot. Lookups
// only ever see snapshots.
type store struct {
	grace time.Duration
	now   func() time.Time
	// minInterval spaces rebuilds so a burst of watch events costs one
	// rebuild, not one per event.
	minInterval time.Duration
	onRebuild   func(pods, nodes, services, stale int)
	// node, when set, keeps only the Pods on that Node (Config.NodeName).
	node string

	mu       sync.Mutex
	pods     map[string]*podInfo // by UID (or namespace/name for files)
	nodes    map[string][]netip.Addr
	services map[string][]svcPort // by namespace/name
	tombs    map[netip.Addr]tombstone
	dirty    bool

	kick chan struct{}
	snap atomic.Pointer[snapshot]
}

func newStore(grace time.Duration) *store {
	s := &store{
		grace:       grace,
		now:         time.Now,
		minInterval: 100 * time.Millisecond,
		pods:        map[string]*podInfo{},
		nodes:       map[string][]netip.Addr{},
		services:    map[string][]svcPort{},
		tombs:       map[netip.Addr]tombstone{},
		kick:        make(chan struct{}, 1),
	}
	s.snap.Store(emptySnapshot)
	return s
}

// load returns the current snapshot.
func (s *store) load() *snapshot { return s.snap.Load() }

// changed marks the store dirty and wakes the rebuild loop; s.mu is held.
func (s *store) changed() {
	s.dirty = true
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// intern shares equal strings between Pods (label sets repeat across a
// workload's replicas).
func intern(str string) string {
	if str == "" {
		return ""
	}
	return unique.Make(str).Value()
}

// upsertPod adds or replaces the Pod under key.
func (s *store) upsertPod(key string, p *podInfo) {
	if s.node != "" && p.nodeName != s.node {
		return // another Node's Pod (Pods do not move between Nodes)
	}
	p.podName = intern(p.podName)
	p.podNamespace = intern(p.podNamespace)
	p.nodeName = intern(p.nodeName)
	p.labels = intern(p.labels)
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.pods[key]; ok && samePod(old, p) {
		return
	}
	s.pods[key] = p
	s.changed()
}

func samePod(a, b *podInfo) bool {
	if a.endpoint != b.endpoint || a.terminal != b.terminal || !a.created.Equal(b.created) || len(a.ips) != len(b.ips) {
		return false
	}
	for i := range a.ips {
		if a.ips[i] != b.ips[i] {
			return false
		}
	}
	return true
}

// deletePod removes the Pod under key, keeping its addresses resolving for
// the grace period.
func (s *store) deletePod(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deletePodLocked(key)
}

func (s *store) deletePodLocked(key string) {
	p, ok := s.pods[key]
	if !ok {
		return
	}
	delete(s.pods, key)
	if s.grace > 0 && len(p.ips) > 0 {
		ep := p.endpoint
		ep.stale = true
		expires := s.now().Add(s.grace)
		for _, ip := range p.ips {
			s.tombs[ip] = tombstone{ep: &ep, expires: expires}
		}
	}
	s.changed()
}

// upsertNode sets the addresses of Node name (nil removes the Node).
func (s *store) upsertNode(name string, ips []netip.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ips == nil {
		if _, ok := s.nodes[name]; !ok {
			return
		}
		delete(s.nodes, name)
	} else {
		s.nodes[intern(name)] = ips
	}
	s.changed()
}

// upsertService sets the ports of Service key (nil removes the Service).
func (s *store) upsertService(key string, ports []svcPort) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ports == nil {
		if _, ok := s.services[key]; !ok {
			return
		}
		delete(s.services, key)
	} else {
		s.services[key] = ports
	}
	s.changed()
}

// replace swaps the whole content for a newly read file. Pods that are gone
// get tombstones as if deleted.
func (s *store) replace(pods map[string]*podInfo, nodes map[string][]netip.Addr, services map[string][]svcPort) {
	for _, p := range pods {
		p.podName = intern(p.podName)
		p.podNamespace = intern(p.podNamespace)
		p.nodeName = intern(p.nodeName)
		p.labels = intern(p.labels)
	}
	if s.node != "" {
		for key, p := range pods {
			if p.nodeName != s.node {
				delete(pods, key)
			}
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for key := range s.pods {
		if _, ok := pods[key]; !ok {
			s.deletePodLocked(key)
		}
	}
	s.pods = pods
	s.nodes = nodes
	s.services = services
	s.changed()
}

// podRank orders Pods claiming one address: running Pods before terminated
// ones, then the newest first.
func podRank(a, b *podInfo) int {
	if a.terminal != b.terminal {
		if a.terminal {
			return 1
		}
		return -1
	}
	return b.created.Compare(a.created)
}

// rebuild publishes a new snapshot if the store changed or a tombstone has
// expired, and returns when the next tombstone expires (zero if none).
func (s *store) rebuild() (next time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	for ip, t := range s.tombs {
		if !t.expires.After(now) {
			delete(s.tombs, ip)
			s.dirty = true
		}
	}
	if s.dirty {
		s.publish()
		s.dirty = false
	}
	for _, t := range s.tombs {
		if next.IsZero() || t.expires.Before(next) {
			next = t.expires
		}
	}
	return next
}

// publish builds and stores a snapshot; s.mu is held.
func (s *store) publish() {
	size := len(s.tombs)
	pods := make([]*podInfo, 0, len(s.pods))
	for _, p := range s.pods {
		if len(p.ips) > 0 {
			pods = append(pods, p)
			size += len(p.ips)
		}
	}
	for _, ips := range s.nodes {
		size += len(ips)
	}
	ips := newAddrTable(size)
	// Deterministic precedence when Pods share an address: the first added
	// wins.
	sort.Slice(pods, func(i, j int) bool {
		if c := podRank(pods[i], pods[j]); c != 0 {
			return c < 0
		}
		return cmp.Or(cmp.Compare(pods[i].podNamespace, pods[j].podNamespace), cmp.Compare(pods[i].podName, pods[j].podName)) < 0
	})
	var live, stale int
	for _, p := range pods {
		ep := &p.endpoint
		if p.terminal && !ep.stale {
			cp := *ep
			cp.stale = true
			ep = &cp
		}
		for _, ip := range p.ips {
			if ips.add(ip, ep) {
				if ep.stale {
					stale++
				} else {
					live++
				}
			}
		}
	}
	for ip, t := range s.tombs {
		if !ips.add(ip, t.ep) {
			// A new Pod owns the address: it wins at once.
			delete(s.tombs, ip)
			continue
		}
		stale++
	}
	nodeNames := make([]string, 0, len(s.nodes))
	for name := range s.nodes {
		nodeNames = append(nodeNames, name)
	}
	sort.Strings(nodeNames)
	nodes := 0
	for _, name := range nodeNames {
		ep := &endpoint{nodeName: name}
		for _, ip := range s.nodes[name] {
			if ips.add(ip, ep) {
				nodes++
			}
		}
	}
	n := 0
	for _, ports := range s.services {
		n += len(ports)
	}
	services := newSvcTable(n)
	for _, ports := range s.services {
		for _, p := range ports {
			services.add(p.addr, p.port, p.proto, p.name)
		}
	}
	s.snap.Store(&snapshot{ips: ips, services: services})
	if s.onRebuild != nil {
		s.onRebuild(live, nodes, services.len(), stale)
	}
}

// run rebuilds snapshots until ctx ends: when the store changes (at most
// once per minInterval, so a burst of events costs one rebuild) and when a
// tombstone expires.
func (s *store) run(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var last time.Time
	for {
		if wait := s.minInterval - time.Since(last); wait > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
		last = time.Now()
		if next := s.rebuild(); !next.IsZero() {
			timer.Reset(max(next.Sub(s.now()), time.Millisecond))
		}
		select {
		case <-ctx.Done():
			return
		case <-s.kick:
		case <-timer.C:
		}
	}
}
