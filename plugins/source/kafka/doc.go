// Package kafka is the "source.kafka" source: a Kafka consumer-group
// member (github.com/twmb/franz-go) that reads what export.kafka wrote —
// raw IPFIX messages, which it decodes, or record batches — and commits a
// message's offset only after the pipeline has exported its records
// (at-least-once). See README.md for the duplicate window.
package kafka
