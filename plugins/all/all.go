// Package all registers every built-in plugin. Import it for its side
// effects: `import _ "github.com/weir-flow/weir/plugins/all"`.
package all

import (
	_ "github.com/weir-flow/weir/plugins/export/ipfix"
	_ "github.com/weir-flow/weir/plugins/export/jsonl"
	_ "github.com/weir-flow/weir/plugins/filter/protocol"
	_ "github.com/weir-flow/weir/plugins/proxy"
	_ "github.com/weir-flow/weir/plugins/source/ipfix"
	_ "github.com/weir-flow/weir/plugins/source/pcap"
)
