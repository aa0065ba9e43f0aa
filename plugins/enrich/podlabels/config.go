package podlabels

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/weir-flow/weir/core/config"
	"github.com/weir-flow/weir/plugins/internal/kubeclient"
)

// Config configures enrich.podlabels. Exactly one backend is used: File when
// set, else the cluster named by Kubeconfig (in-cluster when empty).
type Config struct {
	// Kubeconfig is the path of a kubeconfig file whose current context
	// names the cluster to watch. Relative paths resolve against the config
	// file's directory. Default "": the in-cluster service account config.
	Kubeconfig string `koanf:"kubeconfig"`
	// Context selects a kubeconfig context other than the current one.
	// Default "": the current context.
	Context string `koanf:"context"`
	// File is the path of a Kubernetes object file: a v1 List (as printed by
	// `kubectl get pods,services,nodes -A -o yaml` or `-o json`), typed
	// lists, or YAML documents of Pods, Services and Nodes. Other kinds are
	// ignored. Relative paths resolve against the config file's directory.
	// Default "": use the cluster.
	File string `koanf:"file"`
	// ReloadInterval is how often File is checked for changes (modification
	// time, size or identity). Default 2s; 0 loads the file once.
	ReloadInterval time.Duration `koanf:"reload_interval"`
	// SyncTimeout bounds how long Start waits for the informers' first list
	// so the first records are enriched; on timeout Start logs and goes on,
	// and the index fills in as the watch catches up. Default 10s; 0 does
	// not wait.
	SyncTimeout time.Duration `koanf:"sync_timeout"`
	// GracePeriod is how long a deleted Pod's addresses keep resolving to it
	// (counted as stale lookups), so flows that end after the Pod still
	// carry its name. A new Pod with the same address replaces it at once.
	// Default 30s; 0 forgets deleted Pods at once.
	GracePeriod time.Duration `koanf:"grace_period"`
	// Overwrite replaces Pod, Node and Service fields the record already
	// carries (for example from Antrea). Default false: only empty fields
	// are filled.
	Overwrite bool `koanf:"overwrite"`
	// NodeName, when set, limits the Pods resolved to those scheduled on
	// this Node (spec.nodeName), as Antrea's FlowExporter knows only its
	// Node's local Pods: on a Node, each half of an inter-Node flow then
	// carries only its own side's Pod, which the aggregate processor needs
	// to correlate the halves. Nodes and Services still resolve
	// cluster-wide. Default "": every Pod. In a DaemonSet, the Pod's
	// spec.nodeName (Downward API) written into the config.
	NodeName string `koanf:"node_name"`
	// Labels controls which Pod labels reach sourcePodLabels and
	// destinationPodLabels.
	Labels Labels `koanf:"labels"`
}

// Labels selects the Pod labels written to records.
type Labels struct {
	// Allow lists the label keys to keep; '*' matches any run of
	// characters, including '/' (e.g. "app.kubernetes.io/*"). Default
	// empty: every key.
	Allow []string `koanf:"allow"`
	// Deny lists label keys to drop, with the same patterns; it wins over
	// Allow. Default empty; ["*"] leaves the label fields unset.
	Deny []string `koanf:"deny"`
	// MaxBytes caps the JSON object's size in bytes: labels are taken in key
	// order and one that would overflow the cap is left out. Accepts units
	// ("1KiB"). Default 1KiB; 0 means no cap; at most 65535, the largest
	// IPFIX variable-length field (RFC 7011 §7).
	MaxBytes config.ByteSize `koanf:"max_bytes"`
}

// maxLabelBytes is the largest IPFIX variable-length value (RFC 7011 §7).
const maxLabelBytes = 65535

// DefaultConfig returns the defaults.
func DefaultConfig() *Config {
	return &Config{
		ReloadInterval: 2 * time.Second,
		SyncTimeout:    10 * time.Second,
		GracePeriod:    30 * time.Second,
		Labels:         Labels{MaxBytes: 1024},
	}
}

// Validate checks the config without touching the file system.
func (c *Config) Validate() error {
	var errs []error
	if c.File != "" && (c.Kubeconfig != "" || c.Context != "") {
		errs = append(errs, fmt.Errorf("file: %q: set either file or kubeconfig/context, not both", c.File))
	}
	if c.ReloadInterval < 0 {
		errs = append(errs, fmt.Errorf("reload_interval: %v must not be negative", c.ReloadInterval))
	}
	if c.SyncTimeout < 0 {
		errs = append(errs, fmt.Errorf("sync_timeout: %v must not be negative", c.SyncTimeout))
	}
	if c.GracePeriod < 0 {
		errs = append(errs, fmt.Errorf("grace_period: %v must not be negative", c.GracePeriod))
	}
	if c.Labels.MaxBytes < 0 || c.Labels.MaxBytes > maxLabelBytes {
		errs = append(errs, fmt.Errorf("labels.max_bytes: %d must be between 0 and %d", c.Labels.MaxBytes, maxLabelBytes))
	}
	for i, p := range c.Labels.Allow {
		if err := checkPattern(p); err != nil {
			errs = append(errs, fmt.Errorf("labels.allow[%d]: %q: %w", i, p, err))
		}
	}
	for i, p := range c.Labels.Deny {
		if err := checkPattern(p); err != nil {
			errs = append(errs, fmt.Errorf("labels.deny[%d]: %q: %w", i, p, err))
		}
	}
	return errors.Join(errs...)
}

// checkPattern rejects patterns that can never match a label key.
func checkPattern(p string) error {
	switch {
	case p == "":
		return errors.New("empty pattern")
	case strings.TrimSpace(p) != p:
		return errors.New("pattern has surrounding spaces")
	}
	return nil
}

// Check loads the backend's input without starting it: it parses File, or
// loads the kubeconfig (or the in-cluster config). `weir validate` calls it.
func (c *Config) Check(_ context.Context, baseDir string) error {
	if c.File != "" {
		_, err := loadFile(resolve(baseDir, c.File))
		return err
	}
	_, err := kubeclient.RESTConfig(resolve(baseDir, c.Kubeconfig), c.Context)
	return err
}

var _ config.Checker = (*Config)(nil)
