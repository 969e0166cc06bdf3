package manifests

import (
	"strings"
	"testing"

	"github.com/nst-project/nst/internal/depcheck"
)

// TestImportsNothingOfOurs keeps manifests a leaf: the pipeline turns the schema into the
// engine's parameters, so the schema and the engine change apart, and no cgo comes in.
func TestImportsNothingOfOurs(t *testing.T) {
	depcheck.Forbid(t, []string{"."}, func(dep string) bool {
		return depcheck.Native(dep) || strings.HasPrefix(dep, "github.com/nst-project/nst/") && dep != "github.com/nst-project/nst/manifests"
	})
}
