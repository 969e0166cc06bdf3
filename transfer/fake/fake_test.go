package fake

import (
	"bytes"
	"context"
	"errors"
	"image"
	"image/color"
	"image/png"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nst-project/nst/transfer"
	"github.com/nst-project/nst/transfer/imaging"
	"github.com/nst-project/nst/transfer/transfertest"
)

// TestConformance runs the engine contract on the fake engine, with no caveats.
func TestConformance(t *testing.T) {
	transfertest.Run(t, func(*testing.T) transfer.Engine { return Engine{} }, transfertest.Caveats{})
}

func testImage(w, h int, f func(x, y int) color.NRGBA) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.SetNRGBA(x, y, f(x, y))
		}
	}
	return img
}

func gradient(w, h int) *image.NRGBA {
	return testImage(w, h, func(x, y int) color.NRGBA {
		return color.NRGBA{uint8(x * 255 / w), uint8(y * 255 / h), 128, 255}
	})
}

func flat(w, h int, c color.NRGBA) *image.NRGBA {
	return testImage(w, h, func(int, int) color.NRGBA { return c })
}

func fakeParams(steps int) transfer.Params {
	p := transfer.DefaultParams()
	p.Size = 24
	p.Steps = steps
	p.LR = 0.05
	p.TVWeight = 2
	return p
}

// fakeRequest is a request of images below VGG19's minimum: run with AnySize.
func fakeRequest(p transfer.Params) transfer.Request {
	return transfer.Request{
		Content: gradient(48, 32),
		Styles:  []image.Image{flat(10, 10, color.NRGBA{200, 40, 40, 255}), gradient(12, 20)},
		Params:  p,
	}
}

var tiny = Engine{AnySize: true}

// TestModel checks the fake's model: each step moves the image towards the style colour, so
// the content loss rises while the style and TV losses fall, and the logged content loss is
// that of the returned image.
func TestModel(t *testing.T) {
	p := fakeParams(20)
	res, err := tiny.Stylize(context.Background(), fakeRequest(p))
	if err != nil {
		t.Fatal(err)
	}
	if res.Image.Rect != image.Rect(0, 0, 24, 16) || len(res.Log) != 20 {
		t.Fatalf("image %v, %d steps; want the content fitted to 24x16 and 20 steps", res.Image.Rect, len(res.Log))
	}
	for i, s := range res.Log {
		if s.ElapsedS != 0 {
			t.Errorf("step %d: elapsed %v without StepDelay", s.Step, s.ElapsedS)
		}
		if i > 0 {
			prev := res.Log[i-1]
			if s.ContentLoss <= prev.ContentLoss || s.StyleLoss >= prev.StyleLoss || s.TVLoss >= prev.TVLoss {
				t.Errorf("step %d: losses %+v after %+v; want content up, style and tv down", s.Step, s, prev)
			}
		}
	}
	content := imaging.Fit(gradient(48, 32), 24)
	var mse float64
	for i := range content.Pix {
		if i%4 == 3 {
			continue
		}
		d := (float64(res.Image.Pix[i]) - float64(content.Pix[i])) / 255
		mse += d * d
	}
	mse /= float64(3 * 24 * 16)
	if math.Abs(mse-res.Final().ContentLoss) > 0.01*res.Final().ContentLoss+1e-5 {
		t.Errorf("image MSE %v, logged %v", mse, res.Final().ContentLoss)
	}
}

// TestLearningRate: LR scales the step; above 2 the image diverges, as gradient descent's
// does, and its losses grow.
func TestLearningRate(t *testing.T) {
	p := fakeParams(6)
	p.LR = 2.5
	res, err := tiny.Stylize(context.Background(), fakeRequest(p))
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i < len(res.Log); i++ {
		if res.Log[i].StyleLoss <= res.Log[i-1].StyleLoss {
			t.Errorf("lr 2.5, step %d: style loss %g after %g, want it growing", i+1, res.Log[i].StyleLoss, res.Log[i-1].StyleLoss)
		}
	}
}

func TestInitsAndSize(t *testing.T) {
	run := func(edit func(*transfer.Params)) *transfer.Result {
		t.Helper()
		p := fakeParams(1)
		p.LR = 1e-6
		edit(&p)
		res, err := tiny.Stylize(context.Background(), fakeRequest(p))
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	content := run(func(*transfer.Params) {})
	noise := run(func(p *transfer.Params) { p.Init = transfer.InitNoise; p.Seed = 1 })
	style := run(func(p *transfer.Params) { p.Init = transfer.InitStyle })
	if content.Final().ContentLoss > 1e-6 || noise.Final().ContentLoss < 0.01 {
		t.Errorf("content loss: content init %v, noise init %v", content.Final().ContentLoss, noise.Final().ContentLoss)
	}
	if p := style.Image.NRGBAAt(3, 3); p.R != 200 || p.G != 40 {
		t.Errorf("style init starts at %v, want the first style's colour", p)
	}
	full := run(func(p *transfer.Params) { p.Size = 0 })
	if full.Image.Rect != image.Rect(0, 0, 48, 32) {
		t.Errorf("Size 0 gave %v", full.Image.Rect)
	}
}

// TestAnySize: by default the fake refuses what the libtorch engine refuses (below
// transfer.MinSide); AnySize lifts that, down to 1x1.
func TestAnySize(t *testing.T) {
	req := transfer.Request{Content: gradient(1, 1), Styles: []image.Image{gradient(3, 2)}, Params: fakeParams(2)}
	if _, err := (Engine{}).Stylize(context.Background(), req); !errors.Is(err, transfer.ErrBadInput) ||
		!strings.Contains(err.Error(), "the content is 1x1 px at scale 1 of 1; conv5_1 needs at least 16 px per side") {
		t.Errorf("default: err = %v, want the libtorch engine's refusal", err)
	}
	res, err := tiny.Stylize(context.Background(), req)
	if err != nil || res.Image.Rect.Size() != image.Pt(1, 1) {
		t.Errorf("AnySize: %v, %v", res, err)
	}
}

func TestStepDelay(t *testing.T) {
	t.Run("synthetic elapsed time", func(t *testing.T) {
		res, err := Engine{StepDelay: time.Millisecond, AnySize: true}.Stylize(context.Background(), fakeRequest(fakeParams(3)))
		if err != nil {
			t.Fatal(err)
		}
		if res.Final().ElapsedS != 0.003 || res.Duration < 3*time.Millisecond {
			t.Errorf("elapsed %v, duration %v", res.Final().ElapsedS, res.Duration)
		}
	})
	t.Run("deadline during a step", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		start := time.Now()
		res, err := Engine{StepDelay: 20 * time.Second, AnySize: true}.Stylize(ctx, fakeRequest(fakeParams(5)))
		if !errors.Is(err, context.DeadlineExceeded) || res != nil {
			t.Fatalf("Stylize = %v", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("took %v to notice the deadline", d)
		}
	})
}

// TestMagentaIsNonFinite: the test hook pipeline tests reach through image bytes.
func TestMagentaIsNonFinite(t *testing.T) {
	var b bytes.Buffer
	if err := png.Encode(&b, flat(9, 9, color.NRGBA{255, 0, 255, 255})); err != nil {
		t.Fatal(err)
	}
	content, _, err := imaging.Decode(&b, imaging.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	req := fakeRequest(fakeParams(5))
	req.Content = content
	steps := 0
	req.OnStep = func(transfer.Step) error { steps++; return nil }
	res, err := tiny.Stylize(context.Background(), req)
	if !errors.Is(err, transfer.ErrNonFinite) || res != nil || steps != 0 || !strings.Contains(err.Error(), "at step 1 ") {
		t.Fatalf("Stylize = %v, %v after %d steps; want ErrNonFinite at step 1", res, err, steps)
	}
	// Almost magenta is fine.
	req.Content = testImage(9, 9, func(x, y int) color.NRGBA {
		if x == 4 && y == 4 {
			return color.NRGBA{254, 0, 255, 255}
		}
		return color.NRGBA{255, 0, 255, 255}
	})
	if _, err := tiny.Stylize(context.Background(), req); err != nil {
		t.Fatal(err)
	}
}

func TestFailIf(t *testing.T) {
	boom := errors.New("injected")
	var got transfer.Request
	f := Engine{FailIf: func(r transfer.Request) error { got = r; return boom }, AnySize: true}
	req := fakeRequest(fakeParams(3))
	req.Params.Steps = 0 // FailIf runs before validation
	if _, err := f.Stylize(context.Background(), req); !errors.Is(err, boom) {
		t.Fatalf("Stylize = %v", err)
	}
	if got.Params.Steps != 0 || got.Content != req.Content {
		t.Error("FailIf did not get the request")
	}
	f.FailIf = func(transfer.Request) error { return nil }
	if _, err := f.Stylize(context.Background(), fakeRequest(fakeParams(1))); err != nil {
		t.Fatal(err)
	}
}

// TestBatchIsOneByOne: StylizeBatch gives exactly what Stylize gives for each request.
func TestBatchIsOneByOne(t *testing.T) {
	reqs := []transfer.Request{fakeRequest(fakeParams(3)), fakeRequest(fakeParams(4))}
	results, errs := tiny.StylizeBatch(context.Background(), reqs)
	for i, r := range reqs {
		alone, err := tiny.Stylize(context.Background(), r)
		if err != nil || errs[i] != nil || !reflect.DeepEqual(alone.Log, results[i].Log) || !bytes.Equal(alone.Image.Pix, results[i].Image.Pix) {
			t.Errorf("request %d: batched differs from alone (%v, %v)", i, err, errs[i])
		}
	}
}
