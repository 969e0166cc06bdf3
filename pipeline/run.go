package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"log/slog"
	"path"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sourcegraph/conc"
	"github.com/sourcegraph/conc/pool"

	"github.com/nst-project/nst/report"
	"github.com/nst-project/nst/storage"
	"github.com/nst-project/nst/transfer"
	"github.com/nst-project/nst/transfer/imaging"
)

// ErrConflict: an output key holds an object written for another item ID (another preset
// definition, other inputs or weights) and Config.Force is not set.
var ErrConflict = errors.New("outputs of a different run exist")

// metaID is the object metadata key holding the item ID of every output.
const metaID = "nst-id"

// styleCacheSize is how many decoded style images a run keeps.
const styleCacheSize = 8

// Run runs the shard cfg.ShardIndex of cfg.ManifestURL's batch: it checks cfg and the manifest
// (an error wrapping ErrInvalid, before anything is read from the inputs or written), lists and
// pairs the inputs, skips items already done, stylises the rest with the engine from
// cfg.NewEngine (opened only if there is work) and writes their outputs and the shard's
// summary. See the package documentation for keys, IDs and shards.
//
// A failed item is recorded in the Report (and the summary) and the others go on; Run's error
// is for the batch as a whole. When ctx is cancelled Run stops taking items, lets the engine
// checkpoint the running ones, writes what finished and the summary within cfg.GracePeriod,
// and returns the Report with Stopped "interrupted" and an error wrapping ctx's error, unless
// every item of the shard was done already. The Report is non-nil whenever the batch was
// expanded, even with an error.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg, err := cfg.withDefaults(true)
	if err != nil {
		return nil, err
	}
	b, err := expand(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer b.buckets.close()
	r := &runner{b: b, cfg: cfg, styles: map[string]*image.NRGBA{}}
	r.log = cfg.Logger.With("run_id", b.runID, "shard", cfg.ShardIndex)
	return r.run(ctx)
}

type runner struct {
	b      *batch
	cfg    Config
	log    *slog.Logger
	grace  context.Context // outlives ctx by GracePeriod: finishing writes
	eng    transfer.Optimizer
	info   *transfer.Info
	failed atomic.Int64

	mu      sync.Mutex
	report  *Report
	styles  map[string]*image.NRGBA
	styleLR []string // style cache keys, least recently used first
}

// loaded is an item whose inputs are decoded, waiting for a compute lane.
type loaded struct {
	it      *item
	start   time.Time
	content *image.NRGBA
	style   *image.NRGBA
	ckpt    *transfer.Checkpoint
}

func (r *runner) run(ctx context.Context) (*Report, error) {
	b, cfg := r.b, r.cfg
	var items []*item
	for _, it := range b.items {
		if it.shard == cfg.ShardIndex {
			items = append(items, it)
		}
	}
	r.report = &Report{RunID: b.runID, ShardIndex: cfg.ShardIndex, ShardCount: cfg.ShardCount, Planned: len(items), Start: time.Now().UTC(),
		SummaryKey: fmt.Sprintf("%s_runs/%s/shard-%d-of-%d.json", b.out.prefix, b.runID, cfg.ShardIndex, cfg.ShardCount)}
	cfg.Progress.Planned(len(items))
	r.log.Info("run", "manifest", storage.Redact(cfg.ManifestURL), "items", len(b.items), "shard_items", len(items), "shards", cfg.ShardCount)

	grace, cancelGrace := graceContext(ctx, cfg.GracePeriod)
	defer cancelGrace()
	r.grace = grace

	todo := r.check(ctx, items)
	var runErr error
	if len(todo) > 0 && ctx.Err() == nil {
		closeEngine, err := r.openEngine(ctx)
		if err != nil {
			runErr = err
		} else {
			if closeEngine != nil {
				defer closeEngine()
			}
			r.process(ctx, todo)
		}
	}

	rep := r.report
	rep.End = time.Now().UTC()
	slices.SortFunc(rep.Results, func(a, b PairResult) int { return a.index() - b.index() })
	if ctx.Err() != nil && !rep.OK() {
		rep.Stopped = "interrupted"
	} else if cfg.MaxFailures > 0 && rep.Failed > cfg.MaxFailures && !rep.OK() {
		rep.Stopped = "max failures exceeded"
	}
	if err := r.writeSummary(); err != nil && runErr == nil {
		runErr = err
	}
	if cfg.Report && ctx.Err() == nil {
		key, err := r.writeSheets(ctx)
		if err != nil {
			r.log.Warn("contact sheet not written", "err", err)
		}
		rep.SheetKey = key
	}
	if runErr == nil && rep.Stopped == "interrupted" {
		runErr = fmt.Errorf("run %s shard %d/%d interrupted with %d of %d items left: %w", b.runID, cfg.ShardIndex, cfg.ShardCount,
			rep.Planned-rep.Done-rep.Skipped-rep.Failed, rep.Planned, ctx.Err())
	}
	r.log.Info("run finished", "planned", rep.Planned, "done", rep.Done, "skipped", rep.Skipped, "failed", rep.Failed,
		"interrupted", rep.Interrupted, "stopped", rep.Stopped, "seconds", rep.End.Sub(rep.Start).Seconds())
	return rep, runErr
}

// index is the item's position, kept for sorting results.
func (p PairResult) index() int { return p.idx }

// graceContext returns a context that is not cancelled with ctx but d after it.
func graceContext(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	g, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(d, cancel) })
	return g, func() { stop(); cancel() }
}

// check reads each item's provenance, records the items already done as skipped and returns
// the rest in item order.
func (r *runner) check(ctx context.Context, items []*item) []*item {
	need := make([]bool, len(items))
	p := pool.New().WithMaxGoroutines(r.cfg.IOJobs)
	for i, it := range items {
		p.Go(func() {
			if ctx.Err() != nil {
				return
			}
			if r.cfg.Force {
				need[i] = true
				return
			}
			id, err := r.b.doneID(ctx, it)
			switch {
			case ctx.Err() != nil:
			case err != nil:
				r.record(PairResult{Pair: it.pair, Status: StatusFailed, Outputs: it.keys, idx: it.index,
					Err: &PairError{Pair: it.pair, Op: OpCheck, Err: err}})
			case id == it.pair.ID:
				r.record(PairResult{Pair: it.pair, Status: StatusSkipped, Outputs: it.keys, idx: it.index})
			default:
				need[i] = true
			}
		})
	}
	p.Wait()
	var todo []*item
	for i, it := range items {
		if need[i] {
			todo = append(todo, it)
		}
	}
	return todo
}

func (r *runner) openEngine(ctx context.Context) (func() error, error) {
	spec, err := r.b.engineSpec(ctx)
	if err != nil {
		return nil, err
	}
	eng, closeFn, err := r.cfg.NewEngine(ctx, spec)
	if err != nil {
		return nil, fmt.Errorf("open engine: %w", err)
	}
	r.eng = eng
	info := eng.Info()
	r.info = &info
	r.log.Info("engine", "engine", info.Engine, "device", info.Device, "libtorch", info.Libtorch, "weights", info.Weights)
	return closeFn, nil
}

// stopping reports whether the run takes no more items.
func (r *runner) stopping(ctx context.Context) bool {
	return ctx.Err() != nil || (r.cfg.MaxFailures > 0 && r.failed.Load() > int64(r.cfg.MaxFailures))
}

// process loads, computes and writes the items: IOJobs loaders feed GPUJobs compute lanes
// through a bound of MaxInFlight decoded pairs; finished results go to IOJobs uploaders.
func (r *runner) process(ctx context.Context, todo []*item) {
	cfg := r.cfg
	ready := make(chan *loaded)
	slots := make(chan struct{}, cfg.MaxInFlight)
	uploads := pool.New().WithMaxGoroutines(cfg.IOJobs)
	var lanes conc.WaitGroup
	for range cfg.GPUJobs {
		lanes.Go(func() {
			for l := range ready {
				batch := gather(ready, l, cfg.BatchSize)
				for range batch {
					<-slots
				}
				if r.stopping(ctx) {
					continue // not started: the next run takes them
				}
				for i, c := range r.computeBatch(ctx, batch) {
					if c.ok {
						uploads.Go(func() { r.upload(batch[i], c.computed) })
					}
				}
			}
		})
	}
	loaders := pool.New().WithMaxGoroutines(cfg.IOJobs)
feed:
	for _, it := range todo {
		if r.stopping(ctx) {
			break
		}
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			break feed
		}
		loaders.Go(func() {
			l, err := r.load(ctx, it)
			if err != nil {
				<-slots
				if ctx.Err() == nil {
					r.record(PairResult{Pair: it.pair, Status: StatusFailed, Outputs: it.keys, idx: it.index, Err: err,
						Duration: time.Since(l.start)})
				}
				return
			}
			ready <- l
		})
	}
	loaders.Wait()
	close(ready)
	lanes.Wait()
	uploads.Wait()
}

// protect runs f, turning a panic into an error.
func protect(f func() error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v\n%s", p, debug.Stack())
		}
	}()
	return f()
}

func (r *runner) ckptKey(it *item) string {
	return r.b.out.prefix + "_checkpoints/" + it.pair.ID + ".ckpt"
}

// load reads and decodes an item's inputs and its checkpoint, if any. l is never nil.
func (r *runner) load(ctx context.Context, it *item) (l *loaded, err error) {
	l = &loaded{it: it, start: time.Now()}
	fail := func(op string, err error) error { return &PairError{Pair: it.pair, Op: op, Err: err} }
	err = protect(func() error {
		if !r.cfg.Force {
			l.ckpt = r.readCheckpoint(ctx, it)
		}
		var op string
		if l.content, op, err = r.readImage(ctx, r.b.contents, it.content, "content"); err != nil {
			return fail(op, err)
		}
		key := r.styleKey(it)
		r.mu.Lock()
		l.style = r.styles[key]
		r.mu.Unlock()
		if l.style == nil {
			if l.style, op, err = r.readImage(ctx, r.b.styles, it.style, "style"); err != nil {
				return fail(op, err)
			}
			r.cacheStyle(key, l.style)
		}
		return nil
	})
	if err != nil {
		if _, ok := err.(*PairError); !ok {
			err = fail(OpRead, err)
		}
		return l, err
	}
	return l, nil
}

func (r *runner) styleKey(it *item) string {
	return stripQuery(r.b.styles.url) + "|" + it.style.key + "|" + it.style.version
}

func (r *runner) cacheStyle(key string, img *image.NRGBA) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.styles[key]; ok {
		return
	}
	r.styles[key] = img
	r.styleLR = append(r.styleLR, key)
	if len(r.styleLR) > styleCacheSize {
		delete(r.styles, r.styleLR[0])
		r.styleLR = r.styleLR[1:]
	}
}

func (r *runner) readImage(ctx context.Context, src source, o object, what string) (*image.NRGBA, string, error) {
	lim := imaging.DefaultLimits()
	data, _, err := src.bucket.Read(ctx, src.prefix+o.key, lim.MaxBytes)
	if err != nil {
		return nil, OpRead, fmt.Errorf("%s %s: %w", what, o.key, err)
	}
	img, _, err := imaging.Decode(bytes.NewReader(data), lim)
	if err != nil {
		return nil, OpDecode, fmt.Errorf("%s %s: %w", what, o.key, err)
	}
	return img, "", nil
}

// readCheckpoint returns the item's checkpoint, nil if there is none or it is unusable.
func (r *runner) readCheckpoint(ctx context.Context, it *item) *transfer.Checkpoint {
	data, _, err := r.b.out.bucket.Read(ctx, r.ckptKey(it), 0)
	if errors.Is(err, storage.ErrNotFound) {
		return nil
	}
	if err != nil {
		r.log.Warn("checkpoint unreadable: starting fresh", "pair", it.pair.ID, "err", err)
		return nil
	}
	var c transfer.Checkpoint
	if err := c.UnmarshalBinary(data); err != nil {
		r.log.Warn("checkpoint corrupt: deleting it and starting fresh", "pair", it.pair.ID, "err", err)
		r.deleteCheckpoint(ctx, it)
		return nil
	}
	return &c
}

func (r *runner) deleteCheckpoint(ctx context.Context, it *item) {
	if err := r.b.out.bucket.Delete(ctx, r.ckptKey(it)); err != nil && !errors.Is(err, storage.ErrNotFound) {
		r.log.Warn("checkpoint not deleted", "pair", it.pair.ID, "err", err)
	}
}

// computed is an engine's result with what the run knows about it.
type computed struct {
	res       *transfer.Result
	steps     int
	resumedAt int
}

// gather returns first plus up to size-1 items already waiting in ready, without waiting for
// more: a lane never holds items back to fill a batch.
func gather(ready <-chan *loaded, first *loaded, size int) []*loaded {
	batch := []*loaded{first}
	for len(batch) < size {
		select {
		case l, ok := <-ready:
			if !ok {
				return batch
			}
			batch = append(batch, l)
		default:
			return batch
		}
	}
	return batch
}

// outcome is what computing one item gave: its result, or ok false when it ended here.
type outcome struct {
	computed
	ok bool
}

// computeBatch runs the engine on loaded items: those with equal parameters (and no checkpoint
// to resume) together where the engine batches, the others one by one.
func (r *runner) computeBatch(ctx context.Context, batch []*loaded) []outcome {
	out := make([]outcome, len(batch))
	be, batches := r.eng.(transfer.BatchOptimizer)
	groups := map[string][]int{}
	var order []string
	for i, l := range batch {
		if !batches || len(batch) == 1 || l.ckpt != nil {
			out[i].computed, out[i].ok = r.compute(ctx, l)
			continue
		}
		d := l.it.params.Digest()
		if groups[d] == nil {
			order = append(order, d)
		}
		groups[d] = append(groups[d], i)
	}
	for _, d := range order {
		idx := groups[d]
		if len(idx) == 1 {
			out[idx[0]].computed, out[idx[0]].ok = r.compute(ctx, batch[idx[0]])
			continue
		}
		jobs := make([]*job, len(idx))
		reqs := make([]transfer.Request, len(idx))
		for k, i := range idx {
			jobs[k] = r.prepare(ctx, batch[i])
			reqs[k] = jobs[k].req
		}
		results, errs := make([]*transfer.Result, len(reqs)), make([]error, len(reqs))
		if err := protect(func() error {
			results, errs = be.StylizeBatch(ctx, reqs)
			return nil
		}); err != nil {
			for k := range errs {
				errs[k] = err
			}
		}
		r.log.Debug("batch", "items", len(reqs))
		for k, i := range idx {
			out[i].computed, out[i].ok = r.finish(ctx, jobs[k], results[k], errs[k])
		}
	}
	return out
}

// job is an item's engine request with its bookkeeping.
type job struct {
	l     *loaded
	req   transfer.Request
	steps *atomic.Int64
	c     computed
}

// compute runs the engine on a loaded item; ok is false when the item ended here (failed or
// interrupted, recorded).
func (r *runner) compute(ctx context.Context, l *loaded) (computed, bool) {
	j := r.prepare(ctx, l)
	var res *transfer.Result
	err := protect(func() (err error) {
		res, err = r.eng.Stylize(ctx, j.req)
		return err
	})
	return r.finish(ctx, j, res, err)
}

// prepare builds an item's request: progress, checkpoints and resume.
func (r *runner) prepare(ctx context.Context, l *loaded) *job {
	it := l.it
	id := it.pair.ID
	r.cfg.Progress.PairStarted(id)
	total := it.params.Steps * max(it.params.Scales, 1)
	j := &job{l: l, steps: new(atomic.Int64)}
	j.req = transfer.Request{
		Content:   l.content,
		Styles:    []image.Image{l.style},
		StyleKeys: []string{r.styleKey(it)},
		Params:    it.params,
		Resume:    l.ckpt,
		OnStep: func(s transfer.Step) error {
			j.steps.Add(1)
			r.cfg.Progress.PairStep(id, s.Step, total)
			return nil
		},
		OnCheckpoint: func(ck *transfer.Checkpoint) error {
			r.writeCheckpoint(ctx, it, ck)
			return nil
		},
	}
	if r.cfg.CheckpointEvery > 0 {
		j.req.CheckpointEvery = r.cfg.CheckpointEvery // and, with OnCheckpoint set, once on cancellation
	}
	if l.ckpt != nil {
		j.c.resumedAt = l.ckpt.Step
		r.log.Info("resuming from checkpoint", "pair", id, "step", l.ckpt.Step)
	}
	return j
}

// finish records how an item's run ended (retrying once without a checkpoint that does not
// match); ok is false when the item ended here (failed or interrupted, recorded).
func (r *runner) finish(ctx context.Context, j *job, res *transfer.Result, err error) (computed, bool) {
	it, c := j.l.it, j.c
	if err != nil && j.req.Resume != nil && errors.Is(err, transfer.ErrCheckpointMismatch) && ctx.Err() == nil {
		r.log.Warn("checkpoint does not match: deleting it and starting fresh", "pair", it.pair.ID, "err", err)
		r.deleteCheckpoint(ctx, it)
		j.req.Resume, c.resumedAt = nil, 0
		err = protect(func() (err error) {
			res, err = r.eng.Stylize(ctx, j.req)
			return err
		})
	}
	c.steps = int(j.steps.Load())
	if err != nil {
		pr := PairResult{Pair: it.pair, Status: StatusFailed, Outputs: it.keys, idx: it.index, Duration: time.Since(j.l.start),
			Steps: c.steps, ResumedAt: c.resumedAt, Err: &PairError{Pair: it.pair, Op: OpStylize, Err: err}}
		if ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
			pr.Status = StatusInterrupted
		}
		r.record(pr)
		return c, false
	}
	c.res = res
	return c, true
}

func (r *runner) writeCheckpoint(ctx context.Context, it *item, ck *transfer.Checkpoint) {
	wctx := ctx
	if ctx.Err() != nil {
		wctx = r.grace // the run was cancelled: this is the last checkpoint
	}
	data, err := ck.MarshalBinary()
	if err == nil {
		err = r.b.out.bucket.Write(wctx, r.ckptKey(it), data, storage.WriteOptions{
			ContentType: "application/octet-stream", Metadata: map[string]string{metaID: it.pair.ID}})
	}
	if err != nil {
		r.log.Warn("checkpoint not written", "pair", it.pair.ID, "step", ck.Step, "err", err)
		return
	}
	r.log.Debug("checkpoint", "pair", it.pair.ID, "step", ck.Step)
}

// upload writes a computed item's outputs, provenance last, and removes its checkpoint. It
// runs on the grace context: a finished result is worth writing after cancellation.
func (r *runner) upload(l *loaded, c computed) {
	it := l.it
	ctx := r.grace
	pr := PairResult{Pair: it.pair, Outputs: it.keys, idx: it.index, Steps: c.steps, ResumedAt: c.resumedAt, Final: c.res.Final()}
	err := protect(func() error {
		spec := r.b.m.Spec.Output
		q := 0
		if spec.JPEGQuality != nil {
			q = *spec.JPEGQuality
		}
		var img bytes.Buffer
		if err := imaging.Encode(&img, c.res.Image, spec.Format, q); err != nil {
			return &PairError{Pair: it.pair, Op: OpEncode, Err: err}
		}
		var log bytes.Buffer
		enc := json.NewEncoder(&log)
		for _, s := range c.res.Log {
			if err := enc.Encode(s); err != nil {
				return &PairError{Pair: it.pair, Op: OpEncode, Err: err}
			}
		}
		if err := r.put(ctx, it, it.keys.Image, img.Bytes(), imaging.ContentType(spec.Format)); err != nil {
			return err
		}
		if err := r.put(ctx, it, it.keys.LossLog, log.Bytes(), "application/x-ndjson"); err != nil {
			return err
		}
		var plot bytes.Buffer
		if err := report.LossPlot(&plot, c.res.Log, report.PlotOptions{Title: path.Base(strings.TrimSuffix(it.keys.LossPlot, ".loss.png")) + " (" + it.pair.Preset + ")"}); err != nil {
			return &PairError{Pair: it.pair, Op: OpEncode, Err: err}
		}
		if err := r.put(ctx, it, it.keys.LossPlot, plot.Bytes(), "image/png"); err != nil {
			return err
		}
		end := time.Now().UTC()
		prov := r.provenance(it, c, l.start.UTC(), end)
		data, err := json.MarshalIndent(prov, "", "  ")
		if err != nil {
			return &PairError{Pair: it.pair, Op: OpEncode, Err: err}
		}
		if err := r.put(ctx, it, it.keys.Provenance, append(data, '\n'), "application/json"); err != nil {
			return err
		}
		r.deleteCheckpoint(ctx, it)
		return nil
	})
	pr.Duration = time.Since(l.start)
	if err != nil {
		if _, ok := err.(*PairError); !ok {
			err = &PairError{Pair: it.pair, Op: OpWrite, Err: err}
		}
		pr.Status, pr.Err = StatusFailed, err
	} else {
		pr.Status = StatusDone
	}
	r.record(pr)
}

// put writes one output: WriteOnce; an object already there from an attempt with the same ID is
// replaced, one of another ID is a conflict (unless Force, which overwrites).
func (r *runner) put(ctx context.Context, it *item, key string, data []byte, contentType string) error {
	opts := storage.WriteOptions{ContentType: contentType, Metadata: map[string]string{metaID: it.pair.ID}}
	out := r.b.out.bucket
	fail := func(err error) error { return &PairError{Pair: it.pair, Op: OpWrite, Err: err} }
	if r.cfg.Force {
		if err := out.Write(ctx, key, data, opts); err != nil {
			return fail(err)
		}
		return nil
	}
	err := out.WriteOnce(ctx, key, data, opts)
	if !errors.Is(err, storage.ErrExists) {
		if err != nil {
			return fail(err)
		}
		return nil
	}
	obj, err := out.Attributes(ctx, key)
	if err != nil {
		return fail(err)
	}
	if other := obj.Metadata[metaID]; other != it.pair.ID {
		if other == "" {
			other = "none"
		}
		return fail(fmt.Errorf("%w at %s (id %s): use a new preset name, or --force", ErrConflict, key, other))
	}
	if err := out.Write(ctx, key, data, opts); err != nil {
		return fail(err)
	}
	return nil
}

func (r *runner) provenance(it *item, c computed, start, end time.Time) Provenance {
	b := r.b
	w := Weights{URL: storage.Redact(b.weights.url), Digest: b.weights.digest, SHA256: b.weights.sha256}
	if b.weights.random {
		w.URL = "random"
		seed := b.weights.seed
		w.Seed = &seed
	}
	if r.info != nil && w.SHA256 == "" && !b.weights.random {
		w.SHA256 = r.info.Weights
	}
	var info transfer.Info
	if r.info != nil {
		info = *r.info
	}
	bounds := c.res.Image.Bounds()
	return Provenance{
		ID:         it.pair.ID,
		Content:    Input{URL: storage.Redact(b.contents.url), Key: it.content.key, Version: it.content.version, Size: it.content.size},
		Style:      Input{URL: storage.Redact(b.styles.url), Key: it.style.key, Version: it.style.version, Size: it.style.size},
		Preset:     it.pair.Preset,
		Params:     it.params,
		ParamsHash: it.paramsDigest,
		Weights:    w,
		Output: OutputInfo{URL: storage.Redact(b.out.url), Keys: it.keys, Format: b.m.Spec.Output.Format,
			Width: bounds.Dx(), Height: bounds.Dy()},
		NST:       r.cfg.Version,
		Engine:    info,
		RunID:     b.runID,
		Shard:     fmt.Sprintf("%d/%d", r.cfg.ShardIndex, r.cfg.ShardCount),
		Start:     start,
		End:       end,
		DurationS: end.Sub(start).Seconds(),
		Steps:     len(c.res.Log),
		ResumedAt: c.resumedAt,
		Final:     c.res.Final(),
	}
}

// record adds an item's end to the report and tells Progress and the log.
func (r *runner) record(pr PairResult) {
	if pr.Status == StatusFailed {
		r.failed.Add(1)
	}
	r.mu.Lock()
	rep := r.report
	rep.Results = append(rep.Results, pr)
	switch pr.Status {
	case StatusDone:
		rep.Done++
	case StatusSkipped:
		rep.Skipped++
	case StatusFailed:
		rep.Failed++
	case StatusInterrupted:
		rep.Interrupted++
	}
	r.mu.Unlock()
	r.cfg.Progress.PairDone(pr)
	attrs := []any{"pair", pr.ID, "content", pr.Content, "style", pr.Style, "preset", pr.Preset}
	switch pr.Status {
	case StatusFailed:
		r.log.Warn("pair failed", append(attrs, "err", pr.Err)...)
	case StatusDone:
		r.log.Info("pair done", append(attrs, "steps", pr.Steps, "resumed_at", pr.ResumedAt, "total_loss", pr.Final.TotalLoss,
			"seconds", pr.Duration.Seconds())...)
	case StatusInterrupted:
		r.log.Info("pair interrupted", append(attrs, "steps", pr.Steps)...)
	default:
		r.log.Debug("pair skipped", attrs...)
	}
}

func (r *runner) writeSummary() error {
	rep := r.report
	s := Summary{RunID: rep.RunID, Manifest: storage.Redact(r.cfg.ManifestURL), Shard: rep.ShardIndex, Shards: rep.ShardCount,
		Planned: rep.Planned, Done: rep.Done, Skipped: rep.Skipped, Failed: rep.Failed, Interrupted: rep.Stopped == "interrupted",
		Stopped: rep.Stopped, Start: rep.Start, End: rep.End, NST: r.cfg.Version, Engine: r.info,
		Failures: []SummaryFailure{}, Pairs: []SummaryPair{}}
	for _, pr := range rep.Results {
		sp := SummaryPair{Pair: pr.Pair, Status: pr.Status, DurationS: pr.Duration.Seconds(), Steps: pr.Steps, ResumedAt: pr.ResumedAt,
			TotalLoss: pr.Final.TotalLoss, StyleLoss: pr.Final.StyleLoss, Content: pr.Final.ContentLoss}
		s.Pairs = append(s.Pairs, sp)
		if pr.Status == StatusFailed {
			f := SummaryFailure{Pair: pr.Pair, Error: pr.Err.Error()}
			var pe *PairError
			if errors.As(pr.Err, &pe) {
				f.Op, f.Error = pe.Op, pe.Err.Error()
			}
			s.Failures = append(s.Failures, f)
		}
	}
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	if err := r.b.out.bucket.Write(r.grace, rep.SummaryKey, append(data, '\n'), storage.WriteOptions{ContentType: "application/json"}); err != nil {
		return fmt.Errorf("write run summary: %w", err)
	}
	return nil
}
