// Package ipfix is the export.ipfix plugin: an IPFIX exporting process
// (RFC 7011) that sends every record to one collector over UDP or TCP.
//
// Records are written with templates derived from the fields they carry:
// the typed fields at their canonical widths and every verbatim IE
// (enterprise or unknown) byte-identical, so proxying loses nothing.
//
// Over UDP, templates are resent at least every TemplateRefresh (RFC 7011
// §8.4) and messages stay under MaxMessageSize. Over TCP, templates are sent
// once per connection; a broken connection is re-established with
// exponential backoff, the templates are resent, and the batch that was
// being sent is sent again whole (at-least-once: a collector may see the
// records written just before the break twice).
package ipfix
