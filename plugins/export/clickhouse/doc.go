// Package clickhouse is the "export.clickhouse" exporter: batched inserts
// over ClickHouse's native protocol (github.com/ClickHouse/clickhouse-go/v2)
// into a flow table it creates on demand (columns named after the IANA and
// Antrea IEs, internal/flowtable), with a bounded buffer, retries with
// back-off and counted drops while the server is down (internal/sinkbuf).
package clickhouse
