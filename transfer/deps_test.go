package transfer

import (
	"strings"
	"testing"

	"github.com/nst-project/nst/internal/depcheck"
)

// TestImportBoundary: the engine contract, the fake, the suite and the worker pool are pure
// Go: nothing of them reaches gotch or transfer/torch (so pipeline tests need no libtorch),
// nor anything of ours but transfer's own packages.
func TestImportBoundary(t *testing.T) {
	depcheck.Forbid(t, []string{".", "./fake", "./transfertest", "./worker", "./imaging/..."}, func(dep string) bool {
		ours := strings.HasPrefix(dep, "github.com/nst-project/nst/")
		return depcheck.Native(dep) || (ours && !strings.HasPrefix(dep, "github.com/nst-project/nst/transfer"))
	})
}
