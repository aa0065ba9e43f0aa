// Command subnetlabels is an example Weir rpc plugin: it labels flow
// records from a CSV table of "cidr,key,value" rows, by longest-prefix
// match on the source and destination addresses.
//
// Labels of the source address are merged into sourcePodLabels and those
// of the destination address into destinationPodLabels, both JSON objects
// of key → value (Antrea IEs 143/144). Keys a record already has are kept:
// the exporter's labels win over the table's. A record with no matching
// prefix is left as it is.
//
// Configure it in Weir as
//
//	processors:
//	  - rpc:
//	      cmd: examples/rpc/subnetlabels/subnetlabels
//	      config: {table: examples/rpc/subnetlabels/subnets.csv}
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/sdk/rpc"
)

// Config is the plugin's `config:`.
type Config struct {
	// Table is the CSV file of "cidr,key,value" rows. A relative path
	// resolves against Weir's config directory, then the working
	// directory. Required.
	Table string `json:"table"`
}

// labeler holds the loaded table. Its fields are set once by Init, before
// any batch, and only read afterwards.
type labeler struct {
	table *Table
	log   *slog.Logger
	bad   atomic.Uint64 // records whose labels field was not a JSON object
}

func (l *labeler) init(raw []byte) error {
	var cfg Config
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if cfg.Table == "" {
		return errors.New("config: table: required: a CSV file of cidr,key,value rows")
	}
	path := rpc.Path(cfg.Table)
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("config: table: %w", err)
	}
	defer f.Close()
	t, err := LoadTable(f)
	if err != nil {
		return fmt.Errorf("table %s: %w", path, err)
	}
	l.table = t
	l.log.Info("loaded subnet table", "path", path)
	return nil
}

// enrich labels r's source and destination.
func (l *labeler) enrich(r *flow.Record) {
	l.label(r, flow.SourceAddress, flow.SourcePodLabels)
	l.label(r, flow.DestinationAddress, flow.DestinationPodLabels)
}

func (l *labeler) label(r *flow.Record, addr, labels flow.FieldID) {
	e := l.table.Lookup(r.Addr(addr))
	if e == nil {
		return
	}
	out, ok := e.Merge(r.String(labels))
	if !ok {
		if l.bad.Add(1) == 1 {
			l.log.Warn("record labels are not a JSON object; left unchanged", "field", labels.String())
		}
		return
	}
	r.SetString(labels, out)
}

func (l *labeler) plugin() rpc.Plugin {
	return rpc.Plugin{
		Name:   "subnetlabels",
		Init:   l.init,
		Enrich: l.enrich,
		Reads:  []flow.FieldID{flow.SourceAddress, flow.DestinationAddress, flow.SourcePodLabels, flow.DestinationPodLabels},
	}
}

func main() {
	l := &labeler{log: rpc.Logger()}
	rpc.Serve(l.plugin())
}
