package podlabels

import (
	"net/netip"

	corev1 "k8s.io/api/core/v1"
)

// podKey identifies a Pod in the store: its UID, which a Pod recreated under
// the same name does not share, or namespace/name when the UID is unknown
// (hand-written files).
func podKey(p *corev1.Pod) string {
	if p.UID != "" {
		return string(p.UID)
	}
	return p.Namespace + "/" + p.Name
}

// podFromObject extracts what the index needs from a Pod; truncated counts
// labels left out by the size cap. Host-network Pods get no addresses: they
// share their Node's, which resolve to the Node.
func podFromObject(p *corev1.Pod, enc *labelEncoder) (info *podInfo, truncated int) {
	info = &podInfo{
		endpoint: endpoint{
			podName:      p.Name,
			podNamespace: p.Namespace,
			nodeName:     p.Spec.NodeName,
		},
		created:  p.CreationTimestamp.Time,
		terminal: p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed,
	}
	info.labels, truncated = enc.encode(p.Labels)
	if p.Spec.HostNetwork {
		return info, truncated
	}
	seen := func(a netip.Addr) bool {
		for _, b := range info.ips {
			if a == b {
				return true
			}
		}
		return false
	}
	add := func(s string) {
		if a, err := netip.ParseAddr(s); err == nil && !seen(a.Unmap()) {
			info.ips = append(info.ips, a.Unmap())
		}
	}
	add(p.Status.PodIP)
	for _, ip := range p.Status.PodIPs {
		add(ip.IP)
	}
	return info, truncated
}

// nodeAddresses returns a Node's internal and external addresses.
func nodeAddresses(n *corev1.Node) []netip.Addr {
	ips := []netip.Addr{}
	for _, a := range n.Status.Addresses {
		if a.Type != corev1.NodeInternalIP && a.Type != corev1.NodeExternalIP {
			continue
		}
		if ip, err := netip.ParseAddr(a.Address); err == nil {
			ips = append(ips, ip.Unmap())
		}
	}
	return ips
}

// serviceKey identifies a Service in the store.
func serviceKey(s *corev1.Service) string { return s.Namespace + "/" + s.Name }

// servicePorts returns the Service's ClusterIP ports, each named as Antrea
// names them: "namespace/name:port", or "namespace/name" when the port has
// no name. Headless Services have none.
func servicePorts(s *corev1.Service) []svcPort {
	ips := s.Spec.ClusterIPs
	if len(ips) == 0 && s.Spec.ClusterIP != "" {
		ips = []string{s.Spec.ClusterIP}
	}
	ports := []svcPort{}
	base := s.Namespace + "/" + s.Name
	for _, ipStr := range ips {
		ip, err := netip.ParseAddr(ipStr)
		if err != nil {
			continue // "None" for headless Services
		}
		for _, p := range s.Spec.Ports {
			proto, ok := protocolNumber(p.Protocol)
			if !ok {
				continue
			}
			name := base
			if p.Name != "" {
				name += ":" + p.Name
			}
			ports = append(ports, svcPort{addr: ip.Unmap(), port: uint16(p.Port), proto: proto, name: intern(name)})
		}
	}
	return ports
}

// protocolNumber maps a Kubernetes protocol to its IANA number; "" is TCP,
// the API's default.
func protocolNumber(p corev1.Protocol) (uint8, bool) {
	switch p {
	case corev1.ProtocolTCP, "":
		return 6, true
	case corev1.ProtocolUDP:
		return 17, true
	case corev1.ProtocolSCTP:
		return 132, true
	}
	return 0, false
}
