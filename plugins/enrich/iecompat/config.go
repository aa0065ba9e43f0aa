package iecompat

import (
	"context"
	"errors"
	"fmt"

	"github.com/weir-flow/weir/core/plugin"
)

// Config configures enrich.iecompat.
type Config struct {
	// Files are shim files (YAML with a top-level `shims` list of the same
	// shape as Shims), e.g. "configs/shims/antrea-egress-node-name.yaml".
	// Relative paths resolve against the config file's directory. Their
	// shims apply first, file by file, then Shims. Default none.
	Files []string `koanf:"files"`
	// Shims are shims written inline. Default none.
	Shims []Shim `koanf:"shims"`
}

// Shim is a selector and the actions applied, in order, to the records it
// selects.
type Shim struct {
	// Name identifies the shim in logs and in the shim label of metrics.
	// Required, unique.
	Name string `koanf:"name"`
	// Match selects records; the zero Match selects every record.
	Match Match `koanf:"match"`
	// Actions apply in order. At least one.
	Actions []Action `koanf:"actions"`
}

// Match selects records. Every non-empty condition must hold.
type Match struct {
	// Exporters are exporter addresses ("192.0.2.1", "fd00::1") or CIDR
	// prefixes ("10.0.0.0/8") matched against the address the IPFIX message
	// came from. Empty matches every exporter.
	Exporters []string `koanf:"exporters"`
	// ObservationDomains are observation domain IDs (RFC 7011 §3.1). Empty
	// matches every domain.
	ObservationDomains []uint32 `koanf:"observation_domains"`
	// Has are IEs the record must carry (the template's IE set stands in
	// for a template fingerprint). An IE with an empty value counts as
	// absent.
	Has []string `koanf:"has"`
	// Lacks are IEs the record must not carry.
	Lacks []string `koanf:"lacks"`
}

// Action is one step of a shim. Op selects which other keys apply:
//
//	rename   ie → to                  move the value to another IE (renumber); if `to` is a
//	                                  typed field the value leaves Extra
//	width    ie, type [, from_type]   re-encode a verbatim integer IE at another width
//	                                  (unsigned32 → unsigned64, unsigned16 → signed32)
//	drop     ie                       remove the IE
//	derive   ie ← func(from…)         set ie from other IEs: copy (first present), sum, min, max
//	default  ie = value               set ie when the record lacks it
//
// IEs are written as names ("egressNodeName"), "enterprise/element"
// ("56506/157") or IANA element IDs ("8").
type Action struct {
	// Op is rename, width, drop, derive or default. Required.
	Op string `koanf:"op"`
	// IE is the IE acted on: the source of rename, the target of every
	// other op. Required.
	IE string `koanf:"ie"`
	// To is the new IE of rename.
	To string `koanf:"to"`
	// Type is an RFC 7012 data type: the new width of width (an integer
	// type), or the type of a target IE no registry knows (rename, derive,
	// default), which decides how values are encoded.
	Type string `koanf:"type"`
	// FromType is, for width, the integer type the exporter encoded the
	// value with, when its signedness differs from Type's (an old
	// unsigned16 IE that is now signed32 must be zero-extended). Default:
	// Type's signedness.
	FromType string `koanf:"from_type"`
	// From are the source IEs of derive.
	From []string `koanf:"from"`
	// Func is derive's function: copy (default; the first present source),
	// sum, min or max (integers).
	Func string `koanf:"func"`
	// Value is default's value: a number, a string or an address, as the
	// target's type needs.
	Value any `koanf:"value"`
	// Overwrite lets rename and derive replace a value the record already
	// carries in the target IE. Default false: the record's own value wins
	// and the action is counted as skipped (reason conflict), so no
	// exporter-sent value is ever lost.
	Overwrite bool `koanf:"overwrite"`
}

// DefaultConfig returns the defaults: no shims.
func DefaultConfig() *Config { return &Config{} }

// Validate checks the inline shims completely (IE names, ops, types,
// values) and that file paths are not empty. It is pure: shim files are
// read and checked by Check and by New.
func (c *Config) Validate() error {
	var errs []error
	for i, f := range c.Files {
		if f == "" {
			errs = append(errs, fmt.Errorf("files[%d]: empty path", i))
		}
	}
	_, shimErrs := compileShims(c.Shims, "shims", nil)
	errs = append(errs, shimErrs...)
	return errors.Join(errs...)
}

// Check reads and compiles the shim files; `weir validate` calls it.
func (c *Config) Check(_ context.Context, baseDir string) error {
	_, err := loadShims(c, baseDir)
	return err
}

var (
	_ plugin.Config  = (*Config)(nil)
	_ plugin.Checker = (*Config)(nil)
)
