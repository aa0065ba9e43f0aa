//go:build !weir_nokube

package all

// enrich.podlabels brings client-go, the largest dependency; build with
// -tags weir_nokube to leave it out.
import _ "github.com/weir-flow/weir/plugins/enrich/podlabels"
