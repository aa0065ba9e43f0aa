package k8s_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"
)

// TestDeployManifests applies deploy/kubernetes/ to a real API server with
// server-side dry-run (kubectl apply --dry-run=server): every object is
// admitted, defaulted and validated by the server, nothing is persisted
// except the Namespace the others need.
func TestDeployManifests(t *testing.T) {
	newCluster(t) // skips, saying how to run it, without an API server
	rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	disc, err := discovery.NewDiscoveryClientForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(disc))
	cs := kubernetes.NewForConfigOrDie(rc)
	ctx := context.Background()

	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..", "deploy", "kubernetes")
	var objs []*unstructured.Unstructured
	for _, name := range []string{"namespace.yaml", "rbac.yaml", "configmap.yaml", "deployment.yaml", "service.yaml"} {
		data, err := os.ReadFile(filepath.Join(root, name))
		if err != nil {
			t.Fatal(err)
		}
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
		for {
			var m map[string]any
			if err := dec.Decode(&m); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if len(m) == 0 {
				continue
			}
			objs = append(objs, &unstructured.Unstructured{Object: m})
		}
	}
	kinds := map[string]bool{}
	for _, o := range objs {
		kinds[o.GetKind()] = true
		if o.GetKind() == "Namespace" {
			// The namespaced objects' dry-run needs it to exist.
			_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: o.GetName()}}, metav1.CreateOptions{})
			if err != nil && !apierrors.IsAlreadyExists(err) {
				t.Fatal(err)
			}
		}
	}
	for _, want := range []string{"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "ConfigMap", "Deployment", "Service"} {
		if !kinds[want] {
			t.Errorf("deploy/kubernetes has no %s", want)
		}
	}
	for _, o := range objs {
		gvk := o.GroupVersionKind()
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			t.Errorf("%s %s: %v", gvk.Kind, o.GetName(), err)
			continue
		}
		var ri dynamic.ResourceInterface = dyn.Resource(m.Resource)
		if ns := o.GetNamespace(); ns != "" {
			ri = dyn.Resource(m.Resource).Namespace(ns)
		}
		got, err := ri.Create(ctx, o, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}, FieldValidation: "Strict"})
		if apierrors.IsAlreadyExists(err) {
			continue // the Namespace created above
		}
		if err != nil {
			t.Errorf("server-side dry-run of %s %s: %v", gvk.Kind, o.GetName(), err)
			continue
		}
		if got.GetKind() == "Service" {
			ports, _, _ := unstructured.NestedSlice(got.Object, "spec", "ports")
			var protos []string
			for _, p := range ports {
				pm := p.(map[string]any)
				protos = append(protos, fmt.Sprint(pm["protocol"], "/", pm["port"]))
			}
			if s := strings.Join(protos, ","); !strings.Contains(s, "UDP/4739") || !strings.Contains(s, "TCP/4739") {
				t.Errorf("Service ports %s, want UDP/4739 and TCP/4739", s)
			}
		}
	}
}
