package pipeline

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"log/slog"
	"path"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sourcegraph/conc"
	"github.com/sourcegraph/conc/pool"

	"github.com/nst-project/nst/manifests"
	"github.com/nst-project/nst/render"
	"github.com/nst-project/nst/storage"
	"github.com/nst-project/nst/transfer"
	"github.com/nst-project/nst/transfer/imaging"
)

// ErrConflict: an output key holds an object of another item ID (another preset definition,
// other inputs or weights) or one nst did not write, and the run may not replace it (see
// Config.OnConflict).
var ErrConflict = errors.New("outputs of another definition exist")

// ErrCollision: two items of the run would write the same output keys.
var ErrCollision = errors.New("output keys collide")

// metaID is the object metadata key holding the item ID of every output.
const metaID = "nst-id"

// styleCacheSize is how many decoded style images a run keeps.
const styleCacheSize = 8

// maxKeptFailures is how many failed items a ShardResult and a summary keep in full; the rest
// are counted (and each is in the shard's pair log).
const maxKeptFailures = 100

// Run runs the shard cfg.ShardIndex of cfg.ManifestURL's items: it checks cfg and the manifest
// (an error wrapping ErrInvalid, before anything is read from the inputs or written), reads the
// shard's part of the done index, streams the pairs (twice: once to plan and to refuse
// colliding outputs, once to run), skips items already done, stylises the rest with the engine
// from cfg.NewEngine (opened only if there is work) and writes their outputs, the index
// markers, the shard's pair log and summary. See the package documentation for keys, IDs and
// shards.
//
// A failed item is recorded in the ShardResult (and the summary) and the others go on; Run's error
// is for the run as a whole. When ctx is cancelled Run stops taking items, lets the engine
// checkpoint the running ones, writes what finished and the summary within cfg.GracePeriod,
// and returns the ShardResult with Stopped "interrupted" and an error wrapping ctx's error, unless
// every item of the shard was done already. The ShardResult is non-nil whenever the shard's items
// were planned, even with an error.
func Run(ctx context.Context, cfg Config) (*ShardResult, error) {
	cfg, err := cfg.withDefaults(true)
	if err != nil {
		return nil, err
	}
	cat, err := expand(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer cat.buckets.close()
	r := &runner{cat: cat, cfg: cfg, styles: map[string]*image.NRGBA{}}
	r.log = cfg.Logger.With("run_id", cat.runID, "shard", cfg.ShardIndex)
	return r.run(ctx)
}

type runner struct {
	cat    *catalogue
	cfg    Config
	log    *slog.Logger
	grace  context.Context // outlives ctx by GracePeriod: finishing writes
	eng    transfer.Engine
	info   *transfer.Info
	failed atomic.Int64

	lo, hi  uint64   // this shard's slot hashes
	done    *doneSet // this shard's index markers
	plan    *shardScan
	ckpts   *checkpoints
	journal *journal
	thumbs  sync.Map // thumbnail keys made or found by this run

	mu      sync.Mutex
	result  *ShardResult
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

func (r *runner) run(ctx context.Context) (*ShardResult, error) {
	cat, cfg := r.cat, r.cfg
	r.lo, r.hi = shardRange(cfg.ShardIndex, cfg.ShardCount)
	start := time.Now().UTC()
	var err error
	if r.done, err = readIndex(ctx, cat.out, r.lo, r.hi, cfg.IOJobs); err != nil {
		return nil, err
	}
	if cfg.Verify {
		if err := r.done.verifyOutputs(ctx, cat, cfg.Storage.NoMD5Check); err != nil {
			return nil, err
		}
	}
	if r.ckpts, err = listCheckpoints(ctx, cat.out, r.lo, r.hi); err != nil {
		return nil, err
	}
	if r.plan, err = scanShard(ctx, cat, cfg.ShardIndex, cfg.ShardCount); err != nil {
		return nil, err
	}
	r.result = &ShardResult{RunID: cat.runID, ShardIndex: cfg.ShardIndex, ShardCount: cfg.ShardCount, Planned: r.plan.planned, Start: start}
	r.journal = newJournal(r, start)
	cfg.Progress.Planned(r.plan.planned)
	r.log.Info("run", "manifest", storage.Redact(cfg.ManifestURL), "shard_items", r.plan.planned, "shards", cfg.ShardCount,
		"indexed", len(r.done.m))

	grace, cancelGrace := graceContext(ctx, cfg.GracePeriod)
	defer cancelGrace()
	r.grace = grace

	var closeEngine func() error
	runErr := r.process(ctx, r.todo(ctx), &closeEngine)
	if closeEngine != nil {
		if err := closeEngine(); err != nil {
			r.log.Warn("engine close", "err", err)
		}
	}

	rep := r.result
	rep.End = time.Now().UTC()
	if ctx.Err() != nil && !rep.OK() {
		rep.Stopped = "interrupted"
	} else if cfg.MaxFailures > 0 && rep.Failed > cfg.MaxFailures && !rep.OK() {
		rep.Stopped = "max failures exceeded"
	}
	if err := r.journal.finish(); err != nil {
		r.log.Warn("shard summary not written", "err", err)
		if runErr == nil && rep.Stopped != "interrupted" { // interrupted says more, and exits 130
			runErr = err
		}
	}
	if cfg.ContactSheet && ctx.Err() == nil && rep.SummaryKey != "" {
		key, err := writeIndexSheet(ctx, r.sheetEnv(), cat.runID, cfg.ShardCount)
		if err != nil {
			r.log.Warn("contact sheet not written", "err", err)
		}
		rep.SheetKey = key
	}
	if runErr == nil && rep.Stopped == "interrupted" {
		runErr = fmt.Errorf("run %s shard %d/%d interrupted with %d of %d items left: %w", cat.runID, cfg.ShardIndex, cfg.ShardCount,
			rep.Planned-rep.ended(), rep.Planned, ctx.Err())
	}
	r.log.Info("run finished", "planned", rep.Planned, "done", rep.Done, "skipped", rep.Skipped, "stale", rep.Stale, "failed", rep.Failed,
		"interrupted", rep.Interrupted, "stopped", rep.Stopped, "seconds", rep.End.Sub(rep.Start).Seconds())
	return rep, runErr
}

// graceContext returns a context that is not cancelled with ctx but d after it.
func graceContext(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	g, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(d, cancel) })
	return g, func() { stop(); cancel() }
}

// todo streams the shard's items a second time, records those that need no work (done,
// stale and kept, refused) and yields the others in listing order. A listing error ends the
// sequence and is recorded as the run's error by process.
func (r *runner) todo(ctx context.Context) func(yield func(*item) bool) error {
	return func(yield func(*item) bool) error {
		cat := r.cat
		policy := cat.onConflict
		collisions := map[uint64][]*item{}
		err := forEachShardItem(ctx, cat, r.cfg.ShardIndex, r.cfg.ShardCount, true, func(si shardItem) error {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if !r.plan.consume(si.slot) {
				if !r.plan.has(si.slot) {
					return nil // appeared since the first pass: the next run takes it
				}
				r.plan.collided[si.slot] = struct{}{} // a second item in one slot since then
			}
			it := si.item
			if si.err != nil {
				r.record(PairResult{Pair: it.pair, Status: StatusFailed, Outputs: it.keys, Err: &PairError{Pair: it.pair, Op: OpCheck, Err: si.err}})
				return nil
			}
			if _, ok := r.plan.collided[si.slot]; ok {
				collisions[si.slot] = append(collisions[si.slot], it)
				return nil
			}
			if r.cfg.Force {
				it.state = slotForced
				it.markers = r.done.markersOf(it.slot)
			} else {
				st, others := r.done.state(it.slot, parseID(it.pair.ID))
				switch st {
				case indexDone:
					r.ckpts.dropOthers(r, it, "")
					r.record(PairResult{Pair: it.pair, Status: StatusSkipped, Outputs: it.keys})
					return nil
				case indexDamaged:
					it.state, it.markers = slotDamaged, r.done.markersOf(it.slot)
					r.log.Info("outputs changed since they were written: redoing", "pair", it.pair.ID)
				case indexStale:
					switch policy {
					case manifests.ConflictKeep:
						r.record(PairResult{Pair: it.pair, Status: StatusStale, Outputs: it.keys})
						return nil
					case manifests.ConflictReplace:
						it.state, it.markers = slotStale, others
					default:
						r.record(PairResult{Pair: it.pair, Status: StatusFailed, Outputs: it.keys,
							Err: &PairError{Pair: it.pair, Op: OpCheck, Err: conflictError(it.keys.Provenance, idString(others[0].id))}})
						return nil
					}
				}
			}
			it.ckpt = r.ckpts.find(it)
			r.ckpts.dropOthers(r, it, it.ckpt)
			if !yield(it) {
				return errStop
			}
			return nil
		})
		for _, items := range collisions {
			for _, it := range items {
				var others []string
				for _, o := range items {
					if o != it {
						others = append(others, fmt.Sprintf("(content %s, style %s, preset %s)", quote(o.pair.Content), quote(o.pair.Style), o.pair.Preset))
					}
				}
				err := fmt.Errorf("%w: its outputs (%s...) would also be written by %s: rename an input", ErrCollision,
					strings.TrimSuffix(it.keys.Provenance, ".json"), strings.Join(others, ", "))
				r.record(PairResult{Pair: it.pair, Status: StatusFailed, Outputs: it.keys, Err: &PairError{Pair: it.pair, Op: OpCheck, Err: err}})
			}
		}
		if errors.Is(err, errStop) {
			return nil
		}
		return err
	}
}

// conflictError says that key holds outputs of item ID other.
func conflictError(key, other string) error {
	if other == "" {
		return fmt.Errorf("%w at %s: it was not written by nst: move it away", ErrConflict, key)
	}
	return fmt.Errorf("%w at %s (id %s): use a new preset name, or --on-conflict replace to redo them, or keep to leave them", ErrConflict, key, other)
}

func idString(id uint64) string { return fmt.Sprintf("%016x", id) }

// quote quotes a key for human output when it holds anything but printable characters.
func quote(s string) string {
	for _, c := range s {
		if c < ' ' || c == 0x7f || c == '\uFFFD' || (c >= 0x80 && c < 0xa0) {
			return fmt.Sprintf("%q", s)
		}
	}
	return s
}

func (r *runner) openEngine(ctx context.Context) (func() error, error) {
	spec, err := r.cat.engineSpec(ctx)
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

// process checks, loads, computes and writes the items: IOJobs loaders feed Lanes compute
// lanes through a bound of MaxInFlight decoded pairs; finished results go to IOJobs uploaders.
// The engine is opened when the first item needs it; *closeEngine is then set. It returns the
// run's error: the items' listing, or an engine that cannot be opened.
func (r *runner) process(ctx context.Context, items func(yield func(*item) bool) error, closeEngine *func() error) error {
	cfg := r.cfg
	ready := make(chan *loaded)
	slots := make(chan struct{}, cfg.MaxInFlight)
	uploads := pool.New().WithMaxGoroutines(cfg.IOJobs)
	var lanes conc.WaitGroup
	var (
		engineOnce   sync.Once
		engineErr    error
		engineFailed atomic.Bool
	)
	// engine opens the engine once, from the first loader that needs it; the lanes start then.
	engine := func() error {
		engineOnce.Do(func() {
			var closeFn func() error
			closeFn, engineErr = r.openEngine(ctx)
			*closeEngine = closeFn
			if engineErr != nil {
				engineFailed.Store(true)
				return
			}
			for range cfg.Lanes {
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
		})
		return engineErr
	}
	loaders := pool.New().WithMaxGoroutines(cfg.IOJobs)
	var stopErr error
	listErr := items(func(it *item) bool {
		if r.stopping(ctx) {
			return false
		}
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return false
		}
		if engineFailed.Load() {
			<-slots
			return false
		}
		loaders.Go(func() {
			l, err := r.load(ctx, it, engine)
			if l == nil || err != nil {
				<-slots
				if err != nil && ctx.Err() == nil && !errors.Is(err, errEngine) {
					r.record(PairResult{Pair: it.pair, Status: StatusFailed, Outputs: it.keys, Err: err, Duration: time.Since(l.startTime())})
				}
				return
			}
			ready <- l
		})
		return true
	})
	loaders.Wait()
	close(ready)
	lanes.Wait()
	uploads.Wait()
	if engineErr != nil {
		stopErr = engineErr
	} else if listErr != nil && ctx.Err() == nil {
		stopErr = listErr
	}
	return stopErr
}

// errEngine marks a load that stopped because the engine could not be opened.
var errEngine = errors.New("engine not opened")

// protect runs f, turning a panic into an error.
func protect(f func() error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v\n%s", p, debug.Stack())
		}
	}()
	return f()
}

func (l *loaded) startTime() time.Time {
	if l == nil {
		return time.Now()
	}
	return l.start
}

// load checks what an item's slot holds (for a slot the index does not know), then reads and
// decodes its inputs and its checkpoint. A nil loaded with a nil error means the item ended
// here (found done, or refused: recorded).
func (r *runner) load(ctx context.Context, it *item, engine func() error) (l *loaded, err error) {
	l = &loaded{it: it, start: time.Now()}
	fail := func(op string, err error) error { return &PairError{Pair: it.pair, Op: op, Err: err} }
	err = protect(func() error {
		if it.state == slotNew {
			ended, err := r.checkSlot(ctx, it)
			if err != nil || ended {
				return err
			}
		}
		if err := engine(); err != nil {
			return errEngine
		}
		if it.ckpt != "" {
			l.ckpt = r.readCheckpoint(ctx, it)
		}
		var op string
		if l.content, op, err = r.readImage(ctx, r.cat.contents, it.content, "content"); err != nil {
			return fail(op, err)
		}
		key := r.styleKey(it)
		r.mu.Lock()
		l.style = r.styles[key]
		r.mu.Unlock()
		if l.style == nil {
			if l.style, op, err = r.readImage(ctx, r.cat.styles, it.style, "style"); err != nil {
				return fail(op, err)
			}
			r.cacheStyle(key, l.style)
		}
		return nil
	})
	if errors.Is(err, errEngine) {
		return l, err
	}
	if err != nil {
		if _, ok := err.(*PairError); !ok {
			err = fail(OpRead, err)
		}
		return l, err
	}
	if l.content == nil {
		return nil, nil // ended in checkSlot
	}
	return l, nil
}

// checkSlot looks at the outputs of an item whose slot has no index marker: written before the
// index existed, by an attempt that ended between its provenance and its marker, or nothing
// (the usual case: one GET that finds nothing). ended is true when the item ended here: done
// already (its marker is restored), or outputs of another definition under OnConflict fail or
// keep (recorded).
func (r *runner) checkSlot(ctx context.Context, it *item) (ended bool, err error) {
	out := r.cat.out.bucket
	data, _, err := out.Read(ctx, it.keys.Provenance, 16<<20)
	if errors.Is(err, storage.ErrNotFound) {
		return false, nil
	}
	var owner string // the item ID the slot's outputs belong to, "" if unknown
	var p Provenance
	if err == nil && json.Unmarshal(data, &p) == nil && p.ID != "" {
		owner = p.ID
	} else if err != nil && !errors.Is(err, storage.ErrCorrupt) && !errors.Is(err, storage.ErrTooLarge) {
		return false, &PairError{Pair: it.pair, Op: OpCheck, Err: err}
	} else {
		// A damaged provenance: the outputs' metadata tell whose slot it is.
		for _, k := range []string{it.keys.Image, it.keys.Provenance} {
			if o, err := out.Attributes(ctx, k); err == nil && o.Metadata[metaID] != "" {
				owner = o.Metadata[metaID]
				break
			}
		}
		r.log.Info("provenance unreadable", "pair", it.pair.ID, "key", it.keys.Provenance, "owner", owner)
	}
	switch {
	case owner == it.pair.ID:
		objs, ok := r.outputsIntact(ctx, it, p.Output.Objects)
		if !ok || p.ID != it.pair.ID {
			it.state = slotDamaged // ours, but incomplete or damaged: redo over it
			return false, nil
		}
		if err := r.writeMarker(ctx, it, objs); err != nil {
			return false, &PairError{Pair: it.pair, Op: OpWrite, Err: err}
		}
		r.result.addReindexed()
		r.record(PairResult{Pair: it.pair, Status: StatusSkipped, Outputs: it.keys})
		return true, nil
	case owner == "":
		if r.cat.onConflict == manifests.ConflictKeep {
			r.record(PairResult{Pair: it.pair, Status: StatusStale, Outputs: it.keys})
			return true, nil
		}
		return false, &PairError{Pair: it.pair, Op: OpCheck, Err: conflictError(it.keys.Provenance, "")}
	default:
		switch r.cat.onConflict {
		case manifests.ConflictKeep:
			r.record(PairResult{Pair: it.pair, Status: StatusStale, Outputs: it.keys})
			return true, nil
		case manifests.ConflictReplace:
			it.state = slotStale
			return false, nil
		}
		return false, &PairError{Pair: it.pair, Op: OpCheck, Err: conflictError(it.keys.Provenance, owner)}
	}
}

// outputsIntact reads the attributes of an item's outputs: ok when all exist with its ID and,
// where its provenance recorded them (written), with the sizes and MD5s written.
func (r *runner) outputsIntact(ctx context.Context, it *item, written []OutputObject) (objs [numKinds]storage.Object, ok bool) {
	want := map[string]OutputObject{}
	for _, w := range written {
		want[r.cat.out.prefix+w.Key] = w
	}
	for kind, k := range it.keys.list() {
		o, err := r.cat.out.bucket.Attributes(ctx, k)
		if err != nil || o.Metadata[metaID] != it.pair.ID {
			return objs, false
		}
		if w, ok := want[k]; ok && (w.Size != o.Size ||
			(!r.cfg.Storage.NoMD5Check && len(o.MD5) > 0 && w.MD5 != hex.EncodeToString(o.MD5))) {
			return objs, false
		}
		objs[kind] = o
	}
	return objs, true
}

// list returns the keys in kind order (kindImage...).
func (k OutputKeys) list() [numKinds]string {
	return [numKinds]string{k.Image, k.LossLog, k.LossPlot, k.Provenance}
}

func (r *runner) styleKey(it *item) string {
	return stripQuery(r.cat.styles.url) + "|" + it.style.key + "|" + it.style.version
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
		return nil, OpRead, fmt.Errorf("%s %s: %w", what, quote(o.key), err)
	}
	img, _, err := imaging.Decode(bytes.NewReader(data), lim)
	if err != nil {
		return nil, OpDecode, fmt.Errorf("%s %s: %w", what, quote(o.key), err)
	}
	return img, "", nil
}

// readCheckpoint returns the item's checkpoint, nil if it is unusable.
func (r *runner) readCheckpoint(ctx context.Context, it *item) *transfer.Checkpoint {
	data, _, err := r.cat.out.bucket.Read(ctx, it.ckpt, 0)
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
		r.deleteKey(ctx, it.ckpt, it)
		return nil
	}
	return &c
}

// deleteKey deletes a key of the item's bookkeeping (checkpoints), logging failures.
func (r *runner) deleteKey(ctx context.Context, key string, it *item) {
	if err := r.cat.out.bucket.Delete(ctx, key); err != nil && !errors.Is(err, storage.ErrNotFound) {
		r.log.Warn("not deleted", "key", key, "pair", it.pair.ID, "err", err)
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
	be, batches := r.eng.(transfer.BatchEngine)
	groups := map[string][]int{}
	var order []string
	for i, l := range batch {
		if !batches || len(batch) == 1 || l.ckpt != nil {
			out[i].computed, out[i].ok = r.compute(ctx, l)
			continue
		}
		d := l.it.paramsDigest
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
	total := it.params.TotalSteps()
	j := &job{l: l, steps: new(atomic.Int64)}
	j.req = transfer.Request{
		Content:   l.content,
		Styles:    []image.Image{l.style},
		StyleKeys: []string{r.styleKey(it)},
		Params:    *it.params,
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
		r.deleteKey(ctx, it.ckpt, it)
		j.req.Resume, c.resumedAt = nil, 0
		err = protect(func() (err error) {
			res, err = r.eng.Stylize(ctx, j.req)
			return err
		})
	}
	c.steps = int(j.steps.Load())
	if err != nil {
		pr := PairResult{Pair: it.pair, Status: StatusFailed, Outputs: it.keys, Duration: time.Since(j.l.start),
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
	key := ckptKey(r.cat.out.prefix, it.slot, it.pair.ID)
	data, err := ck.MarshalBinary()
	if err == nil {
		err = r.cat.out.bucket.Write(wctx, key, data, storage.WriteOptions{
			ContentType: "application/octet-stream", Metadata: map[string]string{metaID: it.pair.ID}})
	}
	if err != nil {
		r.log.Warn("checkpoint not written", "pair", it.pair.ID, "step", ck.Step, "err", err)
		return
	}
	if it.ckpt != "" && it.ckpt != key {
		r.deleteKey(wctx, it.ckpt, it) // an old-style key, now rewritten under the slot
	}
	it.ckpt = key
	r.log.Debug("checkpoint", "pair", it.pair.ID, "step", ck.Step)
}

// upload writes a computed item's outputs, provenance last, then its index marker, and
// removes its checkpoint. It runs on the grace context: a finished result is worth writing
// after cancellation.
func (r *runner) upload(l *loaded, c computed) {
	it := l.it
	ctx := r.grace
	pr := PairResult{Pair: it.pair, Outputs: it.keys, Steps: c.steps, ResumedAt: c.resumedAt, Final: c.res.Final()}
	err := protect(func() error {
		spec := r.cat.m.Spec.Output
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
		var plot bytes.Buffer
		if err := render.LossPlot(&plot, c.res.Log, render.PlotOptions{Title: path.Base(strings.TrimSuffix(it.keys.LossPlot, ".loss.png")) + " (" + it.pair.Preset + ")"}); err != nil {
			return &PairError{Pair: it.pair, Op: OpEncode, Err: err}
		}
		outputs := []struct {
			data []byte
			ct   string
		}{{img.Bytes(), imaging.ContentType(spec.Format)}, {log.Bytes(), "application/x-ndjson"}, {plot.Bytes(), "image/png"}, {nil, "application/json"}}
		var objs [numKinds]storage.Object
		for kind, o := range outputs[:kindProvenance] {
			sum := md5.Sum(o.data)
			objs[kind] = storage.Object{Key: it.keys.list()[kind], Size: int64(len(o.data)), MD5: sum[:]}
		}
		end := time.Now().UTC()
		prov := r.provenance(it, c, l.start.UTC(), end, objs[:kindProvenance])
		pdata, err := json.MarshalIndent(prov, "", "  ")
		if err != nil {
			return &PairError{Pair: it.pair, Op: OpEncode, Err: err}
		}
		outputs[kindProvenance].data = append(pdata, '\n')
		sum := md5.Sum(outputs[kindProvenance].data)
		objs[kindProvenance] = storage.Object{Key: it.keys.Provenance, Size: int64(len(outputs[kindProvenance].data)), MD5: sum[:]}
		// The index must never name an ID whose outputs are being replaced.
		if err := r.deleteMarkers(ctx, it.markers); err != nil {
			return &PairError{Pair: it.pair, Op: OpWrite, Err: err}
		}
		for kind, o := range outputs {
			if err := r.put(ctx, it, it.keys.list()[kind], o.data, o.ct); err != nil {
				return err
			}
		}
		if err := r.writeMarker(ctx, it, objs); err != nil {
			return &PairError{Pair: it.pair, Op: OpWrite, Err: fmt.Errorf("index marker: %w", err)}
		}
		if it.ckpt != "" {
			r.deleteKey(ctx, it.ckpt, it)
		}
		if r.cfg.ContactSheet {
			r.writeThumbs(ctx, l, c.res.Image)
		}
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

// put writes one output: WriteOnce; an object already there is replaced when it carries this
// item's ID (an earlier attempt), or when the slot is stale (OnConflict replace) or damaged;
// Force writes over anything. Else it is a conflict: outputs of another definition, or an
// object nst did not write.
func (r *runner) put(ctx context.Context, it *item, key string, data []byte, contentType string) error {
	opts := storage.WriteOptions{ContentType: contentType, Metadata: map[string]string{metaID: it.pair.ID}}
	out := r.cat.out.bucket
	fail := func(err error) error { return &PairError{Pair: it.pair, Op: OpWrite, Err: err} }
	if it.state == slotForced {
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
	// A slot with an index marker is nst's: whatever is at its keys (of another ID, or
	// without one: damage) may be replaced when the slot is stale or damaged. Without a marker,
	// only leftovers of this very item are.
	if other := obj.Metadata[metaID]; other != it.pair.ID && it.state != slotStale && it.state != slotDamaged {
		return fail(conflictError(key, other))
	}
	if err := out.Write(ctx, key, data, opts); err != nil {
		return fail(err)
	}
	return nil
}

func (r *runner) provenance(it *item, c computed, start, end time.Time, objs []storage.Object) Provenance {
	cat := r.cat
	w := Weights{URL: storage.Redact(cat.weights.url), Digest: cat.weights.digest, SHA256: cat.weights.sha256}
	if cat.weights.random {
		w.URL = "random"
		seed := cat.weights.seed
		w.Seed = &seed
	}
	if r.info != nil && w.SHA256 == "" && !cat.weights.random {
		w.SHA256 = r.info.Weights
	}
	var info transfer.Info
	if r.info != nil {
		info = *r.info
	}
	bounds := c.res.Image.Bounds()
	var written []OutputObject
	for _, o := range objs {
		written = append(written, OutputObject{Key: strings.TrimPrefix(o.Key, cat.out.prefix), Size: o.Size, MD5: hex.EncodeToString(o.MD5)})
	}
	return Provenance{
		ID:         it.pair.ID,
		Content:    Input{URL: storage.Redact(cat.contents.url), Key: it.content.key, Version: it.content.version, Size: it.content.size},
		Style:      Input{URL: storage.Redact(cat.styles.url), Key: it.style.key, Version: it.style.version, Size: it.style.size},
		Preset:     it.pair.Preset,
		Params:     *it.params,
		ParamsHash: it.paramsDigest,
		Weights:    w,
		Output: OutputInfo{URL: storage.Redact(cat.out.url), Keys: it.keys, Format: cat.m.Spec.Output.Format,
			Width: bounds.Dx(), Height: bounds.Dy(), Objects: written},
		NST:       r.cfg.Version,
		Engine:    info,
		RunID:     cat.runID,
		Shard:     fmt.Sprintf("%d/%d", r.cfg.ShardIndex, r.cfg.ShardCount),
		Start:     start,
		End:       end,
		DurationS: end.Sub(start).Seconds(),
		Steps:     len(c.res.Log),
		ResumedAt: c.resumedAt,
		Final:     c.res.Final(),
	}
}

// record adds an item's end to the shard result and the shard's pair log, and tells Progress and
// the log.
func (r *runner) record(pr PairResult) {
	if pr.Status == StatusFailed {
		r.failed.Add(1)
	}
	r.result.add(pr)
	r.cfg.Progress.PairDone(pr)
	if pr.Status != StatusSkipped && pr.Status != StatusStale {
		r.journal.add(pr)
	}
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
		r.log.Debug("pair "+string(pr.Status), attrs...)
	}
}
