// Package depcheck keeps the import boundaries of STYLE.md honest in tests: which packages may
// not reach gotch, blob drivers or one another.
package depcheck

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// Drivers are gocloud's blob drivers: main and tests pick them with blank imports.
var Drivers = []string{"gocloud.dev/blob/fileblob", "gocloud.dev/blob/memblob", "gocloud.dev/blob/s3blob",
	"gocloud.dev/blob/gcsblob", "gocloud.dev/blob/azureblob"}

// Forbid fails t for every package that pkgs (go list patterns, relative to the test's
// directory) depend on, directly or not, and that forbidden reports.
func Forbid(t testing.TB, pkgs []string, forbidden func(dep string) bool) {
	t.Helper()
	cmd := exec.Command("go", append([]string{"list", "-deps"}, pkgs...)...)
	// The boundaries are those of the real build, which has cgo: with CGO_ENABLED=0 (the
	// CGO-free test run) gotch's cgo files would drop out of the graph and the listing fail.
	cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps %v: %v\n%s", pkgs, err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		if forbidden(dep) {
			t.Errorf("%v depend on %s", pkgs, dep)
		}
	}
}

// Native reports gotch and nst's libtorch engine, the only cgo of ours. (runtime/cgo itself
// is not reported: the standard library's net package can bring it in.)
func Native(dep string) bool {
	return strings.Contains(dep, "sugarme/gotch") || strings.HasSuffix(dep, "nst/transfer/torch")
}

// Driver reports a blob driver.
func Driver(dep string) bool {
	for _, d := range Drivers {
		if dep == d {
			return true
		}
	}
	return false
}
