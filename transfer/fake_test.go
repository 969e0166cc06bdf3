package transfer

import (
	"bytes"
	"context"
	"errors"
	"image"
	"image/color"
	"image/png"
	"math"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nst-project/nst/transfer/imaging"
)

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

func fakeParams(steps int) Params {
	p := DefaultParams()
	p.Size = 24
	p.Steps = steps
	p.LR = 0.05
	p.TVWeight = 2
	return p
}

func fakeRequest(p Params) Request {
	return Request{
		Content: gradient(48, 32),
		Styles:  []image.Image{flat(10, 10, color.NRGBA{200, 40, 40, 255}), gradient(12, 20)},
		Params:  p,
	}
}

func TestFakeInfo(t *testing.T) {
	var o Optimizer = Fake{}
	if i := o.Info(); i.Engine != "fake" || i.Device != "cpu" {
		t.Errorf("Info = %+v", i)
	}
}

func TestFakeBadInput(t *testing.T) {
	ok := fakeRequest(fakeParams(3))
	tests := []struct {
		name   string
		edit   func(*Request)
		saying []string
	}{
		{"invalid params, all listed", func(r *Request) { r.Params.Steps = 0; r.Params.Optimizer = "sgd" }, []string{"steps: 0", `optimizer: "sgd"`}},
		{"no content", func(r *Request) { r.Content = nil }, []string{"content: no image"}},
		{"empty content", func(r *Request) { r.Content = image.NewNRGBA(image.Rectangle{}) }, []string{"content: no image"}},
		{"no styles", func(r *Request) { r.Styles = nil }, []string{"styles: no style image"}},
		{"nil style", func(r *Request) { r.Styles = []image.Image{r.Styles[0], nil} }, []string{"styles[1]: no image"}},
		{"style keys", func(r *Request) { r.StyleKeys = []string{"a"} }, []string{"styleKeys: 1 keys for 2"}},
		{"blend length", func(r *Request) { r.Params.StyleBlend = []float64{1, 2, 3} }, []string{"styleBlend has 3 weights for 2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := ok
			req.Styles = append([]image.Image(nil), ok.Styles...)
			tt.edit(&req)
			called := false
			req.OnStep = func(Step) error { called = true; return nil }
			res, err := Fake{}.Stylize(context.Background(), req)
			if !errors.Is(err, ErrBadInput) || res != nil {
				t.Fatalf("Stylize = %v, %v; want ErrBadInput", res, err)
			}
			for _, s := range tt.saying {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not say %q", err, s)
				}
			}
			if called {
				t.Error("a step ran")
			}
		})
	}
}

func TestFakeRun(t *testing.T) {
	p := fakeParams(20)
	req := fakeRequest(p)
	var steps []Step
	req.OnStep = func(s Step) error { steps = append(steps, s); return nil }
	res, err := Fake{}.Stylize(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if res.Image.Rect != image.Rect(0, 0, 24, 16) {
		t.Errorf("image %v, want the content fitted to 24x16", res.Image.Rect)
	}
	if !reflect.DeepEqual(steps, res.Log) || len(res.Log) != 20 {
		t.Fatalf("OnStep saw %d steps, log has %d", len(steps), len(res.Log))
	}
	for i, s := range res.Log {
		if s.Step != i+1 || s.Scale != 0 || s.ElapsedS != 0 {
			t.Errorf("step %d: %+v", i, s)
		}
		want := p.ContentWeight*s.ContentLoss + p.StyleWeight*s.StyleLoss + p.TVWeight*s.TVLoss
		if math.Abs(s.TotalLoss-want) > 1e-9*want {
			t.Errorf("step %d: total %v, want %v", s.Step, s.TotalLoss, want)
		}
		if i > 0 {
			prev := res.Log[i-1]
			if s.ContentLoss <= prev.ContentLoss || s.StyleLoss >= prev.StyleLoss || s.TVLoss >= prev.TVLoss {
				t.Errorf("step %d: losses %+v after %+v; want content up, style and tv down", s.Step, s, prev)
			}
		}
	}
	if res.Final() != res.Log[19] || res.Duration <= 0 {
		t.Errorf("Final %+v, Duration %v", res.Final(), res.Duration)
	}
	// The last logged content loss is that of the returned image (to 8-bit rounding).
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

	again, err := Fake{}.Stylize(context.Background(), fakeRequest(p))
	if err != nil || !bytes.Equal(again.Image.Pix, res.Image.Pix) || !reflect.DeepEqual(again.Log, res.Log) {
		t.Errorf("second run differs (err %v)", err)
	}
}

func TestFakeInitsAndOptions(t *testing.T) {
	run := func(edit func(*Params)) *Result {
		t.Helper()
		p := fakeParams(1)
		p.LR = 1e-6
		edit(&p)
		res, err := Fake{}.Stylize(context.Background(), fakeRequest(p))
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	content := run(func(*Params) {})
	noise1 := run(func(p *Params) { p.Init = InitNoise; p.Seed = 1 })
	noise1b := run(func(p *Params) { p.Init = InitNoise; p.Seed = 1 })
	noise2 := run(func(p *Params) { p.Init = InitNoise; p.Seed = 2 })
	style := run(func(p *Params) { p.Init = InitStyle })
	if !bytes.Equal(noise1.Image.Pix, noise1b.Image.Pix) || bytes.Equal(noise1.Image.Pix, noise2.Image.Pix) {
		t.Error("noise must be a function of the seed")
	}
	if content.Final().ContentLoss > 1e-6 || noise1.Final().ContentLoss < 0.01 {
		t.Errorf("content loss: content init %v, noise init %v", content.Final().ContentLoss, noise1.Final().ContentLoss)
	}
	if p := style.Image.NRGBAAt(3, 3); p.R != 200 || p.G != 40 {
		t.Errorf("style init starts at %v, want the first style's colour", p)
	}
	full := run(func(p *Params) { p.Size = 0 })
	if full.Image.Rect != image.Rect(0, 0, 48, 32) {
		t.Errorf("Size 0 gave %v", full.Image.Rect)
	}

	// PreserveColors keeps the content's colour: hue of a strongly stylised run stays.
	p := fakeParams(30)
	p.LR = 0.2
	plain, err := Fake{}.Stylize(context.Background(), fakeRequest(p))
	if err != nil {
		t.Fatal(err)
	}
	p.PreserveColors = true
	kept, err := Fake{}.Stylize(context.Background(), fakeRequest(p))
	if err != nil {
		t.Fatal(err)
	}
	content24 := imaging.Fit(gradient(48, 32), 24)
	if d1, d2 := blueDiff(plain.Image, content24), blueDiff(kept.Image, content24); d2*4 > d1 {
		t.Errorf("PreserveColors: colour distance %v, without %v", d2, d1)
	}
}

// blueDiff is the mean |B-R| difference of a and b: how far their colour casts differ.
func blueDiff(a, b *image.NRGBA) float64 {
	var s float64
	for i := 0; i < len(a.Pix); i += 4 {
		s += math.Abs((float64(a.Pix[i+2]) - float64(a.Pix[i])) - (float64(b.Pix[i+2]) - float64(b.Pix[i])))
	}
	return s / float64(len(a.Pix)/4)
}

func TestFakeScales(t *testing.T) {
	p := fakeParams(4)
	p.Size = 40
	p.Scales = 3
	req := fakeRequest(p)
	var sizes []image.Point
	req.CheckpointEvery = 1
	req.OnCheckpoint = func(c *Checkpoint) error {
		sizes = append(sizes, image.Pt(c.Width, c.Height))
		if c.Scale != (c.Step-1)/4 {
			t.Errorf("checkpoint at step %d has scale %d", c.Step, c.Scale)
		}
		return nil
	}
	res, err := Fake{}.Stylize(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Log) != 12 || res.Image.Rect != image.Rect(0, 0, 40, 27) {
		t.Fatalf("log %d steps, image %v", len(res.Log), res.Image.Rect)
	}
	for i, s := range res.Log {
		if s.Step != i+1 || s.Scale != i/4 {
			t.Errorf("log[%d] = step %d scale %d", i, s.Step, s.Scale)
		}
	}
	want := []image.Point{{10, 7}, {20, 14}, {40, 27}} // 27*20/40 = 13.5 rounds to 14
	for i, sz := range sizes {
		if sz != want[i/4] {
			t.Errorf("checkpoint %d is %v, want %v", i+1, sz, want[i/4])
		}
	}
}

func TestFakeCallbacks(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name      string
		edit      func(*Request, *[]string)
		wantErr   error
		wantCalls string
	}{
		{"save and checkpoint cadence", func(r *Request, calls *[]string) {
			r.SaveEvery, r.CheckpointEvery = 3, 4
		}, nil, "img3 cp4 img6 cp8 img9"},
		{"no callbacks without cadence", func(r *Request, calls *[]string) {
			r.SaveEvery, r.CheckpointEvery = 0, -1
		}, nil, ""},
		{"OnStep error stops", func(r *Request, calls *[]string) {
			r.SaveEvery = 1
			r.OnStep = func(s Step) error {
				if s.Step == 2 {
					return boom
				}
				return nil
			}
		}, boom, "img1"},
		{"OnImage error stops", func(r *Request, calls *[]string) {
			r.SaveEvery = 2
			on := r.OnImage
			r.OnImage = func(n int, img *image.NRGBA) error { _ = on(n, img); return boom }
		}, boom, "img2"},
		{"OnCheckpoint error stops", func(r *Request, calls *[]string) {
			r.CheckpointEvery = 5
			on := r.OnCheckpoint
			r.OnCheckpoint = func(c *Checkpoint) error { _ = on(c); return boom }
		}, boom, "cp5"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := fakeRequest(fakeParams(10))
			var calls []string
			req.OnImage = func(n int, img *image.NRGBA) error {
				if img.Rect != image.Rect(0, 0, 24, 16) {
					t.Errorf("image %v", img.Rect)
				}
				calls = append(calls, "img"+strconv.Itoa(n))
				return nil
			}
			req.OnCheckpoint = func(c *Checkpoint) error {
				if c.Step != len(c.Log) || len(c.Image) != 3*c.Width*c.Height {
					t.Errorf("inconsistent checkpoint at %d", c.Step)
				}
				calls = append(calls, "cp"+strconv.Itoa(c.Step))
				return nil
			}
			tt.edit(&req, &calls)
			res, err := Fake{}.Stylize(context.Background(), req)
			if !errors.Is(err, tt.wantErr) || (err != nil) != (res == nil) {
				t.Fatalf("Stylize = %v, want %v", err, tt.wantErr)
			}
			if got := strings.Join(calls, " "); got != tt.wantCalls {
				t.Errorf("calls %q, want %q", got, tt.wantCalls)
			}
		})
	}
}

func TestFakeCancel(t *testing.T) {
	t.Run("checkpoint once on cancel", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		req := fakeRequest(fakeParams(50))
		req.CheckpointEvery = 4
		var cps []int
		req.OnCheckpoint = func(c *Checkpoint) error { cps = append(cps, c.Step); return nil }
		req.OnStep = func(s Step) error {
			if s.Step == 6 {
				cancel()
			}
			return nil
		}
		res, err := Fake{}.Stylize(ctx, req)
		if !errors.Is(err, context.Canceled) || res != nil {
			t.Fatalf("Stylize = %v, %v", res, err)
		}
		if !reflect.DeepEqual(cps, []int{4, 6}) {
			t.Errorf("checkpoints at %v, want [4 6]", cps)
		}
	})
	t.Run("already cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		req := fakeRequest(fakeParams(5))
		req.CheckpointEvery = 1
		req.OnCheckpoint = func(*Checkpoint) error { t.Error("checkpoint without progress"); return nil }
		if _, err := (Fake{}).Stylize(ctx, req); !errors.Is(err, context.Canceled) {
			t.Fatal(err)
		}
	})
	t.Run("deadline during StepDelay", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		start := time.Now()
		res, err := Fake{StepDelay: 20 * time.Millisecond}.Stylize(ctx, fakeRequest(fakeParams(1000)))
		if !errors.Is(err, context.DeadlineExceeded) || res != nil {
			t.Fatalf("Stylize = %v", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("took %v to notice the deadline", d)
		}
	})
	t.Run("StepDelay sets synthetic elapsed time", func(t *testing.T) {
		res, err := Fake{StepDelay: time.Millisecond}.Stylize(context.Background(), fakeRequest(fakeParams(3)))
		if err != nil {
			t.Fatal(err)
		}
		if res.Final().ElapsedS != 0.003 || res.Duration < 3*time.Millisecond {
			t.Errorf("elapsed %v, duration %v", res.Final().ElapsedS, res.Duration)
		}
	})
}

func TestFakeResumeEqualsUninterrupted(t *testing.T) {
	for _, tt := range []struct {
		name string
		edit func(*Params)
	}{
		{"one scale", func(*Params) {}},
		{"three scales, noise, preserve colours", func(p *Params) {
			p.Scales, p.Size, p.Init, p.Seed, p.PreserveColors = 3, 40, InitNoise, 7, true
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := fakeParams(5)
			tt.edit(&p)
			req := fakeRequest(p)
			var cps []*Checkpoint
			req.CheckpointEvery = 1
			req.OnCheckpoint = func(c *Checkpoint) error { cps = append(cps, c); return nil }
			want, err := Fake{}.Stylize(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			for _, cp := range cps {
				// Through bytes, as the pipeline stores them.
				b, err := cp.MarshalBinary()
				if err != nil {
					t.Fatal(err)
				}
				var back Checkpoint
				if err := back.UnmarshalBinary(b); err != nil {
					t.Fatal(err)
				}
				r := fakeRequest(p)
				r.Resume = &back
				var seen []int
				r.OnStep = func(s Step) error { seen = append(seen, s.Step); return nil }
				got, err := Fake{}.Stylize(context.Background(), r)
				if err != nil {
					t.Fatalf("resume from step %d: %v", cp.Step, err)
				}
				if !bytes.Equal(got.Image.Pix, want.Image.Pix) || !reflect.DeepEqual(got.Log, want.Log) {
					t.Errorf("resume from step %d: result differs from the uninterrupted run", cp.Step)
				}
				if len(seen) != len(want.Log)-cp.Step || (len(seen) > 0 && seen[0] != cp.Step+1) {
					t.Errorf("resume from step %d ran steps %v", cp.Step, seen)
				}
			}
		})
	}
}

func TestFakeResumeMismatch(t *testing.T) {
	p := fakeParams(6)
	req := fakeRequest(p)
	var cp *Checkpoint
	req.CheckpointEvery = 3
	req.OnCheckpoint = func(c *Checkpoint) error { cp = c; return nil }
	if _, err := (Fake{}).Stylize(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		edit func(*Request, *Checkpoint)
	}{
		{"other params", func(r *Request, c *Checkpoint) { r.Params.StyleWeight = 5 }},
		{"other optimizer in checkpoint", func(r *Request, c *Checkpoint) { c.Optimizer = LBFGS }},
		{"content of another size", func(r *Request, c *Checkpoint) { r.Content = gradient(48, 48) }},
		{"step beyond the run", func(r *Request, c *Checkpoint) { c.Step = 7; c.Log = append(c.Log, c.Log[0]) }},
		{"step and log disagree", func(r *Request, c *Checkpoint) { c.Log = c.Log[:2] }},
		{"wrong scale", func(r *Request, c *Checkpoint) { c.Scale = 1 }},
		{"short image", func(r *Request, c *Checkpoint) { c.Image = c.Image[:10] }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := *cp
			c.Log = append([]Step(nil), cp.Log...)
			r := fakeRequest(p)
			tt.edit(&r, &c)
			r.Resume = &c
			if _, err := (Fake{}).Stylize(context.Background(), r); !errors.Is(err, ErrCheckpointMismatch) {
				t.Errorf("Stylize = %v, want ErrCheckpointMismatch", err)
			}
		})
	}
}

func TestFakeMagentaIsNonFinite(t *testing.T) {
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
	req.OnStep = func(Step) error { steps++; return nil }
	res, err := Fake{}.Stylize(context.Background(), req)
	if !errors.Is(err, ErrNonFinite) || res != nil || steps != 0 {
		t.Fatalf("Stylize = %v, %v after %d steps; want ErrNonFinite at step 1", res, err, steps)
	}
	// Almost magenta is fine.
	req.Content = testImage(9, 9, func(x, y int) color.NRGBA {
		if x == 4 && y == 4 {
			return color.NRGBA{254, 0, 255, 255}
		}
		return color.NRGBA{255, 0, 255, 255}
	})
	if _, err := (Fake{}).Stylize(context.Background(), req); err != nil {
		t.Fatal(err)
	}
}

func TestFakeFailIf(t *testing.T) {
	boom := errors.New("injected")
	var got Request
	f := Fake{FailIf: func(r Request) error { got = r; return boom }}
	req := fakeRequest(fakeParams(3))
	req.Params.Steps = 0 // FailIf runs before validation
	if _, err := f.Stylize(context.Background(), req); !errors.Is(err, boom) {
		t.Fatalf("Stylize = %v", err)
	}
	if got.Params.Steps != 0 || got.Content != req.Content {
		t.Error("FailIf did not get the request")
	}
	f.FailIf = func(Request) error { return nil }
	if _, err := f.Stylize(context.Background(), fakeRequest(fakeParams(1))); err != nil {
		t.Fatal(err)
	}
}

func TestFakeConcurrent(t *testing.T) {
	f := Fake{}
	want, err := f.Stylize(context.Background(), fakeRequest(fakeParams(8)))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 6 {
		wg.Go(func() {
			got, err := f.Stylize(context.Background(), fakeRequest(fakeParams(8)))
			if err != nil || !bytes.Equal(got.Image.Pix, want.Image.Pix) {
				t.Errorf("concurrent run differs: %v", err)
			}
		})
	}
	wg.Wait()
}
