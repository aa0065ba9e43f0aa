// Package proxy is the "proxy" processor: it forwards records unaggregated,
// stamping each with the exporter and observation domain of the message
// that carried it, as originalExporterIPv4Address / originalExporterIPv6Address
// (IANA IEs 403/404) and originalObservationDomainId (IE 405).
package proxy
