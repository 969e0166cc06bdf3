// Package torch is nst's libtorch style-transfer engine (through gotch): the only package that
// uses cgo. It implements transfer.Engine with the Gatys et al. algorithm as the seed article
// computes it — frozen VGG19 features, content loss at conv4_2, Gram-matrix style loss over
// conv1_1..conv5_1, the image optimised directly — plus L-BFGS, total variation, several styles,
// colour preservation, multi-scale pyramids and checkpoint/resume.
//
// All gotch work of one Stylize call runs on one OS thread, taken from a small set the engine
// keeps (osthread.go): libtorch's last error and grad mode are thread-local, and OpenMP keeps a
// team of workers per thread. Every tensor is freed explicitly (libtorch memory is
// invisible to Go's GC), and only error-returning gotch calls are used (its Must* functions call
// log.Fatal).
package torch

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"image"
	"io"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/nst-project/nst/transfer"
	"github.com/nst-project/nst/transfer/imaging"
)

// Options configure an Engine. The zero value is not enough: give Weights or RandomWeights.
type Options struct {
	// Weights is the path of torchvision's VGG19 state dict (vgg19-dcbb9e9d.pth, zip or legacy
	// format). Only the feature convs are read.
	Weights string
	// WeightsSHA256, if set, must match the file's sha256.
	WeightsSHA256 string
	// RandomWeights builds VGG19 with seeded random weights instead (demos and tests: the result
	// shows no real style). RandomSeed seeds them.
	RandomWeights bool
	RandomSeed    int64
	// Device is "cpu", "cuda", "cuda:N" or "auto" (cuda if available); "" means auto.
	Device string
	// Threads is libtorch's intra-op thread count for each Stylize call; 0 leaves libtorch's
	// default (one per core). With several concurrent calls, give each cores/calls.
	Threads int
	// MemoryFormat is the memory order of VGG19's weights and activations: NCHW (the default,
	// "": the seed's layout; losses within 1e-5 of its PyTorch loop, TestParityWithSeed) or
	// ChannelsLast, which runs oneDNN's and cuDNN's native NHWC kernels without reordering
	// activations (on GPUs the layout bf16 tensor cores want; CPU figures in
	// docs/BENCHMARKS.md) and rounds the convolutions' sums differently (losses within 1e-3 of
	// NCHW's, TestChannelsLast).
	MemoryFormat string
	// StyleCache is how many prepared style targets to keep (0: 32).
	StyleCache int
	// Logger receives engine events; nil discards them.
	Logger *slog.Logger
}

// Memory formats of Options.MemoryFormat.
const (
	ChannelsLast = "channels-last"
	NCHW         = "nchw"
)

// Engine is the libtorch transfer.Engine. It is safe for concurrent use: the weights are
// read-only and concurrent Stylize calls run on distinct OS threads.
type Engine struct {
	m    *vgg
	bf16 struct {
		once sync.Once
		m    *vgg
		err  error
	}
	dev     gotch.Device
	threads int
	// os are the OS threads all libtorch work runs on (osthread.go).
	os     *osThreads
	info   transfer.Info
	log    *slog.Logger
	styles *styleCache
}

var _ transfer.Engine = (*Engine)(nil)

// New loads the weights onto the device.
func New(opts Options) (*Engine, error) {
	th := &osThreads{log: opts.Logger}
	var e *Engine
	err := th.do(func() (err error) {
		e, err = newOnThread(opts, th)
		return err
	})
	if err != nil {
		th.close()
		return nil, err
	}
	return e, nil
}

// newOnThread is New, run on one of the engine's threads (the one its first call reuses).
func newOnThread(opts Options, th *osThreads) (*Engine, error) {
	tuned := keepFreedMemory()
	sysmon, sysmonErr := quietSysmon()

	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	dev, err := ParseDevice(opts.Device)
	if err != nil {
		return nil, err
	}
	format := opts.MemoryFormat
	switch format {
	case "":
		format = NCHW
	case ChannelsLast, NCHW:
	default:
		return nil, fmt.Errorf("memory format %q: want %s or %s", format, ChannelsLast, NCHW)
	}
	e := &Engine{dev: dev, threads: opts.Threads, log: log, styles: newStyleCache(opts.StyleCache), os: th}
	e.info = transfer.Info{Engine: "torch", Libtorch: Version(), Device: deviceName(dev), MemoryFormat: format}
	switch {
	case opts.RandomWeights && opts.Weights != "":
		return nil, errors.New("give VGG19 weights or random weights, not both")
	case opts.RandomWeights:
		log.Warn("using RANDOM VGG19 weights: results show no real style; pass real weights for real use",
			"seed", opts.RandomSeed)
		e.m, err = randomVGG(opts.RandomSeed, len(vggIndex)-3, dev) // up to conv5_1
		e.info.Weights = "random:" + strconv.FormatInt(opts.RandomSeed, 10)
	default:
		var digest string
		e.m, digest, err = loadVGG(opts.Weights, opts.WeightsSHA256, dev)
		e.info.Weights = digest
	}
	if err != nil {
		return nil, err
	}
	if e.info.MemoryFormat == ChannelsLast {
		if err := e.m.toChannelsLast(); err != nil {
			e.m.drop()
			return nil, err
		}
	}
	log.Info("VGG19 ready", "layers", len(e.m.convs), "device", e.info.Device, "libtorch", e.info.Libtorch,
		"memory_format", e.info.MemoryFormat, "malloc_tuned", tuned)
	if sysmonErr != nil {
		log.Info("Go's sysmon thread keeps its scheduling policy", "why", sysmonErr)
	} else {
		log.Debug("Go's sysmon thread runs under SCHED_BATCH", "tid", sysmon)
	}
	return e, nil
}

// Info describes the engine for provenance.
func (e *Engine) Info() transfer.Info { return e.info }

// Close frees the weights. The Engine must not be used afterwards.
func (e *Engine) Close() error {
	err := e.os.do(func() error {
		e.m.drop()
		if e.bf16.m != nil {
			e.bf16.m.drop()
		}
		return nil
	})
	e.os.close()
	return err
}

// model returns the weights for p's precision: the float32 ones, or a bfloat16 copy made on
// first use and shared by every later run.
func (e *Engine) model(p transfer.Params) (*vgg, error) {
	if p.Precision != transfer.BF16 {
		return e.m, nil
	}
	e.bf16.once.Do(func() { e.bf16.m, e.bf16.err = e.m.toBF16() })
	return e.bf16.m, e.bf16.err
}

// ParseDevice turns "cpu", "cuda", "cuda:N" or "auto"/"" into a device, failing if CUDA is asked
// for and unavailable.
func ParseDevice(s string) (gotch.Device, error) {
	switch {
	case s == "" || s == "auto":
		if gotch.CUDA.IsAvailable() {
			return gotch.CudaBuilder(0), nil
		}
		return gotch.CPU, nil
	case s == "cpu":
		return gotch.CPU, nil
	case s == "cuda" || strings.HasPrefix(s, "cuda:"):
		if !gotch.CUDA.IsAvailable() {
			return gotch.CPU, fmt.Errorf("device %s: CUDA is not available (this build or machine has no GPU support; see the README's GPU section)", s)
		}
		n := 0
		if rest, ok := strings.CutPrefix(s, "cuda:"); ok {
			v, err := strconv.Atoi(rest)
			if err != nil || v < 0 || int64(v) >= gotch.CUDA.DeviceCount() {
				return gotch.CPU, fmt.Errorf("device %s: no such GPU (%d available)", s, gotch.CUDA.DeviceCount())
			}
			n = v
		}
		return gotch.CudaBuilder(uint(n)), nil
	default:
		return gotch.CPU, fmt.Errorf("device %q: want cpu, cuda, cuda:N or auto", s)
	}
}

func deviceName(d gotch.Device) string {
	if d.IsCuda() {
		return fmt.Sprintf("cuda:%d", d.Value)
	}
	return "cpu"
}

// styleCache keeps prepared style targets (Gram matrices, on the host) by key, least recently
// used first out. Host copies make entries safe to share between concurrent runs on any device.
type styleCache struct {
	mu    sync.Mutex
	max   int
	order *list.List // of string keys, front = most recent
	items map[string]*styleEntry
}

type styleEntry struct {
	elem  *list.Element
	grams map[string]hostGram
}

// hostGram is one layer's Gram matrix and the d*h*w it is normalised by.
type hostGram struct {
	d    int64
	data []float32
}

func newStyleCache(max int) *styleCache {
	if max <= 0 {
		max = 32
	}
	return &styleCache{max: max, order: list.New(), items: map[string]*styleEntry{}}
}

func (c *styleCache) get(key string) (map[string]hostGram, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.items[key]
	if !ok {
		return nil, false
	}
	c.order.MoveToFront(e.elem)
	return e.grams, true
}

func (c *styleCache) put(key string, grams map[string]hostGram) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[key]; ok {
		e.grams = grams
		c.order.MoveToFront(e.elem)
		return
	}
	c.items[key] = &styleEntry{elem: c.order.PushFront(key), grams: grams}
	for c.order.Len() > c.max {
		last := c.order.Back()
		c.order.Remove(last)
		delete(c.items, last.Value.(string))
	}
}

// Stylize runs one stylisation. See transfer.Engine.
func (e *Engine) Stylize(ctx context.Context, req transfer.Request) (*transfer.Result, error) {
	if err := req.Validate(); err != nil {
		return nil, err
	}
	blend, _ := req.Params.BlendWeights(len(req.Styles)) // checked by Validate

	// One OS thread for the whole run: libtorch's error slot and grad mode are per thread.
	var res *transfer.Result
	err := e.os.do(func() (err error) {
		setThreads(e.threads)
		r := &run{e: e, req: req, blend: blend}
		res, err = r.stylize(ctx)
		return err
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// run is the state of one Stylize call.
type run struct {
	e     *Engine
	req   transfer.Request
	blend []float64
	// steps keeps the log and the callbacks' cadence (transfer.Steps).
	steps *transfer.Steps
}

// scalePlan is one level of the pyramid: the content and styles at that level's size.
type scalePlan struct {
	content *image.NRGBA
	styles  []*image.NRGBA
}

func asNRGBA(img image.Image) *image.NRGBA {
	if n, ok := img.(*image.NRGBA); ok {
		return n
	}
	return imaging.ToNRGBA(img)
}

// plan checks the layers against the weights and scales the inputs for each level of the
// pyramid (transfer.Pyramid). With colour preservation the optimisation sees luminance
// images (Gatys et al. 2016).
func (r *run) plan() ([]scalePlan, error) {
	p := r.req.Params
	if d := r.deepest(); d >= len(r.e.m.convs) {
		return nil, fmt.Errorf("%w: layer %s is deeper than the weights, which end at %s",
			transfer.ErrBadInput, transfer.LayerNames()[d], r.e.m.convs[len(r.e.m.convs)-1].name)
	}
	content := asNRGBA(r.req.Content)
	styles := make([]*image.NRGBA, len(r.req.Styles))
	for i, s := range r.req.Styles {
		styles[i] = asNRGBA(s)
	}
	if p.PreserveColors {
		for i := range styles {
			styles[i] = imaging.MatchLuminance(styles[i], content)
		}
		content = imaging.Luminance(content)
	}
	levels, err := transfer.Pyramid(p, content, styles)
	if err != nil {
		return nil, err
	}
	plans := make([]scalePlan, len(levels))
	for i, l := range levels {
		plans[i] = scalePlan{content: l.Content, styles: l.Styles}
	}
	return plans, nil
}

// deepest is the position of the deepest layer the losses use.
func (r *run) deepest() int {
	names := []string{r.req.Params.ContentLayer}
	for _, l := range r.req.Params.StyleLayers {
		names = append(names, l.Layer)
	}
	return depth(names)
}

// start plans the run and sets up its step bookkeeping; it returns the plans and the level to
// start at (a resumed checkpoint's).
func (r *run) start() ([]scalePlan, int, error) {
	plans, err := r.plan()
	if err != nil {
		return nil, 0, err
	}
	r.steps = transfer.NewSteps(r.req, len(plans), nil)
	sizes := make([]image.Point, len(plans))
	for i, pl := range plans {
		sizes[i] = pl.content.Rect.Size()
	}
	first, err := r.steps.Resume(sizes)
	if err != nil {
		return nil, 0, err
	}
	return plans, first, nil
}

func (r *run) stylize(ctx context.Context) (*transfer.Result, error) {
	plans, first, err := r.start()
	if err != nil {
		return nil, err
	}
	return r.optimise(ctx, plans, first)
}

// optimise runs the planned levels from first on.
func (r *run) optimise(ctx context.Context, plans []scalePlan, first int) (*transfer.Result, error) {
	p := r.req.Params
	var err error
	var x *tensorImage // the optimised image carried from scale to scale
	var out *image.NRGBA
	for i := first; i < len(plans); i++ {
		var resume *transfer.Checkpoint
		if i == first {
			resume = r.req.Resume
		}
		x, out, err = r.optimiseScale(ctx, i, plans[i], x, resume)
		if err != nil {
			return nil, err
		}
	}
	if p.PreserveColors {
		out = imaging.CombineLuminance(out, imaging.Fit(asNRGBA(r.req.Content), p.Size))
	}
	return r.steps.Result(out), nil
}

// tensorImage is an optimised image on the host between scales: 3 x h x w normalised values,
// and the scaling (hDiag) L-BFGS ended the scale with, for firstStep carry (0: none).
type tensorImage struct {
	w, h  int
	data  []float32
	hDiag float64
}

// initial is the first scale's starting image (normalised values, 3 x h x w).
func (r *run) initial(plan scalePlan) []float32 {
	w, h := plan.content.Rect.Dx(), plan.content.Rect.Dy()
	switch r.req.Params.Init {
	case transfer.InitStyle:
		return normalise(imaging.Resize(plan.styles[0], w, h))
	case transfer.InitNoise:
		// Uniform random pixels, from a generator seeded by Params.Seed: the same on every
		// device and run.
		rng := rand.New(rand.NewPCG(uint64(r.req.Params.Seed), 0x6e6f697365)) // "noise"
		img := image.NewNRGBA(image.Rect(0, 0, w, h))
		for i := range img.Pix {
			img.Pix[i] = uint8(rng.IntN(256))
		}
		return normalise(img)
	default:
		return normalise(plan.content)
	}
}

// optimiseScale runs the optimiser for one level of the pyramid, starting from the previous
// level's result (upsampled), from ck, or from Params.Init. It returns the result both as
// normalised values (for the next level) and as an image.
func (r *run) optimiseScale(ctx context.Context, level int, plan scalePlan, prev *tensorImage, ck *transfer.Checkpoint) (*tensorImage, *image.NRGBA, error) {
	p := r.req.Params
	dev := r.e.dev
	w, h := plan.content.Rect.Dx(), plan.content.Rect.Dy()
	var s scope
	defer s.drop()
	pr := r.newProblem(&s, plan)
	if !s.ok() {
		return nil, nil, s.err
	}

	// x is the image being optimised: a leaf tensor whose values the optimiser overwrites.
	var x *ts.Tensor
	switch {
	case ck != nil:
		x = s.fromFloat32(ck.Image, dev, 1, 3, int64(h), int64(w))
	case prev != nil:
		x = upsample(&s, s.fromFloat32(prev.data, dev, 1, 3, int64(prev.h), int64(prev.w)), w, h)
	default:
		x = s.fromFloat32(r.initial(plan), dev, 1, 3, int64(h), int64(w))
	}
	if !s.ok() {
		return nil, nil, s.err
	}
	if err := requiresGrad(x, true); err != nil {
		return nil, nil, torchErr("requires_grad", err)
	}

	var ad *adam
	var lb *lbfgs
	if p.Optimizer == transfer.LBFGS {
		lb = newLBFGS(p.LR, p.History, p.Tolerance, p.FirstStep)
		if prev != nil {
			lb.carried = prev.hDiag
		}
		defer lb.drop()
	} else {
		ad = newAdam(p.LR)
		defer ad.drop()
	}
	done := r.steps.StartLevel(level)
	if ck != nil {
		if err := r.restore(&s, ck, ad, w, h); err != nil {
			return nil, nil, err
		}
	}
	state := func() (*transfer.Checkpoint, error) { return r.state(x, ad) }
	picture := func() (*image.NRGBA, error) { return r.snapshot(x, w, h) }

	var cur point // L-BFGS: the objective at x
	defer func() {
		if cur.g != nil {
			_ = cur.g.Drop()
		}
	}()
	evalAt := func(xt *ts.Tensor) (point, error) {
		var ss scope
		defer ss.drop()
		parts, g := pr.eval(&ss, xt, true)
		if !ss.ok() {
			return point{}, ss.err
		}
		return point{f: parts[0].total, parts: parts[0], g: ss.take(g)}, nil
	}

	for k := done; k < p.LevelSteps(level); k++ {
		if err := r.steps.Check(ctx, state); err != nil {
			return nil, nil, err
		}
		var parts lossParts
		converged := false
		if ad != nil {
			var ss scope
			pts, g := pr.eval(&ss, x, true)
			if !ss.ok() {
				ss.drop()
				return nil, nil, ss.err
			}
			parts = pts[0]
			if parts.finite() {
				if err := ad.step(x, g); err != nil {
					ss.drop()
					return nil, nil, err
				}
			}
			ss.drop()
		} else {
			if cur.g == nil {
				var err error
				if cur, err = evalAt(x); err != nil {
					return nil, nil, err
				}
			}
			parts = cur.parts
			if parts.finite() {
				next, err := lb.step(cur, r.lineEval(pr, x, evalAt), r.lineMove(x))
				switch {
				case errors.Is(err, errConverged):
					converged = true
				case err != nil:
					return nil, nil, err
				default:
					cur = next
					converged = lb.converged
				}
			}
		}
		st := parts.step()
		if converged {
			st.Stop = fmt.Sprintf("converged: L-BFGS's step or loss change fell under tolerance %g, or its gradient under %g", p.Tolerance, lb.tolGrad)
		}
		if err := r.steps.Record(st, picture, state); err != nil {
			return nil, nil, err
		}
		if r.steps.LevelDone() {
			break
		}
	}
	data := s.float32s(x)
	if !s.ok() {
		return nil, nil, s.err
	}
	out := &tensorImage{w: w, h: h, data: data}
	if lb != nil && len(lb.dirs) > 0 {
		out.hDiag = lb.hDiag
	}
	return out, denormalise(data, w, h), nil
}

// step is the losses as a transfer.Step for transfer.Steps.Record.
func (l lossParts) step() transfer.Step {
	return transfer.Step{ContentLoss: l.content, StyleLoss: l.style, TVLoss: l.tv, TotalLoss: l.total}
}

// lineEval evaluates the objective at x + t*d (x itself is left unchanged) for L-BFGS.
func (r *run) lineEval(pr *problem, x *ts.Tensor, evalAt func(*ts.Tensor) (point, error)) objective {
	return func(t float64, d *ts.Tensor) (point, error) {
		var ss scope
		defer ss.drop()
		xt := ss.addT(ss.detach(x), ss.scale(d, t))
		if !ss.ok() {
			return point{}, ss.err
		}
		if err := requiresGrad(xt, true); err != nil {
			return point{}, torchErr("requires_grad", err)
		}
		return evalAt(xt)
	}
}

// lineMove sets x = x + t*d in place.
func (r *run) lineMove(x *ts.Tensor) func(t float64, d *ts.Tensor) error {
	return func(t float64, d *ts.Tensor) error {
		var ss scope
		defer ss.drop()
		xd := ss.detach(x)
		next := ss.addT(xd, ss.scale(d, t))
		if !ss.ok() {
			return ss.err
		}
		return copyInto(xd, next)
	}
}

// snapshot is the current image as a picture (colours restored if preserving them).
func (r *run) snapshot(x *ts.Tensor, w, h int) (*image.NRGBA, error) {
	var ss scope
	defer ss.drop()
	data := ss.float32s(x)
	if !ss.ok() {
		return nil, ss.err
	}
	img := denormalise(data, w, h)
	if r.req.Params.PreserveColors {
		img = imaging.CombineLuminance(img, asNRGBA(r.req.Content))
	}
	return img, nil
}

// state is the engine's part of a checkpoint (transfer.Steps adds the rest): the image and
// Adam's moments. L-BFGS's history is not saved: a resumed L-BFGS run rebuilds it.
func (r *run) state(x *ts.Tensor, ad *adam) (*transfer.Checkpoint, error) {
	var ss scope
	defer ss.drop()
	size, err := x.Size()
	if err != nil {
		return nil, torchErr("size", err)
	}
	ck := &transfer.Checkpoint{
		Width:  int(size[3]),
		Height: int(size[2]),
		Image:  ss.float32s(x),
		State:  map[string][]float32{},
	}
	if ad != nil && ad.m != nil {
		ck.State["adam_t"] = []float32{float32(ad.t)}
		ck.State["adam_m"] = ss.float32s(ad.m)
		ck.State["adam_v"] = ss.float32s(ad.v)
	}
	if !ss.ok() {
		return nil, ss.err
	}
	return ck, nil
}

// restore loads a checkpoint's Adam state (transfer.Steps.Resume has checked the rest).
func (r *run) restore(s *scope, ck *transfer.Checkpoint, ad *adam, w, h int) error {
	if ad == nil {
		return nil
	}
	t := ck.State["adam_t"]
	if len(t) != 1 {
		return nil // saved before Adam's first step
	}
	m, v := ck.State["adam_m"], ck.State["adam_v"]
	if len(m) != 3*w*h || len(v) != 3*w*h {
		return fmt.Errorf("%w: its Adam state has the wrong size", transfer.ErrCheckpointMismatch)
	}
	ad.t = int(t[0])
	ad.m = s.take(s.fromFloat32(m, r.e.dev, 1, 3, int64(h), int64(w)))
	ad.v = s.take(s.fromFloat32(v, r.e.dev, 1, 3, int64(h), int64(w)))
	if !s.ok() {
		return s.err
	}
	return nil
}
