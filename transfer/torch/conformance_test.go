package torch

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/nst-project/nst/transfer"
	"github.com/nst-project/nst/transfer/transfertest"
	"github.com/nst-project/nst/transfer/worker"
)

// TestMain lets the test binary serve as an engine worker (transfer/worker) running this
// engine on the narrow fixture, when NST_TORCH_TEST_WORKER is set: TestConformance/pool runs
// the contract through worker processes, as nst run does.
func TestMain(m *testing.M) {
	if os.Getenv("NST_TORCH_TEST_WORKER") != "" {
		e, err := New(Options{Weights: filepath.Join(refDir, "vgg19-narrow.pth"), Device: "cpu", Threads: 1})
		if err == nil {
			err = worker.Serve(context.Background(), os.Stdin, os.Stdout, e)
			e.Close()
		}
		if err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestConformance runs the engine contract (transfertest) on the libtorch engine, on the
// narrow VGG19 fixture, in this process and through a pool of worker processes.
//
// Its caveats: batched convolutions round differently from single ones, and L-BFGS's history
// is not checkpointed (a resumed L-BFGS run rebuilds it); through workers, cancellation lags.
func TestConformance(t *testing.T) {
	caveats := transfertest.Caveats{ApproximateBatch: true, LBFGSResumeDiffers: true}
	t.Run("in-process", func(t *testing.T) {
		transfertest.Run(t, func(t *testing.T) transfer.Engine { return narrowEngine(t, "vgg19-narrow.pth") }, caveats)
	})
	t.Run("pool", func(t *testing.T) {
		exe, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		p, err := worker.New(t.Context(), worker.Options{Command: []string{exe}, Size: 2,
			Env: append(os.Environ(), "NST_TORCH_TEST_WORKER=1")})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Close() })
		c := caveats
		c.CancelLags = true
		transfertest.Run(t, func(*testing.T) transfer.Engine { return p }, c)
	})
}
