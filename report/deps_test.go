package report

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImportBoundary: report renders in pure Go: no gotch, no transfer/torch, no blob driver.
func TestImportBoundary(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Skipf("go list: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		if strings.Contains(dep, "sugarme/gotch") || strings.HasSuffix(dep, "/transfer/torch") || strings.HasPrefix(dep, "gocloud.dev/") ||
			strings.HasSuffix(dep, "nst/pipeline") {
			t.Errorf("imports %s", dep)
		}
	}
}
