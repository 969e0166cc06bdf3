package torch

import (
	"context"
	"image"

	"github.com/sugarme/gotch/ts"

	"github.com/nst-project/nst/transfer"
	"github.com/nst-project/nst/transfer/imaging"
)

var _ transfer.BatchEngine = (*Engine)(nil)

// StylizeBatch runs several requests as one batch: each step is one VGG19 forward and backward
// over all their images stacked on the batch dimension, which keeps a GPU busier than one small
// image can. Each request gets the result (or error) it would get alone, to rounding: the loss
// is a sum of per-image terms, so every image's gradient is its own, and Adam is elementwise.
//
// Requests are batched only when the batch computes what each would alone (up to rounding:
// TestBatchMatchesSingleRuns holds each loss within 1e-4): the same Params, Adam, one scale, no
// Resume, and contents of the same size after scaling. Otherwise they run one after another. Callbacks
// are called per request; an error from one, or a non-finite loss, fails that request only.
func (e *Engine) StylizeBatch(ctx context.Context, reqs []transfer.Request) ([]*transfer.Result, []error) {
	results := make([]*transfer.Result, len(reqs))
	errs := make([]error, len(reqs))
	if !batchable(reqs) {
		for i, req := range reqs {
			results[i], errs[i] = e.Stylize(ctx, req)
		}
		return results, errs
	}
	err := e.os.do(func() error {
		setThreads(e.threads)
		e.runBatch(ctx, reqs, results, errs)
		return nil
	})
	if err != nil { // a panic, or a closed engine
		for i := range errs {
			if errs[i] == nil && results[i] == nil {
				errs[i] = err
			}
		}
	}
	return results, errs
}

// batchable reports whether reqs can share one optimisation (sizes are checked later).
func batchable(reqs []transfer.Request) bool {
	if len(reqs) < 2 {
		return false
	}
	p := reqs[0].Params
	if p.Optimizer != transfer.Adam || p.Scales > 1 || p.Validate() != nil {
		return false
	}
	digest := p.Digest()
	for _, r := range reqs {
		if r.Resume != nil || r.Params.Digest() != digest || len(r.Styles) != len(reqs[0].Styles) || r.Content == nil || len(r.Styles) == 0 {
			return false
		}
	}
	return true
}

func (e *Engine) runBatch(ctx context.Context, reqs []transfer.Request, results []*transfer.Result, errs []error) {
	n := len(reqs)
	runs := make([]*run, n)
	plans := make([][]scalePlan, n)
	for i, req := range reqs {
		if err := req.Validate(); err != nil {
			errs[i] = err
			continue
		}
		blend, _ := req.Params.BlendWeights(len(req.Styles)) // checked by Validate
		runs[i] = &run{e: e, req: req, blend: blend}
		pl, _, err := runs[i].start() // no Resume: batchable
		if err != nil {
			errs[i] = err
			continue
		}
		plans[i] = pl
	}
	// Sizes must agree; any request that cannot join runs alone.
	var live []int
	for i := range reqs {
		if errs[i] != nil {
			continue
		}
		if len(live) > 0 && !plans[i][0].content.Rect.Size().Eq(plans[live[0]][0].content.Rect.Size()) {
			results[i], errs[i] = runs[i].optimise(ctx, plans[i], 0)
			continue
		}
		live = append(live, i)
	}
	if len(live) == 1 {
		i := live[0]
		results[i], errs[i] = runs[i].optimise(ctx, plans[i], 0)
		return
	}
	if len(live) == 0 {
		return
	}
	if err := e.optimiseBatch(ctx, runs, plans, live, results, errs); err != nil {
		for _, i := range live {
			if errs[i] == nil && results[i] == nil {
				errs[i] = err
			}
		}
	}
}

// optimiseBatch is optimiseScale for several images at once (Adam, one scale): one
// forward/backward for all, then each request's own bookkeeping (transfer.Steps).
func (e *Engine) optimiseBatch(ctx context.Context, runs []*run, levels [][]scalePlan, live []int, results []*transfer.Result, errs []error) error {
	p := runs[live[0]].req.Params
	plans := make([]scalePlan, len(runs))
	for _, i := range live {
		plans[i] = levels[i][0]
		runs[i].steps.StartLevel(0)
	}
	w, h := plans[live[0]].content.Rect.Dx(), plans[live[0]].content.Rect.Dy()
	var s scope
	defer s.drop()

	// One problem whose targets are the items' targets stacked on the batch dimension.
	var contents []*ts.Tensor
	var inits []*ts.Tensor
	styleCount := len(plans[live[0]].styles)
	grams := make([]map[string][]*ts.Tensor, styleCount)
	for k := range grams {
		grams[k] = map[string][]*ts.Tensor{}
	}
	for _, i := range live {
		pr := runs[i].newProblem(&s, plans[i])
		if !s.ok() {
			return s.err
		}
		contents = append(contents, pr.content)
		for k := range pr.grams {
			for layer, g := range pr.grams[k] {
				grams[k][layer] = append(grams[k][layer], g)
			}
		}
		inits = append(inits, s.fromFloat32(runs[i].initial(plans[i]), e.dev, 1, 3, int64(h), int64(w)))
	}
	m, err := e.model(p)
	if err != nil {
		return err
	}
	pr := &problem{m: m, params: p, blend: runs[live[0]].blend, want: map[string]bool{p.ContentLayer: true}}
	for _, l := range p.StyleLayers {
		pr.want[l.Layer] = true
	}
	pr.content = s.cat(0, contents...)
	for k := range grams {
		m := map[string]*ts.Tensor{}
		for layer, gs := range grams[k] {
			m[layer] = s.cat(0, gs...)
		}
		pr.grams = append(pr.grams, m)
	}
	x := s.cat(0, inits...)
	if !s.ok() {
		return s.err
	}
	if err := requiresGrad(x, true); err != nil {
		return torchErr("requires_grad", err)
	}
	ad := newAdam(p.LR)
	defer ad.drop()

	// state and picture read one request's slice of the batch tensors: its image and Adam
	// state, its picture.
	state := func(b, i int) func() (*transfer.Checkpoint, error) {
		return func() (*transfer.Checkpoint, error) {
			var ss scope
			defer ss.drop()
			xi := ss.narrow(x, 0, int64(b), 1)
			a := &adam{t: ad.t}
			if ad.m != nil {
				a.m, a.v = ss.narrow(ad.m, 0, int64(b), 1), ss.narrow(ad.v, 0, int64(b), 1)
			}
			if !ss.ok() {
				return nil, ss.err
			}
			return runs[i].state(xi, a)
		}
	}
	picture := func(b, i int) func() (*image.NRGBA, error) {
		return func() (*image.NRGBA, error) {
			var ss scope
			defer ss.drop()
			xi := ss.narrow(x, 0, int64(b), 1)
			if !ss.ok() {
				return nil, ss.err
			}
			return runs[i].snapshot(xi, w, h)
		}
	}
	// A request ends with an error, or when its steps stop early (Params.StopTolerance): its
	// image is taken then, and the batch goes on for the others (its slice is still computed,
	// but no longer read).
	failed := func(i int) bool { return errs[i] != nil || results[i] != nil }
	per := 3 * w * h
	finish := func(b, i int, data []float32) {
		img := denormalise(data[b*per:(b+1)*per], w, h)
		if p.PreserveColors {
			img = imaging.CombineLuminance(img, imaging.Fit(asNRGBA(runs[i].req.Content), p.Size))
		}
		results[i] = runs[i].steps.Result(img)
	}
	for k := 0; k < p.Steps; k++ {
		if err := ctx.Err(); err != nil {
			for b, i := range live {
				if !failed(i) {
					errs[i] = runs[i].steps.Stop(err, state(b, i))
				}
			}
			return nil
		}
		var ss scope
		parts, g := pr.eval(&ss, x, true)
		if !ss.ok() {
			ss.drop()
			return ss.err
		}
		if err := ad.step(x, g); err != nil {
			ss.drop()
			return err
		}
		ss.drop()
		alive := 0
		for b, i := range live {
			if failed(i) {
				continue
			}
			if err := runs[i].steps.Record(parts[b].step(), picture(b, i), state(b, i)); err != nil {
				errs[i] = err
				continue
			}
			if runs[i].steps.LevelDone() {
				var ss scope
				data := ss.float32s(ss.narrow(x, 0, int64(b), 1))
				ss.drop()
				if !ss.ok() {
					return ss.err
				}
				finish(0, i, data)
				continue
			}
			alive++
		}
		if alive == 0 {
			return nil
		}
	}
	data := s.float32s(x)
	if !s.ok() {
		return s.err
	}
	for b, i := range live {
		if !failed(i) {
			finish(b, i, data)
		}
	}
	return nil
}
