// Package kafka is the "export.kafka" exporter: it writes records, or the
// raw IPFIX messages of a source.ipfix with raw: true, to a Kafka topic
// with github.com/twmb/franz-go, partitioned by exporter, by
// direction-independent flow key, or at random. source.kafka reads them
// back. The message format is internal/kafkawire's (docs/kafka.md).
package kafka
