package depcheck

import (
	"testing"
)

// TestCatches: the check finds what it is told to forbid (cmd/nst blank-imports the drivers
// and links gotch).
func TestCatches(t *testing.T) {
	var found []string
	out := map[string]bool{}
	Forbid(t, []string{"../../cmd/nst"}, func(dep string) bool {
		if Driver(dep) || Native(dep) {
			found = append(found, dep)
			out[dep] = true
		}
		return false
	})
	for _, want := range []string{"gocloud.dev/blob/s3blob", "github.com/sugarme/gotch", "github.com/nst-project/nst/transfer/torch"} {
		if !out[want] {
			t.Errorf("%s not reported among cmd/nst's dependencies (found %v)", want, found)
		}
	}
}
