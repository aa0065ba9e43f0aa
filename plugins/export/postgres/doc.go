// Package postgres is the "export.postgres" exporter: batches of records
// written with COPY (github.com/jackc/pgx/v5) into a flow table it creates
// on demand (inet addresses, timestamptz times, columns named after the
// IANA and Antrea IEs: internal/flowtable), with a bounded buffer, retries
// with back-off and counted drops while the server is down
// (internal/sinkbuf).
package postgres
