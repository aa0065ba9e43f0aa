# test/k8s/k8s.mk — enrich.podlabels' end-to-end test against a real
# Kubernetes API server. Included by the top-level Makefile.
#
#   make test-k8s        install etcd, build kube-apiserver, run the e2e test
#   make k8s-apiserver   build (or reuse) kube-apiserver only
#
# kube-apiserver is built from the Go module proxy (test/k8s/apiserver/) and
# cached as $(K8S_CACHE)/kube-apiserver-$(K8S_VERSION): several minutes cold,
# instant once cached. The test runs only with WEIR_K8S_E2E=1, which
# test-k8s sets; with it set, missing tools fail the test instead of
# skipping it.

K8S_VERSION ?= v1.37.2
K8S_CACHE   ?= $(HOME)/.cache/weir
GO          ?= go

.PHONY: k8s-deps k8s-apiserver test-k8s

## k8s-deps: etcd (Debian's etcd-server) and openssl for run-apiserver.sh
k8s-deps:
	@if ! command -v etcd >/dev/null || ! command -v openssl >/dev/null; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server openssl; \
	fi

## k8s-apiserver: build kube-apiserver $(K8S_VERSION) into $(K8S_CACHE) (cached)
k8s-apiserver:
	KUBE_VERSION=$(K8S_VERSION) WEIR_CACHE=$(K8S_CACHE) test/k8s/build-apiserver.sh

## test-k8s: enrich.podlabels against etcd + kube-apiserver on loopback
test-k8s: k8s-deps k8s-apiserver
	KUBE_VERSION=$(K8S_VERSION) WEIR_CACHE=$(K8S_CACHE) WEIR_K8S_E2E=1 \
	  $(GO) test -count=1 -timeout 10m ./test/k8s/
