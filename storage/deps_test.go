package storage_test

import (
	"testing"

	"github.com/nst-project/nst/internal/depcheck"
)

// TestNoDriverImports keeps blob drivers (and cgo) out of package storage: main and tests
// choose them with blank imports.
func TestNoDriverImports(t *testing.T) {
	depcheck.Forbid(t, []string{"."}, func(dep string) bool { return depcheck.Driver(dep) || depcheck.Native(dep) })
}
