package transfer

import (
	"context"
	"errors"
	"fmt"
	"image"
	"math"
	"math/rand/v2"
	"time"

	"github.com/nst-project/nst/transfer/imaging"
)

// Fake is a pure-Go Optimizer for tests of everything around the engine: it needs no libtorch
// and runs in milliseconds, but honours the whole Optimizer contract, so pipeline tests
// exercise validation, scaling, the step loop, callbacks, cancellation, checkpoints, resuming
// and failures.
//
// Behaviour, deterministic for a given Request:
//   - Params are validated (Params.Validate, and at least one non-nil style, StyleKeys of the
//     styles' length, StyleBlend of theirs); a problem returns an error wrapping ErrBadInput.
//   - The content is scaled as the real engine does: imaging.Fit to Params.Size, and with
//     Scales > 1 a pyramid whose scale s has longest side Size/2^(Scales-1-s), each scale
//     started from the previous result resized; Steps steps run per scale.
//   - A step moves every pixel the fraction min(LR, 1) of the way to the style colour (the
//     StyleBlend-weighted mean of the styles' mean colours). Its Step then holds the losses of
//     the new image, in 0..1 colour units: ContentLoss the mean squared difference to the
//     content, StyleLoss the blend-weighted sum over styles and channels of the squared
//     differences of channel mean and of channel variance, TVLoss the mean squared difference
//     of neighbouring pixels, TotalLoss = ContentWeight*ContentLoss + StyleWeight*StyleLoss +
//     TVWeight*TVLoss. ElapsedS is synthetic, Step×StepDelay in seconds, so logs of resumed
//     and uninterrupted runs are equal.
//   - Init "content" starts from the content, "noise" from uniform noise seeded by Seed,
//     "style" from the first style resized to the content.
//   - PreserveColors combines each output image's luminance with the content's colour
//     (imaging.CombineLuminance).
//   - A content whose every pixel is exactly (255, 0, 255) magenta has a NaN content loss: the
//     run stops at step 1 with an error wrapping ErrNonFinite. This is a test hook pipeline
//     tests reach through real image bytes (a lossless magenta PNG).
//
// Callbacks and cancellation follow Request's contract: OnStep after every step, OnImage every
// SaveEvery steps, OnCheckpoint every CheckpointEvery steps and once more if ctx is cancelled
// after at least one step of this call; any callback's error stops the run, wrapped. ctx is
// checked before every step (and during StepDelay); a cancelled run returns ctx's error
// wrapped. Request.Resume continues a checkpoint from this engine: its ParamsDigest, Optimizer,
// scale, step and image size must match the request's, else the error wraps
// ErrCheckpointMismatch; a resumed run ends with the same image and Log as an uninterrupted one.
//
// The zero Fake is ready to use. Set the fields before the first Stylize and do not change
// them while calls run; then Fake is safe for concurrent use (calls share nothing).
type Fake struct {
	// StepDelay, if > 0, makes every step take that long (for cancellation and signal tests).
	StepDelay time.Duration
	// FailIf, if set, is called first in every Stylize; a non-nil error is returned, wrapped,
	// before any work (for failure injection).
	FailIf func(Request) error
	// EnforceMinSide makes Stylize refuse, as the torch engine does, with an error wrapping
	// ErrBadInput, a content whose side at some scale (after Fit to Size; images are never
	// scaled up) is under MinSide(Params), or a style resized for it that is. Off, Fake
	// stylises images of any size (1x1 included), which keeps tiny test images cheap.
	EnforceMinSide bool
}

var _ Optimizer = Fake{}

// Info describes the fake engine.
func (Fake) Info() Info { return Info{Engine: "fake", Device: "cpu", Weights: "none"} }

// fakeScale is the content at one scale of the pyramid, as 3 x H x W values in 0..1.
type fakeScale struct {
	img  *image.NRGBA
	w, h int
	c    []float32
}

type fakeRun struct {
	f       Fake
	req     Request
	p       Params
	scales  []fakeScale
	target  [3]float32   // the style colour
	weights []float64    // blend weight of each style
	means   [][3]float64 // each style's channel means
	vars    [][3]float64 // and variances
	magenta bool
	first   *image.NRGBA // the first style, for Init "style"
}

// Stylize runs the fake optimisation; see Fake.
func (f Fake) Stylize(ctx context.Context, req Request) (*Result, error) {
	start := time.Now()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("fake stylize: %w", err)
	}
	if f.FailIf != nil {
		if err := f.FailIf(req); err != nil {
			return nil, fmt.Errorf("fake stylize: %w", err)
		}
	}
	r, err := newFakeRun(f, req)
	if err != nil {
		return nil, fmt.Errorf("fake stylize: %w", err)
	}
	img, log, err := r.run(ctx)
	if err != nil {
		return nil, fmt.Errorf("fake stylize: %w", err)
	}
	return &Result{Image: img, Log: log, Duration: time.Since(start)}, nil
}

func newFakeRun(f Fake, req Request) (*fakeRun, error) {
	p := req.Params
	var errs []error
	if err := p.Validate(); err != nil {
		errs = append(errs, err)
	}
	if req.Content == nil || req.Content.Bounds().Empty() {
		errs = append(errs, errors.New("content: no image"))
	}
	if len(req.Styles) == 0 {
		errs = append(errs, errors.New("styles: no style image"))
	}
	for i, s := range req.Styles {
		if s == nil || s.Bounds().Empty() {
			errs = append(errs, fmt.Errorf("styles[%d]: no image", i))
		}
	}
	if len(req.StyleKeys) > 0 && len(req.StyleKeys) != len(req.Styles) {
		errs = append(errs, fmt.Errorf("styleKeys: %d keys for %d style images", len(req.StyleKeys), len(req.Styles)))
	}
	weights, err := p.BlendWeights(len(req.Styles))
	if err != nil && len(req.Styles) > 0 {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%w: %w", ErrBadInput, errors.Join(errs...))
	}

	r := &fakeRun{f: f, req: req, p: p, weights: weights}
	content := imaging.ToNRGBA(req.Content)
	r.magenta = allMagenta(content)
	full := imaging.Fit(content, p.Size)
	n := max(p.Scales, 1)
	longest := max(full.Rect.Dx(), full.Rect.Dy())
	for s := range n {
		img := imaging.Fit(full, max(longest>>(n-1-s), 1))
		r.scales = append(r.scales, fakeScale{img: img, w: img.Rect.Dx(), h: img.Rect.Dy(), c: toPlanes(img)})
	}

	need := MinSide(p)
	if f.EnforceMinSide {
		for i, sc := range r.scales {
			if sc.w < need || sc.h < need {
				return nil, fmt.Errorf("%w: the content is %dx%d px at scale %d of %d; %s needs at least %d px per side",
					ErrBadInput, sc.w, sc.h, i+1, n, vggLayers[deepestLayer(p)], need)
			}
		}
	}
	fw, fh := full.Rect.Dx(), full.Rect.Dy()
	for i, s := range req.Styles {
		st := imaging.ToNRGBA(s)
		if p.StyleScale == 0 || p.StyleScale == 1 {
			st = imaging.Resize(st, fw, fh)
		} else {
			sw, sh := st.Rect.Dx(), st.Rect.Dy()
			l := float64(longest) * p.StyleScale / float64(max(sw, sh))
			st = imaging.Resize(st, int(math.Round(float64(sw)*l)), int(math.Round(float64(sh)*l)))
		}
		if f.EnforceMinSide && (st.Rect.Dx() < need || st.Rect.Dy() < need) {
			return nil, fmt.Errorf("%w: a style is %dx%d px; %s needs at least %d px per side",
				ErrBadInput, st.Rect.Dx(), st.Rect.Dy(), vggLayers[deepestLayer(p)], need)
		}
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

// deepestLayer is the index of p's deepest layer (valid params: at least 0).
func deepestLayer(p Params) int {
	d := max(LayerIndex(p.ContentLayer), 0)
	for _, l := range p.StyleLayers {
		d = max(d, LayerIndex(l.Layer))
	}
	return d
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
			img.Pix[4*i+c] = uint8(math.Round(min(max(float64(v[c*w*h+i]), 0), 1) * 255))
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

// losses returns the Step losses of x (3 x h x w) against content at scale sc.
func (r *fakeRun) losses(x []float32, sc fakeScale) Step {
	var st Step
	n := sc.w * sc.h
	for i, v := range x {
		d := float64(v - sc.c[i])
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
		for y := range sc.h {
			for xx := range sc.w {
				i := y*sc.w + xx
				if xx+1 < sc.w {
					d := float64(ch[i+1] - ch[i])
					st.TVLoss += d * d
				}
				if y+1 < sc.h {
					d := float64(ch[i+sc.w] - ch[i])
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
func (r *fakeRun) output(x []float32, sc fakeScale) *image.NRGBA {
	img := fromPlanes(x, sc.w, sc.h)
	if r.p.PreserveColors {
		img = imaging.CombineLuminance(img, sc.img)
	}
	return img
}

func (r *fakeRun) checkpoint(x []float32, s int, log []Step) *Checkpoint {
	sc := r.scales[s]
	return &Checkpoint{
		Version:      checkpointVersion,
		ParamsDigest: r.p.Digest(),
		Scale:        s,
		Step:         len(log),
		Width:        sc.w,
		Height:       sc.h,
		Image:        append([]float32(nil), x...),
		Optimizer:    r.p.Optimizer,
		Log:          append([]Step(nil), log...),
	}
}

// resume checks cp against the run and returns the scale and the steps done in it.
func (r *fakeRun) resume(cp *Checkpoint) (s, k int, err error) {
	bad := func(format string, a ...any) (int, int, error) {
		return 0, 0, fmt.Errorf("%w: %s", ErrCheckpointMismatch, fmt.Sprintf(format, a...))
	}
	if d := r.p.Digest(); cp.ParamsDigest != d {
		return bad("params digest %.12s, want %.12s", cp.ParamsDigest, d)
	}
	if cp.Optimizer != r.p.Optimizer {
		return bad("optimizer %q, want %q", cp.Optimizer, r.p.Optimizer)
	}
	total := r.p.Steps * len(r.scales)
	if cp.Step < 0 || cp.Step > total || cp.Step != len(cp.Log) {
		return bad("step %d with %d logged steps, for a run of %d", cp.Step, len(cp.Log), total)
	}
	if cp.Step > 0 {
		s = (cp.Step - 1) / r.p.Steps
	}
	if cp.Scale != s {
		return bad("scale %d at step %d, want %d", cp.Scale, cp.Step, s)
	}
	sc := r.scales[s]
	if cp.Width != sc.w || cp.Height != sc.h || len(cp.Image) != 3*sc.w*sc.h {
		return bad("image %dx%d (%d values), want %dx%d", cp.Width, cp.Height, len(cp.Image), sc.w, sc.h)
	}
	return s, cp.Step - s*r.p.Steps, nil
}

func (r *fakeRun) initial(sc fakeScale) []float32 {
	switch r.p.Init {
	case InitNoise:
		rng := rand.New(rand.NewPCG(uint64(r.p.Seed), 0x6e7374))
		x := make([]float32, len(sc.c))
		for i := range x {
			x[i] = rng.Float32()
		}
		return x
	case InitStyle:
		return toPlanes(imaging.Resize(r.first, sc.w, sc.h))
	}
	return append([]float32(nil), sc.c...)
}

func (r *fakeRun) run(ctx context.Context) (*image.NRGBA, []Step, error) {
	req, p := r.req, r.p
	var (
		x    []float32
		xs   = -1 // the scale x is at
		s, k int
		log  []Step
	)
	if cp := req.Resume; cp != nil {
		var err error
		if s, k, err = r.resume(cp); err != nil {
			return nil, nil, err
		}
		x, xs = append([]float32(nil), cp.Image...), s
		log = append([]Step(nil), cp.Log...)
	}
	resumed := len(log)
	eta := float32(min(p.LR, 1))

	// stop handles cancellation: one more checkpoint if this call made progress.
	stop := func(cause error) error {
		err := fmt.Errorf("stopped after step %d: %w", len(log), cause)
		if len(log) > resumed && req.OnCheckpoint != nil {
			if cerr := req.OnCheckpoint(r.checkpoint(x, xs, log)); cerr != nil {
				err = errors.Join(err, fmt.Errorf("checkpoint at step %d: %w", len(log), cerr))
			}
		}
		return err
	}

	for ; s < len(r.scales); s, k = s+1, 0 {
		sc := r.scales[s]
		switch {
		case x == nil:
			x = r.initial(sc)
		case xs != s:
			prev := r.scales[xs]
			x = toPlanes(imaging.Resize(fromPlanes(x, prev.w, prev.h), sc.w, sc.h))
		}
		xs = s
		for ; k < p.Steps; k++ {
			if err := ctx.Err(); err != nil {
				return nil, nil, stop(err)
			}
			if r.f.StepDelay > 0 {
				t := time.NewTimer(r.f.StepDelay)
				select {
				case <-ctx.Done():
					t.Stop()
					return nil, nil, stop(ctx.Err())
				case <-t.C:
				}
			}
			n := sc.w * sc.h
			for c := range 3 {
				ch := x[c*n : (c+1)*n]
				for i := range ch {
					ch[i] += eta * (r.target[c] - ch[i])
				}
			}
			st := r.losses(x, sc)
			step := len(log) + 1
			st.Step, st.Scale = step, s
			st.ElapsedS = float64(step) * r.f.StepDelay.Seconds()
			if !isFinite(st.TotalLoss) {
				return nil, nil, fmt.Errorf("step %d: total loss %v (content %v, style %v, tv %v): %w",
					step, st.TotalLoss, st.ContentLoss, st.StyleLoss, st.TVLoss, ErrNonFinite)
			}
			log = append(log, st)
			if req.OnStep != nil {
				if err := req.OnStep(st); err != nil {
					return nil, nil, fmt.Errorf("step %d: %w", step, err)
				}
			}
			if req.SaveEvery > 0 && req.OnImage != nil && step%req.SaveEvery == 0 {
				if err := req.OnImage(step, r.output(x, sc)); err != nil {
					return nil, nil, fmt.Errorf("image at step %d: %w", step, err)
				}
			}
			if req.CheckpointEvery > 0 && req.OnCheckpoint != nil && step%req.CheckpointEvery == 0 {
				if err := req.OnCheckpoint(r.checkpoint(x, s, log)); err != nil {
					return nil, nil, fmt.Errorf("checkpoint at step %d: %w", step, err)
				}
			}
		}
	}
	return r.output(x, r.scales[xs]), log, nil
}

func isFinite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
