package plugintest

import (
	"os"
	"strings"
	"testing"

	"github.com/weir-flow/weir/core/config"
)

// CheckExample checks a plugin folder's embedded example.yaml: it must
// decode and validate as a whole Weir config (so the test must import the
// plugins it names, e.g. through plugins/all), and README.md in the working
// directory must show it verbatim.
func CheckExample(t *testing.T, exampleYAML string) {
	t.Helper()
	if _, err := config.Parse([]byte(exampleYAML), nil); err != nil {
		t.Fatalf("example.yaml does not validate:\n%v", err)
	}
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatalf("read README.md: %v", err)
	}
	if !strings.Contains(string(readme), strings.TrimSpace(exampleYAML)) {
		t.Errorf("README.md does not show example.yaml verbatim; paste it into the README's example section")
	}
}
