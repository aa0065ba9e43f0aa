// Package flowtable is the column layout the database exporters
// (export.clickhouse, export.postgres) give a flow table: one column per
// typed field of the record model, named after its IANA or Antrea IE, plus
// the exporter and Antrea Theia's flowStartSeconds/flowEndSeconds.
//
// An address field is one column for both families, named after its IPv4
// IE without "v4" (sourceIPv4Address → sourceIPAddress,
// destinationClusterIPv4 → destinationClusterIP, Theia's name). Times are
// the IE's milliseconds; unsigned fields keep their IE's width.
package flowtable

import (
	"net/netip"
	"strings"

	"github.com/weir-flow/weir/core/flow"
)

// Column kinds beyond flow.Kind.
const (
	// Exporter columns, from Record.Exporter and ObservationDomainID.
	SourceExporterAddress = iota
	SourceExporterPort
	SourceObservationDomain
	// SourceStartSeconds and SourceEndSeconds are FlowStart/FlowEnd in
	// whole seconds (Theia's flowStartSeconds, flowEndSeconds).
	SourceStartSeconds
	SourceEndSeconds
	// SourceField is a typed field of the record.
	SourceField
)

// Column is one column of the flow table.
type Column struct {
	Name   string
	Source int          // Source* constant
	Field  flow.FieldID // with SourceField
	Kind   flow.Kind
	Width  uint16 // bytes of an unsigned value
	// LowCardinality marks strings with few distinct values (namespaces,
	// node and policy names), which ClickHouse stores as a dictionary.
	LowCardinality bool
}

// highCardinality are the strings that stay plain String in ClickHouse.
var highCardinality = map[flow.FieldID]bool{
	flow.SourcePodName:        true,
	flow.DestinationPodName:   true,
	flow.SourcePodLabels:      true,
	flow.DestinationPodLabels: true,
}

// Columns returns the table's columns, in table order; seconds adds
// flowStartSeconds and flowEndSeconds first (ClickHouse partitions and
// sorts by them; Antrea Theia's flows table has them).
func Columns(seconds bool) []Column {
	var cols []Column
	if seconds {
		cols = append(cols,
			Column{Name: "flowStartSeconds", Source: SourceStartSeconds, Kind: flow.KindTime},
			Column{Name: "flowEndSeconds", Source: SourceEndSeconds, Kind: flow.KindTime})
	}
	cols = append(cols,
		Column{Name: "exporterIPAddress", Source: SourceExporterAddress, Kind: flow.KindAddress},
		Column{Name: "exporterTransportPort", Source: SourceExporterPort, Kind: flow.KindUnsigned, Width: 2},
		Column{Name: "observationDomainId", Source: SourceObservationDomain, Kind: flow.KindUnsigned, Width: 4})
	for id := range flow.NumFields {
		f := &flow.Fields[id]
		c := Column{Name: f.Name, Source: SourceField, Field: flow.FieldID(id), Kind: f.Kind, Width: f.Width}
		switch f.Kind {
		case flow.KindAddress:
			c.Name = strings.Replace(f.Name, "v4", "", 1)
		case flow.KindString:
			c.LowCardinality = !highCardinality[c.Field]
		}
		cols = append(cols, c)
	}
	return cols
}

// Names returns the column names, in table order.
func Names(cols []Column) []string {
	out := make([]string, len(cols))
	for i, c := range cols {
		out[i] = c.Name
	}
	return out
}

// Uint returns an unsigned column's value for r (times: milliseconds).
func (c *Column) Uint(r *flow.Record) uint64 {
	switch c.Source {
	case SourceExporterPort:
		return uint64(r.Exporter.Port())
	case SourceObservationDomain:
		return uint64(r.ObservationDomainID)
	case SourceStartSeconds:
		return uint64(r.FlowStart / 1e9)
	case SourceEndSeconds:
		return uint64(r.FlowEnd / 1e9)
	}
	if c.Kind == flow.KindTime {
		return r.Uint(c.Field) / 1e6
	}
	return r.Uint(c.Field)
}

// Addr returns an address column's value for r (the zero Addr if absent).
func (c *Column) Addr(r *flow.Record) netip.Addr {
	if c.Source == SourceExporterAddress {
		return r.Exporter.Addr()
	}
	return r.Addr(c.Field)
}

// String returns a string column's value for r.
func (c *Column) String(r *flow.Record) string { return r.String(c.Field) }
