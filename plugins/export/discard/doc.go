// Package discard is the export.discard exporter: it counts the records it
// gets and drops them. It is the cheapest possible end of a pipeline, for
// measuring a pipeline's receive and processing path on the shipped binary
// (test/bench/ingest.sh) and for pipelines run only for their metrics.
package discard
