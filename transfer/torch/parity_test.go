package torch

import (
	"bufio"
	"context"
	"encoding/json"
	"image"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/nst-project/nst/transfer"
	"github.com/nst-project/nst/transfer/imaging"
)

// Fixtures made by reference/make_fixtures.py; goldens by reference/seed_loop.py (the seed's
// PyTorch loop on the same libtorch). See reference/README.md to regenerate them.
const refDir = "../../reference/testdata"

func loadPNG(t testing.TB, name string) *image.NRGBA {
	t.Helper()
	f, err := os.Open(filepath.Join(refDir, name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, _, err := imaging.Decode(f, imaging.DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	return img
}

type goldenStep struct {
	Step        int     `json:"step"`
	ContentLoss float64 `json:"content_loss"`
	StyleLoss   float64 `json:"style_loss"`
	TotalLoss   float64 `json:"total_loss"`
}

func loadGolden(t testing.TB, name string) []goldenStep {
	t.Helper()
	f, err := os.Open(filepath.Join(refDir, name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []goldenStep
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var g goldenStep
		if err := json.Unmarshal(sc.Bytes(), &g); err != nil {
			t.Fatal(err)
		}
		out = append(out, g)
	}
	return out
}

func narrowEngine(t testing.TB, file string) *Engine {
	t.Helper()
	e, err := New(Options{Weights: filepath.Join(refDir, file), Device: "cpu", Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

func relErr(got, want float64) float64 {
	if want == 0 {
		return math.Abs(got)
	}
	return math.Abs(got-want) / math.Abs(want)
}

// TestParityWithSeed runs the seed's defaults (Adam lr 0.003, alpha 1, beta 1e6, content init,
// conv4_2 / conv1_1..conv5_1 with weights 1, .8, .5, .3, .1) for 100 steps on the reference
// fixtures and compares every step's losses with the PyTorch goldens: total and style loss
// within 1e-5 relative at every step, content loss (0 at step 1, then small) within 1e-3 from
// step 2. Not bit for bit: the golden was made on another CPU, and oneDNN's and MKL's kernels
// round by instruction set. Measured on the development VM (Intel Xeon, AVX-512) against it:
// at most 6.1e-7 (total), 6.7e-7 (style), 6.1e-5 (content).
// The engine's default layout is NCHW, the seed's; TestChannelsLast covers the other.
func TestParityWithSeed(t *testing.T) {
	golden := loadGolden(t, "golden-adam.jsonl")
	e := narrowEngine(t, "vgg19-narrow.pth")
	if got := e.Info().MemoryFormat; got != NCHW {
		t.Fatalf("engine reports memory format %q, want the seed's %q", got, NCHW)
	}
	p := transfer.DefaultParams()
	p.Size = 64
	p.Steps = len(golden)
	res, err := e.Stylize(context.Background(), transfer.Request{
		Content: loadPNG(t, "content.png"), Styles: []image.Image{loadPNG(t, "style.png")}, Params: p,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Log) != len(golden) {
		t.Fatalf("%d steps logged, want %d", len(res.Log), len(golden))
	}
	for i, g := range golden {
		got := res.Log[i]
		const tol = 1e-5
		if got.Step != g.Step {
			t.Fatalf("step %d logged as %d", g.Step, got.Step)
		}
		if r := relErr(got.TotalLoss, g.TotalLoss); r > tol {
			t.Errorf("step %d: total %.9g, seed %.9g (rel err %.2g > %g)", g.Step, got.TotalLoss, g.TotalLoss, r, tol)
		}
		if r := relErr(got.StyleLoss, g.StyleLoss); r > tol {
			t.Errorf("step %d: style %.9g, seed %.9g (rel err %.2g > %g)", g.Step, got.StyleLoss, g.StyleLoss, r, tol)
		}
		if g.Step > 1 {
			if r := relErr(got.ContentLoss, g.ContentLoss); r > 100*tol {
				t.Errorf("step %d: content %.9g, seed %.9g (rel err %.2g > %g)", g.Step, got.ContentLoss, g.ContentLoss, r, 100*tol)
			}
		}
	}
	t.Logf("step 1 total %.9g (seed %.9g); step %d total %.9g (seed %.9g)",
		res.Log[0].TotalLoss, golden[0].TotalLoss, len(golden), res.Final().TotalLoss, golden[len(golden)-1].TotalLoss)
}

// lbfgsTolerance is the relative tolerance on the total and style loss of L-BFGS iteration
// step against golden-lbfgs.jsonl. The two optimisers agree to float rounding at first and
// drift apart as rounding differences compound through the line search and the history
// (torch keeps the step length and the two-loop scalars in float32 tensors, nst in float64).
// Measured on the development VM (Intel Xeon, AVX-512): at most 1e-7 to step 5, 3.3e-6 to 13,
// 6.2e-5 to 21 and 5.8e-4 to 26; the tolerances are about ten times that.
func lbfgsTolerance(step int) float64 {
	switch {
	case step <= 5:
		return 1e-6
	case step <= 13:
		return 3e-5
	case step <= 21:
		return 1e-3
	default:
		return 1e-2
	}
}

// TestLBFGSParity runs nst's L-BFGS (lr 1, history 100, strong Wolfe, content init, the seed's
// loss) on the reference fixtures for as many iterations as golden-lbfgs.jsonl holds, which
// reference/seed_loop.py --optimizer lbfgs wrote with torch.optim.LBFGS(line_search_fn=
// "strong_wolfe") on the same libtorch, and compares every iteration's losses within
// lbfgsTolerance (the content loss, small at first, within ten times that, from step 2).
func TestLBFGSParity(t *testing.T) {
	golden := loadGolden(t, "golden-lbfgs.jsonl")
	e := narrowEngine(t, "vgg19-narrow.pth")
	p := transfer.DefaultParams()
	p.Size = 64
	p.Steps = len(golden)
	p.Optimizer = transfer.LBFGS
	p.LR = 1
	res, err := e.Stylize(context.Background(), transfer.Request{
		Content: loadPNG(t, "content.png"), Styles: []image.Image{loadPNG(t, "style.png")}, Params: p,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Log) != len(golden) {
		t.Fatalf("%d iterations logged, want %d (converged early?)", len(res.Log), len(golden))
	}
	worst := 0.0
	for i, g := range golden {
		got, tol := res.Log[i], lbfgsTolerance(g.Step)
		if got.Step != g.Step {
			t.Fatalf("step %d logged as %d", g.Step, got.Step)
		}
		r := relErr(got.TotalLoss, g.TotalLoss)
		worst = max(worst, r/tol)
		if r > tol {
			t.Errorf("step %d: total %.9g, torch %.9g (rel err %.2g > %g)", g.Step, got.TotalLoss, g.TotalLoss, r, tol)
		}
		if r := relErr(got.StyleLoss, g.StyleLoss); r > tol {
			t.Errorf("step %d: style %.9g, torch %.9g (rel err %.2g > %g)", g.Step, got.StyleLoss, g.StyleLoss, r, tol)
		}
		if g.Step > 1 {
			if r := relErr(got.ContentLoss, g.ContentLoss); r > 100*tol {
				t.Errorf("step %d: content %.9g, torch %.9g (rel err %.2g > %g)", g.Step, got.ContentLoss, g.ContentLoss, r, 10*tol)
			}
		}
	}
	t.Logf("worst total-loss error: %.2g of its step's tolerance; step %d total %.9g (torch %.9g)",
		worst, len(golden), res.Final().TotalLoss, golden[len(golden)-1].TotalLoss)
}
