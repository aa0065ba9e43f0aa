// Package expr is the "filter.expr" processor: it keeps the records for which
// a boolean expression in the expr language (github.com/expr-lang/expr) is
// true, for example
//
//	protocolIdentifier == 6 && destinationTransportPort in [80, 443] && sourcePodNamespace != "kube-system"
//
// Variables are IE names: every typed field of [flow.Record] by its IANA or
// Antrea name (both names of the address fields), every other IE of the
// IANA and Antrea registries read from [flow.Record.Extra], and the message
// context exporterIPv4Address, exporterIPv6Address and observationDomainId.
// An IE the record does not carry reads as its type's zero value (0, "").
//
// The expression is compiled and type-checked once; evaluation reuses a
// virtual machine per goroutine and does not allocate, except to format an
// Extra IE of a non-numeric, non-string type that the expression reads.
package expr
