// Package jsonl is the "export.jsonl" exporter: one JSON object per record,
// one record per line, to a file or standard output. Keys are IANA/Antrea
// IE names, addresses are strings and times RFC 3339 (UTC, milliseconds).
package jsonl
