package kafka

import (
	_ "embed"
	"errors"
	"fmt"
	"strings"
	"time"

	exportkafka "github.com/weir-flow/weir/plugins/export/kafka"
)

// ExampleYAML is example.yaml, a complete outlet pipeline using the plugin.
//
//go:embed example.yaml
var ExampleYAML string

// Config configures source.kafka.
type Config struct {
	// Brokers are the seed brokers, "host:port". Required.
	Brokers []string `koanf:"brokers"`
	// Topic is the topic to consume. Required.
	Topic string `koanf:"topic"`
	// Group is the consumer group: the members of a group share the
	// topic's partitions. Default "weir".
	Group string `koanf:"group"`
	// ClientID names the client to the brokers. Default "weir".
	ClientID string `koanf:"client_id"`
	// StartOffset is where a group with no committed offset starts:
	// "earliest" or "latest". Default "earliest".
	StartOffset string `koanf:"start_offset"`
	// CommitInterval is how often exported offsets are committed; it
	// bounds the duplicates after a crash. Default 1s.
	CommitInterval time.Duration `koanf:"commit_interval"`
	// MaxPollRecords bounds the Kafka messages taken per poll; it bounds
	// the messages in the pipeline at once and the duplicates after a
	// crash. Default 1000.
	MaxPollRecords int `koanf:"max_poll_records"`
	// SessionTimeout is how long the group waits for a silent member
	// before giving its partitions to the others. Default 10s.
	SessionTimeout time.Duration `koanf:"session_timeout"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() *Config {
	return &Config{
		Group:          "weir",
		ClientID:       "weir",
		StartOffset:    "earliest",
		CommitInterval: time.Second,
		MaxPollRecords: 1000,
		SessionTimeout: 10 * time.Second,
	}
}

// Validate reports every problem of c.
func (c *Config) Validate() error {
	errs := exportkafka.ValidateBrokers(c.Brokers)
	if c.Topic == "" {
		errs = append(errs, errors.New("topic: must not be empty"))
	}
	if c.Group == "" {
		errs = append(errs, errors.New("group: must not be empty"))
	}
	if s := strings.ToLower(c.StartOffset); s != "earliest" && s != "latest" {
		errs = append(errs, fmt.Errorf("start_offset: %q is not one of earliest, latest", c.StartOffset))
	}
	if c.CommitInterval <= 0 {
		errs = append(errs, fmt.Errorf("commit_interval: %s, want a positive duration", c.CommitInterval))
	}
	if c.MaxPollRecords < 1 {
		errs = append(errs, fmt.Errorf("max_poll_records: %d, want at least 1", c.MaxPollRecords))
	}
	if c.SessionTimeout < time.Second {
		errs = append(errs, fmt.Errorf("session_timeout: %s, want at least 1s", c.SessionTimeout))
	}
	return errors.Join(errs...)
}
