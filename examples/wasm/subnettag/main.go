// Command subnettag is a WASM enricher that labels flows by subnet: it
// looks up the source and destination addresses in a CIDR → name table
// and adds the name as a label to sourcePodLabels / destinationPodLabels
// (JSON objects, Antrea IEs 143/144), and optionally as an enterprise IE.
//
// Config:
//
//	subnets:            # CIDR → name; the longest prefix wins. Required.
//	  10.77.0.0/24: lab
//	  fd77::/64: lab
//	  0.0.0.0/0: internet
//	label: subnet       # label key; default "subnet"
//	ie: {enterprise: 99999, element: 1}   # optional: also set the source
//	                    # subnet's name as this variable-length string IE
//
// Build: GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o subnettag.wasm .
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"sort"

	weir "github.com/weir-flow/weir/sdk/wasm"
)

// Config is the module's config.
type Config struct {
	Subnets map[string]string `json:"subnets"`
	Label   string            `json:"label"`
	IE      *struct {
		Enterprise uint32 `json:"enterprise"`
		Element    uint16 `json:"element"`
	} `json:"ie"`
}

type subnet struct {
	prefix netip.Prefix
	name   string
}

var (
	subnets []subnet // longest prefix first
	label   = "subnet"
	ie      *weir.Field
	merged  = map[[2]string]string{} // (labels, name) → labels with the name
)

func init() {
	weir.RegisterInit(configure)
	weir.RegisterEnricher(enrich, weir.Reads(weir.SourceAddress, weir.DestinationAddress,
		weir.SourcePodLabels, weir.DestinationPodLabels))
}

func configure(config []byte) error {
	var cfg Config
	dec := json.NewDecoder(bytes.NewReader(config))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		return fmt.Errorf("subnettag config: %w", err)
	}
	if len(cfg.Subnets) == 0 {
		return errors.New("subnettag config: subnets: missing: give a map of CIDR to name")
	}
	var errs []error
	subnets = subnets[:0]
	clear(merged)
	for cidr, name := range cfg.Subnets {
		p, err := netip.ParsePrefix(cidr)
		if err != nil {
			errs = append(errs, fmt.Errorf("subnettag config: subnets: %q is not a CIDR prefix", cidr))
			continue
		}
		if name == "" {
			errs = append(errs, fmt.Errorf("subnettag config: subnets.%s: empty name", cidr))
		}
		subnets = append(subnets, subnet{p.Masked(), name})
	}
	sort.Slice(subnets, func(i, j int) bool {
		if a, b := subnets[i].prefix.Bits(), subnets[j].prefix.Bits(); a != b {
			return a > b
		}
		return subnets[i].prefix.String() < subnets[j].prefix.String()
	})
	if cfg.Label != "" {
		label = cfg.Label
	}
	if cfg.IE != nil {
		ie = &weir.Field{Enterprise: cfg.IE.Enterprise, Element: cfg.IE.Element, Variable: true}
	}
	return errors.Join(errs...)
}

// lookup returns the name of the longest prefix containing a, or "".
func lookup(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	a = a.Unmap()
	for _, s := range subnets {
		if s.prefix.Contains(a) {
			return s.name
		}
	}
	return ""
}

func enrich(r *weir.Record) {
	src, dst := lookup(r.SourceAddress), lookup(r.DestinationAddress)
	if src != "" {
		r.SetString(weir.SourcePodLabels, withLabel(r.SourcePodLabels, src))
		if ie != nil {
			setExtra(r, src)
		}
	}
	if dst != "" {
		r.SetString(weir.DestinationPodLabels, withLabel(r.DestinationPodLabels, dst))
	}
}

// withLabel returns the JSON object labels with label=name added; labels
// that are not a JSON object are replaced.
func withLabel(labels, name string) string {
	key := [2]string{labels, name}
	if s, ok := merged[key]; ok {
		return s
	}
	m := map[string]any{}
	if labels != "" {
		_ = json.Unmarshal([]byte(labels), &m)
		if m == nil {
			m = map[string]any{}
		}
	}
	m[label] = name
	b, _ := json.Marshal(m) // sorted keys
	if len(merged) > 4096 {
		clear(merged)
	}
	merged[key] = string(b)
	return string(b)
}

func setExtra(r *weir.Record, name string) {
	if f := r.FindExtra(ie.Key()); f != nil {
		f.Value = []byte(name)
		return
	}
	x := *ie
	x.Value = []byte(name)
	r.Extra = append(r.Extra, x)
}

func main() {}
