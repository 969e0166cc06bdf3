package torch

import (
	"context"
	"errors"
	"image"
	"image/color"
	"testing"

	"github.com/nst-project/nst/transfer"
	"github.com/nst-project/nst/transfer/imaging"
)

// TestBatchMatchesSingleRuns: two pairs optimised as one batch give the losses and images
// each gives alone.
func TestBatchMatchesSingleRuns(t *testing.T) {
	e := narrowEngine(t, "vgg19-narrow.pth")
	content, style := loadPNG(t, "content.png"), loadPNG(t, "style.png")
	other := imaging.Resize(style, 64, 64)
	for i := 0; i < len(other.Pix); i += 4 { // a second, different content
		other.Pix[i], other.Pix[i+2] = other.Pix[i+2], other.Pix[i]
	}
	p := smallParams(12)
	p.TVWeight = 10
	reqs := []transfer.Request{
		{Content: content, Styles: []image.Image{style}, Params: p},
		{Content: other, Styles: []image.Image{content}, Params: p},
	}
	var steps [2]int
	for i := range reqs {
		i := i
		reqs[i].OnStep = func(transfer.Step) error { steps[i]++; return nil }
	}
	results, errs := e.StylizeBatch(context.Background(), reqs)
	for i := range reqs {
		if errs[i] != nil {
			t.Fatalf("item %d: %v", i, errs[i])
		}
		alone, err := e.Stylize(context.Background(), transfer.Request{Content: reqs[i].Content, Styles: reqs[i].Styles, Params: p})
		if err != nil {
			t.Fatal(err)
		}
		if steps[i] != 12 || len(results[i].Log) != 12 {
			t.Errorf("item %d: %d callbacks, %d logged steps", i, steps[i], len(results[i].Log))
		}
		for k, st := range results[i].Log {
			if r := relErr(st.TotalLoss, alone.Log[k].TotalLoss); r > 1e-4 {
				t.Errorf("item %d step %d: batch total %v, alone %v (rel %.2g)", i, k+1, st.TotalLoss, alone.Log[k].TotalLoss, r)
			}
		}
		// Batched convolutions round differently: allow a stray level or two, nothing more.
		maxd, off := 0, 0
		for k := range alone.Image.Pix {
			d := max(int(alone.Image.Pix[k])-int(results[i].Image.Pix[k]), int(results[i].Image.Pix[k])-int(alone.Image.Pix[k]))
			maxd = max(maxd, d)
			if d > 1 {
				off++
			}
		}
		if maxd > 3 || off > len(alone.Image.Pix)/1000 {
			t.Errorf("item %d: values differ from the single run by up to %d levels (%d by more than 1)", i, maxd, off)
		}
	}
}

// TestBatchIsolatesFailures: a callback error fails its own request only.
func TestBatchIsolatesFailures(t *testing.T) {
	e := narrowEngine(t, "vgg19-narrow.pth")
	stop := errors.New("disk full")
	p := smallParams(5)
	mk := func() transfer.Request {
		return transfer.Request{Content: loadPNG(t, "content.png"), Styles: []image.Image{loadPNG(t, "style.png")}, Params: p}
	}
	bad, good := mk(), mk()
	bad.OnStep = func(s transfer.Step) error {
		if s.Step == 2 {
			return stop
		}
		return nil
	}
	results, errs := e.StylizeBatch(context.Background(), []transfer.Request{bad, good})
	if !errors.Is(errs[0], stop) || results[0] != nil {
		t.Errorf("failing item: %v", errs[0])
	}
	if errs[1] != nil || results[1] == nil || len(results[1].Log) != 5 {
		t.Errorf("other item: %v", errs[1])
	}
}

// TestBatchFallsBack: requests that cannot share a batch (different sizes, L-BFGS) still get
// their own correct results.
func TestBatchFallsBack(t *testing.T) {
	e := narrowEngine(t, "vgg19-narrow.pth")
	small := imaging.Resize(loadPNG(t, "content.png"), 48, 32)
	p := smallParams(3)
	reqs := []transfer.Request{
		{Content: loadPNG(t, "content.png"), Styles: []image.Image{loadPNG(t, "style.png")}, Params: p},
		{Content: small, Styles: []image.Image{loadPNG(t, "style.png")}, Params: p},
		{Content: small, Styles: []image.Image{solid(40, 40, color.NRGBA{9, 99, 199, 255})}, Params: p},
	}
	results, errs := e.StylizeBatch(context.Background(), reqs)
	for i, want := range []int{64, 48, 48} {
		if errs[i] != nil || results[i].Image.Rect.Dx() != want {
			t.Errorf("item %d: %v", i, errs[i])
		}
	}
	p.Optimizer, p.LR = transfer.LBFGS, 1
	for i := range reqs {
		reqs[i].Params = p
	}
	if _, errs := e.StylizeBatch(context.Background(), reqs); errors.Join(errs...) != nil {
		t.Errorf("L-BFGS requests: %v", errs)
	}
}

// BenchmarkBatch compares stepping 4 pairs as one batch with 4 single runs (64 px, narrow VGG).
func BenchmarkBatch(b *testing.B) {
	e := narrowEngine(b, "vgg19-narrow.pth")
	p := transfer.DefaultParams()
	p.Size, p.Steps = 64, 20
	reqs := make([]transfer.Request, 4)
	for i := range reqs {
		reqs[i] = transfer.Request{Content: loadPNG(b, "content.png"), Styles: []image.Image{loadPNG(b, "style.png")}, Params: p}
	}
	b.Run("batched", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if _, errs := e.StylizeBatch(context.Background(), reqs); errors.Join(errs...) != nil {
				b.Fatal(errs)
			}
		}
	})
	b.Run("one-by-one", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			for _, r := range reqs {
				if _, err := e.Stylize(context.Background(), r); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}
