// Package fake is a pure-Go transfer engine for tests of everything around the real one: it
// needs no libtorch and runs in milliseconds, but keeps the whole engine contract
// (transfer/transfertest checks it as it checks the libtorch engine and the worker pool), so
// pipeline tests exercise validation, scaling, the step loop, callbacks, cancellation,
// checkpoints, resuming, batches and failures. It refuses what the libtorch engine refuses:
// the same request checks (transfer.Request.Validate), the same pyramid and minimum sizes
// (transfer.Pyramid), the same step bookkeeping (transfer.Steps).
package fake

import (
	"context"
	"fmt"
	"image"
	"math"
	"math/rand/v2"
	"time"

	"github.com/nst-project/nst/transfer"
	"github.com/nst-project/nst/transfer/imaging"
)

// Engine is the fake engine. Its behaviour is deterministic for a given Request:
//   - The content and styles are scaled as the real engine scales them (transfer.Pyramid),
//     and, like it, Stylize refuses with an error wrapping transfer.ErrBadInput an image under
//     transfer.MinSide at some level, unless AnySize is set.
//   - A step moves every pixel LR times its distance towards the style colour (the
//     StyleBlend-weighted mean of the styles' mean colours): LR <= 1 converges, LR > 2
//     diverges, and a huge LR overflows to a non-finite loss within two steps, as a real
//     optimiser's would. The step's losses are those of the new image, in 0..1 colour units:
//     ContentLoss the mean squared difference to the content, StyleLoss the blend-weighted
//     sum over styles and channels of the squared differences of channel mean and of channel
//     variance, TVLoss the mean squared difference of neighbouring pixels, TotalLoss =
//     ContentWeight*ContentLoss + StyleWeight*StyleLoss + TVWeight*TVLoss. ElapsedS is
//     synthetic, Step×StepDelay in seconds, so logs of resumed and uninterrupted runs are
//     equal.
//   - Init "content" starts from the content, "noise" from uniform noise seeded by Seed,
//     "style" from the first style resized to the content; each next level starts from the
//     previous level's result resized.
//   - PreserveColors combines each output image's luminance with the content's colour
//     (imaging.CombineLuminance).
//   - A content whose every pixel is exactly (255, 0, 255) magenta has a NaN content loss: the
//     run stops at step 1 with an error wrapping transfer.ErrNonFinite. This is a test hook
//     pipeline tests reach through real image bytes (a lossless magenta PNG).
//   - StylizeBatch runs its requests one after another, each as Stylize would.
//
// Checkpoints hold the image as 3 x H x W values in 0..1 and no optimiser state; a resumed run
// ends with the same image and Log as an uninterrupted one.
//
// The zero Engine is ready to use. Set the fields before the first Stylize and do not change
// them while calls run; then Engine is safe for concurrent use (calls share nothing).
type Engine struct {
	// StepDelay, if > 0, makes every step take that long (for cancellation and signal tests).
	StepDelay time.Duration
	// FailIf, if set, is called first in every Stylize; a non-nil error is returned, wrapped,
	// before any work (for failure injection).
	FailIf func(transfer.Request) error
	// AnySize lets Stylize take images of any size, 1x1 included, where the libtorch engine
	// refuses those under transfer.MinSide: for tests that want tiny images cheap. Tests of
	// what nst does with small images leave it off.
	AnySize bool
}

var _ transfer.BatchEngine = Engine{}

// Info describes the fake engine.
func (Engine) Info() transfer.Info {
	return transfer.Info{Engine: "fake", Device: "cpu", Weights: "none"}
}

// level is one level of the pyramid as the fake computes with it.
type level struct {
	content *image.NRGBA
	w, h    int
	c       []float32 // the content as 3 x h x w values in 0..1
}

type run struct {
	e       Engine
	req     transfer.Request
	p       transfer.Params
	levels  []level
	target  [3]float32   // the style colour
	weights []float64    // blend weight of each style
	means   [][3]float64 // each style's channel means
	vars    [][3]float64 // and variances
	magenta bool
	first   *image.NRGBA // the first style, for Init "style"
}

// Stylize runs the fake optimisation; see Engine.
func (e Engine) Stylize(ctx context.Context, req transfer.Request) (*transfer.Result, error) {
	if e.FailIf != nil {
		if err := e.FailIf(req); err != nil {
			return nil, fmt.Errorf("fake stylize: %w", err)
		}
	}
	r, err := newRun(e, req)
	if err != nil {
		return nil, fmt.Errorf("fake stylize: %w", err)
	}
	res, err := r.run(ctx)
	if err != nil {
		return nil, fmt.Errorf("fake stylize: %w", err)
	}
	return res, nil
}

// StylizeBatch runs reqs one after another, each as Stylize would (transfer.BatchEngine).
func (e Engine) StylizeBatch(ctx context.Context, reqs []transfer.Request) ([]*transfer.Result, []error) {
	results, errs := make([]*transfer.Result, len(reqs)), make([]error, len(reqs))
	for i, req := range reqs {
		results[i], errs[i] = e.Stylize(ctx, req)
	}
	return results, errs
}

func newRun(e Engine, req transfer.Request) (*run, error) {
	if err := req.Validate(); err != nil {
		return nil, err
	}
	p := req.Params
	weights, _ := p.BlendWeights(len(req.Styles)) // checked by Validate
	content := imaging.ToNRGBA(req.Content)
	styles := make([]*image.NRGBA, len(req.Styles))
	for i, s := range req.Styles {
		styles[i] = imaging.ToNRGBA(s)
	}
	sizing := p
	if e.AnySize {
		// Pyramid's minimum follows the deepest layer: conv1_1 needs 1 px.
		sizing.ContentLayer = "conv1_1"
		sizing.StyleLayers = []transfer.LayerWeight{{Layer: "conv1_1", Weight: 1}}
	}
	levels, err := transfer.Pyramid(sizing, content, styles)
	if err != nil {
		return nil, err
	}
	r := &run{e: e, req: req, p: p, weights: weights, magenta: allMagenta(content)}
	for _, l := range levels {
		r.levels = append(r.levels, level{content: l.Content, w: l.Content.Rect.Dx(), h: l.Content.Rect.Dy(), c: toPlanes(l.Content)})
	}
	// The style statistics are those of the styles at the last (full) level.
	for i, st := range levels[len(levels)-1].Styles {
		if i == 0 {
			r.first = st
		}
		m, v := channelStats(toPlanes(st), st.Rect.Dx()*st.Rect.Dy())
		r.means = append(r.means, m)
		r.vars = append(r.vars, v)
		for c := range 3 {
			r.target[c] += float32(weights[i] * m[c])
		}
	}
	return r, nil
}

func allMagenta(img *image.NRGBA) bool {
	for i := 0; i < len(img.Pix); i += 4 {
		if img.Pix[i] != 255 || img.Pix[i+1] != 0 || img.Pix[i+2] != 255 {
			return false
		}
	}
	return true
}

// toPlanes returns img as 3 x H x W channel-major values in 0..1.
func toPlanes(img *image.NRGBA) []float32 {
	w, h := img.Rect.Dx(), img.Rect.Dy()
	out := make([]float32, 3*w*h)
	for y := range h {
		row := img.Pix[img.PixOffset(img.Rect.Min.X, img.Rect.Min.Y+y):]
		for x := range w {
			for c := range 3 {
				out[c*w*h+y*w+x] = float32(row[4*x+c]) / 255
			}
		}
	}
	return out
}

// fromPlanes is toPlanes' inverse, rounding and clamping; the result is opaque.
func fromPlanes(v []float32, w, h int) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for i := range w * h {
		for c := range 3 {
			x := float64(v[c*w*h+i])
			if math.IsNaN(x) {
				x = 0
			}
			img.Pix[4*i+c] = uint8(math.Round(min(max(x, 0), 1) * 255))
		}
		img.Pix[4*i+3] = 255
	}
	return img
}

func channelStats(v []float32, n int) (mean, variance [3]float64) {
	for c := range 3 {
		ch := v[c*n : (c+1)*n]
		for _, x := range ch {
			mean[c] += float64(x)
		}
		mean[c] /= float64(n)
		for _, x := range ch {
			d := float64(x) - mean[c]
			variance[c] += d * d
		}
		variance[c] /= float64(n)
	}
	return mean, variance
}

// losses returns the losses of x (3 x h x w) against the content at level l.
func (r *run) losses(x []float32, l level) transfer.Step {
	var st transfer.Step
	n := l.w * l.h
	for i, v := range x {
		d := float64(v - l.c[i])
		st.ContentLoss += d * d
	}
	st.ContentLoss /= float64(3 * n)
	if r.magenta {
		st.ContentLoss = math.NaN()
	}
	m, vr := channelStats(x, n)
	for k, w := range r.weights {
		for c := range 3 {
			dm, dv := m[c]-r.means[k][c], vr[c]-r.vars[k][c]
			st.StyleLoss += w * (dm*dm + dv*dv)
		}
	}
	for c := range 3 {
		ch := x[c*n : (c+1)*n]
		for y := range l.h {
			for xx := range l.w {
				i := y*l.w + xx
				if xx+1 < l.w {
					d := float64(ch[i+1] - ch[i])
					st.TVLoss += d * d
				}
				if y+1 < l.h {
					d := float64(ch[i+l.w] - ch[i])
					st.TVLoss += d * d
				}
			}
		}
	}
	st.TVLoss /= float64(3 * n)
	st.TotalLoss = r.p.ContentWeight*st.ContentLoss + r.p.StyleWeight*st.StyleLoss + r.p.TVWeight*st.TVLoss
	return st
}

// output returns x as the run's image, colour-preserved if asked.
func (r *run) output(x []float32, l level) *image.NRGBA {
	img := fromPlanes(x, l.w, l.h)
	if r.p.PreserveColors {
		img = imaging.CombineLuminance(img, l.content)
	}
	return img
}

func (r *run) initial(l level) []float32 {
	switch r.p.Init {
	case transfer.InitNoise:
		rng := rand.New(rand.NewPCG(uint64(r.p.Seed), 0x6e7374))
		x := make([]float32, len(l.c))
		for i := range x {
			x[i] = rng.Float32()
		}
		return x
	case transfer.InitStyle:
		return toPlanes(imaging.Resize(r.first, l.w, l.h))
	}
	return append([]float32(nil), l.c...)
}

func (r *run) run(ctx context.Context) (*transfer.Result, error) {
	p := r.p
	delay := r.e.StepDelay
	steps := transfer.NewSteps(r.req, len(r.levels), func(step int) float64 { return float64(step) * delay.Seconds() })
	sizes := make([]image.Point, len(r.levels))
	for i, l := range r.levels {
		sizes[i] = image.Pt(l.w, l.h)
	}
	first, err := steps.Resume(sizes)
	if err != nil {
		return nil, err
	}
	var x []float32
	at := -1 // the level x is at
	if cp := r.req.Resume; cp != nil {
		x, at = append([]float32(nil), cp.Image...), first
	}
	eta := float32(p.LR)
	for li := first; li < len(r.levels); li++ {
		l := r.levels[li]
		switch {
		case x == nil:
			x = r.initial(l)
		case at != li:
			prev := r.levels[at]
			x = toPlanes(imaging.Resize(fromPlanes(x, prev.w, prev.h), l.w, l.h))
		}
		at = li
		state := func() (*transfer.Checkpoint, error) {
			return &transfer.Checkpoint{Width: l.w, Height: l.h, Image: append([]float32(nil), x...)}, nil
		}
		picture := func() (*image.NRGBA, error) { return r.output(x, l), nil }
		for k := steps.StartLevel(li); k < p.LevelSteps(li); k++ {
			if err := steps.Check(ctx, state); err != nil {
				return nil, err
			}
			if delay > 0 {
				t := time.NewTimer(delay)
				select {
				case <-ctx.Done():
					t.Stop()
					return nil, steps.Stop(ctx.Err(), state)
				case <-t.C:
				}
			}
			n := l.w * l.h
			for c := range 3 {
				ch := x[c*n : (c+1)*n]
				for i := range ch {
					ch[i] += eta * (r.target[c] - ch[i])
				}
			}
			if err := steps.Record(r.losses(x, l), picture, state); err != nil {
				return nil, err
			}
			if steps.LevelDone() {
				break
			}
		}
	}
	return steps.Result(r.output(x, r.levels[at])), nil
}
