// Package k8s holds enrich.podlabels' end-to-end test against a real
// Kubernetes API server (etcd from Debian's etcd-server package,
// kube-apiserver built from the Go module proxy by build-apiserver.sh and
// run on loopback by run-apiserver.sh).
//
// The test runs only with WEIR_K8S_E2E=1, which `make test-k8s` (k8s.mk)
// sets after installing etcd and building kube-apiserver; with the variable
// set, a missing tool fails the test rather than skipping it. Set
// WEIR_K8S_KUBECONFIG to use an API server that is already running.
package k8s
