// Package podlabels is the enrich.podlabels processor: it resolves each
// record's source and destination addresses to Kubernetes Pods, Nodes and
// Services and writes the result into the record's Antrea fields, as
// Antrea's flow exporter does:
//
//   - sourcePodName, sourcePodNamespace, sourceNodeName, sourcePodLabels
//   - destinationPodName, destinationPodNamespace, destinationNodeName,
//     destinationPodLabels
//   - destinationServicePortName ("namespace/name:port", the port name
//     omitted when the Service port has none), destinationClusterIPv4/IPv6
//     and destinationServicePort, when the destination is a Service
//     ClusterIP
//
// Pod labels are a JSON object of label key → value, filtered by the
// configured allow and deny lists and capped in size, computed once per Pod
// update rather than per record.
//
// Two backends feed the index: client-go shared informers watching a
// cluster (in-cluster config or a kubeconfig), or a file in Kubernetes' own
// format (the v1 List that `kubectl get pods,services,nodes -A -o yaml`
// prints), reloaded when it changes.
//
// # Notes
//   - Lookups read an immutable snapshot through an atomic pointer: they are
//     O(1), take no lock and do not allocate. Updates build a new snapshot
//     off the hot path, coalescing bursts of watch events.
//   - A deleted Pod's addresses keep resolving for grace_period so that late
//     flows are still attributed (counted as stale); a new Pod that takes the
//     address wins at once.
//   - Fields the record already carries are kept unless overwrite is set.
package podlabels
