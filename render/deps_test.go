package render

import (
	"strings"
	"testing"

	"github.com/nst-project/nst/internal/depcheck"
)

// TestImportBoundary: render draws in pure Go: no gotch, no transfer/torch, no buckets, no
// pipeline.
func TestImportBoundary(t *testing.T) {
	depcheck.Forbid(t, []string{"."}, func(dep string) bool {
		return depcheck.Native(dep) || strings.HasPrefix(dep, "gocloud.dev/") || strings.HasSuffix(dep, "nst/pipeline")
	})
}
