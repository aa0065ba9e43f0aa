package kafka

import (
	_ "embed"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/weir-flow/weir/core/config"
)

// ExampleYAML is example.yaml, a complete inlet pipeline using the plugin.
//
//go:embed example.yaml
var ExampleYAML string

// Config configures export.kafka.
type Config struct {
	// Brokers are the seed brokers, "host:port". Required.
	Brokers []string `koanf:"brokers"`
	// Topic is the topic written to; it must exist (or the brokers
	// create topics on demand). Required.
	Topic string `koanf:"topic"`
	// Key picks each record's partition: "exporter" (exporter address and
	// observation domain: an exporter's messages stay in order on one
	// partition), "flow" (direction-independent 5-tuple: both halves of a
	// connection on one partition; payload records only) or "random".
	// Default "exporter".
	Key string `koanf:"key"`
	// Payload is "records" (decoded record batches, the plugin ABI
	// encoding) or "raw" (IPFIX messages as received, each with the
	// templates needed to decode it; needs source.ipfix raw: true).
	// Default "records".
	Payload string `koanf:"payload"`
	// Compression of produced batches: "none", "gzip", "snappy", "lz4" or
	// "zstd". Default "zstd".
	Compression string `koanf:"compression"`
	// ClientID names the client to the brokers. Default "weir".
	ClientID string `koanf:"client_id"`
	// Linger is how long the producer waits to fill a batch per
	// partition. 0 sends as soon as possible. Default 5ms.
	Linger time.Duration `koanf:"linger"`
	// RecordsPerMessage bounds the records of one Kafka message (payload
	// records). Default 1024.
	RecordsPerMessage int `koanf:"records_per_message"`
	// MaxBufferedMessages bounds the Kafka messages buffered in the
	// producer, including those being retried. Default 10000.
	MaxBufferedMessages int `koanf:"max_buffered_messages"`
	// WhenFull is what Export does when that buffer is full: "block"
	// (back-pressure into the pipeline's queues) or "drop" (the records
	// are dropped and counted, reason buffer_full). Default "block".
	WhenFull string `koanf:"when_full"`
	// DeliveryTimeout bounds how long a message may be buffered and
	// retried before it is dropped and counted (reason delivery_failed).
	// Default 2m.
	DeliveryTimeout time.Duration `koanf:"delivery_timeout"`
	// MaxMessageBytes bounds a produce batch (Kafka's max.message.bytes,
	// default 1MiB); a larger message is dropped and counted (reason
	// too_large).
	MaxMessageBytes config.ByteSize `koanf:"max_message_bytes"`
	// Idempotent enables idempotent production (no duplicates from the
	// producer's own retries). Default true.
	Idempotent bool `koanf:"idempotent"`
	// Acks is "all" (every in-sync replica) or "leader". "all" is needed
	// for idempotence. Default "all".
	Acks string `koanf:"acks"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() *Config {
	return &Config{
		Key:                 "exporter",
		Payload:             "records",
		Compression:         "zstd",
		ClientID:            "weir",
		Linger:              5 * time.Millisecond,
		RecordsPerMessage:   1024,
		MaxBufferedMessages: 10000,
		WhenFull:            "block",
		DeliveryTimeout:     2 * time.Minute,
		MaxMessageBytes:     1 << 20,
		Idempotent:          true,
		Acks:                "all",
	}
}

// HandlesRaw reports whether raw records are shipped as they are
// (payload: raw; config.RawStage).
func (c *Config) HandlesRaw() bool { return strings.EqualFold(c.Payload, "raw") }

// Validate reports every problem of c.
func (c *Config) Validate() error {
	var errs []error
	errs = append(errs, ValidateBrokers(c.Brokers)...)
	if c.Topic == "" {
		errs = append(errs, errors.New("topic: must not be empty"))
	}
	oneOf := func(key, v string, allowed ...string) {
		for _, a := range allowed {
			if strings.EqualFold(v, a) {
				return
			}
		}
		errs = append(errs, fmt.Errorf("%s: %q is not one of %s", key, v, strings.Join(allowed, ", ")))
	}
	oneOf("key", c.Key, "exporter", "flow", "random")
	oneOf("payload", c.Payload, "records", "raw")
	oneOf("compression", c.Compression, "none", "gzip", "snappy", "lz4", "zstd")
	oneOf("when_full", c.WhenFull, "block", "drop")
	oneOf("acks", c.Acks, "all", "leader")
	if strings.EqualFold(c.Key, "flow") && strings.EqualFold(c.Payload, "raw") {
		errs = append(errs, errors.New("key: flow needs payload: records (a raw message holds many flows; decode in the inlet, or key raw messages by exporter)"))
	}
	if c.Idempotent && strings.EqualFold(c.Acks, "leader") {
		errs = append(errs, errors.New("idempotent: true needs acks: all"))
	}
	if c.Linger < 0 {
		errs = append(errs, fmt.Errorf("linger: %s is negative", c.Linger))
	}
	if c.RecordsPerMessage < 1 || c.RecordsPerMessage > 1<<20 {
		errs = append(errs, fmt.Errorf("records_per_message: %d is outside 1..1048576", c.RecordsPerMessage))
	}
	if c.MaxBufferedMessages < 1 {
		errs = append(errs, fmt.Errorf("max_buffered_messages: %d, want at least 1", c.MaxBufferedMessages))
	}
	if c.DeliveryTimeout <= 0 {
		errs = append(errs, fmt.Errorf("delivery_timeout: %s, want a positive duration", c.DeliveryTimeout))
	}
	if c.MaxMessageBytes < 1024 || c.MaxMessageBytes > 1<<30 {
		errs = append(errs, fmt.Errorf("max_message_bytes: %d is outside 1KiB..1GiB", int64(c.MaxMessageBytes)))
	}
	return errors.Join(errs...)
}

// ValidateBrokers checks a brokers list: at least one, each host:port.
// source.kafka uses it too.
func ValidateBrokers(brokers []string) []error {
	var errs []error
	if len(brokers) == 0 {
		errs = append(errs, errors.New("brokers: at least one host:port is required"))
	}
	for i, b := range brokers {
		if _, _, err := net.SplitHostPort(b); err != nil {
			errs = append(errs, fmt.Errorf("brokers[%d]: %q is not host:port: %w", i, b, err))
		}
	}
	return errs
}
