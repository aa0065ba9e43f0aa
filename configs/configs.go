// Package configs holds Weir's ready pipelines; the default one is embedded
// in the binary.
package configs

import _ "embed"

// Default is configs/default.yaml: source.ipfix on UDP and TCP :4739 →
// proxy → export.jsonl to stdout.
//
//go:embed default.yaml
var Default []byte
