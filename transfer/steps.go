package transfer

import (
	"context"
	"errors"
	"fmt"
	"image"
	"math"
	"time"
)

// Steps is the step bookkeeping of one request, shared by every engine so that they all keep
// Request's contract the same way. The engine does the maths and reports each step's losses;
// Steps numbers and logs the steps, refuses a non-finite loss, ends a level early when
// Params.StopTolerance says so, calls OnStep after every step, OnImage every SaveEvery steps
// and OnCheckpoint every CheckpointEvery steps (but after the run's last step, whose result
// follows at once), checks and restores Request.Resume, and
// when the context ends hands OnCheckpoint one last checkpoint of what this call reached.
//
// An engine drives it like this (levels from Pyramid):
//
//	steps := transfer.NewSteps(req, len(levels), nil)
//	first, err := steps.Resume(sizes) // 0 without req.Resume
//	for l := first; l < len(levels); l++ {
//		// start from req.Resume's image at its level, else from the previous level or Init
//		for k := steps.StartLevel(l); k < req.Params.LevelSteps(l); k++ {
//			if err := steps.Check(ctx, state); err != nil {
//				return nil, err
//			}
//			// ... one optimiser step: the losses ...
//			if err := steps.Record(losses, image, state); err != nil {
//				return nil, err
//			}
//			if steps.LevelDone() {
//				break
//			}
//		}
//	}
//	return steps.Result(img), nil
//
// where image returns the current picture (as Result.Image would show it) and state the
// current Checkpoint's Width, Height, Image and engine-specific State; Steps fills in the
// rest. Both are called only when a callback needs them. A Steps belongs to one goroutine.
type Steps struct {
	req    Request
	levels int
	clock  func(step int) float64
	start  time.Time
	before float64 // ElapsedS that a resumed checkpoint had already spent

	log     []Step
	resumed int  // len(log) when this call started
	level   int  // the level in progress
	inLevel int  // steps done in it
	stopped bool // the level in progress ended early (Step.Stop)
	pending bool // the next StartLevel of level continues the resumed checkpoint
}

// stateLevelSteps is the Checkpoint.State entry holding the steps done in the checkpoint's
// level: with early convergence (L-BFGS) they do not follow from Step.
const stateLevelSteps = "scale_step"

// NewSteps starts the bookkeeping of req over levels pyramid levels of req.Params.Steps steps
// each. clock gives a step's ElapsedS; nil means the seconds since NewSteps, plus what a
// resumed checkpoint had spent.
func NewSteps(req Request, levels int, clock func(step int) float64) *Steps {
	s := &Steps{req: req, levels: max(levels, 1), start: time.Now(), clock: clock}
	if s.clock == nil {
		s.clock = func(int) float64 { return s.before + time.Since(s.start).Seconds() }
	}
	return s
}

// Resume checks req.Resume against the run, whose levels have the given image sizes, and
// takes over its log. It returns the level to start at (0 without a checkpoint); the engine
// starts that level from the checkpoint's Image (and restores its optimiser from State), and
// StartLevel returns the steps it had done there. A checkpoint of other parameters, another
// optimiser, a level or image size this run does not have, or an inconsistent log is refused
// with an error wrapping ErrCheckpointMismatch.
func (s *Steps) Resume(sizes []image.Point) (int, error) {
	cp := s.req.Resume
	if cp == nil {
		return 0, nil
	}
	p := s.req.Params
	bad := func(format string, a ...any) (int, error) {
		return 0, fmt.Errorf("%w: %s", ErrCheckpointMismatch, fmt.Sprintf(format, a...))
	}
	if d := p.Digest(); cp.ParamsDigest != d {
		return bad("it was made with other parameters (digest %.12s, this run %.12s)", cp.ParamsDigest, d)
	}
	if cp.Optimizer != p.Optimizer {
		return bad("it was made by %s, this run uses %s", cp.Optimizer, p.Optimizer)
	}
	if cp.Scale < 0 || cp.Scale >= len(sizes) {
		return bad("it is at scale %d, this run has %d", cp.Scale+1, len(sizes))
	}
	ls := cp.State[stateLevelSteps]
	if len(ls) != 1 || ls[0] < 0 || ls[0] > float32(p.LevelSteps(cp.Scale)) || ls[0] != float32(int(ls[0])) {
		return bad("it holds no valid step count for its scale (%v)", ls)
	}
	inLevel := int(ls[0])
	before := 0 // the most steps the levels before cp.Scale take
	for l := range cp.Scale {
		before += p.LevelSteps(l)
	}
	if cp.Step != len(cp.Log) || cp.Step < inLevel || cp.Step > before+inLevel {
		return bad("it is at step %d with %d logged steps, %d of them at scale %d of a run of %d steps at most before that scale",
			cp.Step, len(cp.Log), inLevel, cp.Scale+1, before)
	}
	for i, st := range cp.Log {
		if st.Step != i+1 {
			return bad("its log's step %d is numbered %d", i+1, st.Step)
		}
	}
	if want := sizes[cp.Scale]; cp.Width != want.X || cp.Height != want.Y || len(cp.Image) != 3*want.X*want.Y {
		return bad("it holds a %dx%d image (%d values), this run needs %dx%d at scale %d",
			cp.Width, cp.Height, len(cp.Image), want.X, want.Y, cp.Scale+1)
	}
	s.log = append([]Step(nil), cp.Log...)
	s.resumed = len(s.log)
	if n := len(s.log); n > 0 {
		s.before = s.log[n-1].ElapsedS
	}
	s.level, s.inLevel, s.pending = cp.Scale, inLevel, true
	if n := len(s.log); inLevel > 0 && s.log[n-1].Stop != "" {
		// Its level had ended early: the engine goes on with the next one.
		s.inLevel = p.LevelSteps(cp.Scale)
	}
	return cp.Scale, nil
}

// StartLevel begins a level and returns the steps already done in it: those of the resumed
// checkpoint for its level, else 0.
func (s *Steps) StartLevel(level int) int {
	done := 0
	if s.pending && level == s.level {
		done = s.inLevel
	}
	s.pending = false
	s.level, s.inLevel, s.stopped = level, done, false
	return done
}

// LevelDone reports whether the level in progress ended early at the step just recorded
// (Params.StopTolerance, or a Step.Stop the engine gave): the engine goes on with the next
// level, or ends the run after the last.
func (s *Steps) LevelDone() bool { return s.stopped }

// Check returns nil while ctx is live. Once ctx is done it returns Stop(ctx.Err(), state).
// Engines call it before every step.
func (s *Steps) Check(ctx context.Context, state func() (*Checkpoint, error)) error {
	if err := ctx.Err(); err != nil {
		return s.Stop(err, state)
	}
	return nil
}

// Stop ends the run for cause (the context's error): if OnCheckpoint is set and this call
// made progress, it hands over a checkpoint of what was reached, so the run can be resumed.
// The error wraps cause, joined with the checkpoint's error if that failed.
func (s *Steps) Stop(cause error, state func() (*Checkpoint, error)) error {
	err := fmt.Errorf("stopped after step %d: %w", len(s.log), cause)
	if s.req.OnCheckpoint != nil && len(s.log) > s.resumed {
		if cerr := s.checkpoint(state); cerr != nil {
			err = errors.Join(err, cerr)
		}
	}
	return err
}

// Record logs a step whose losses are st's ContentLoss, StyleLoss, TVLoss and TotalLoss
// (Steps sets Step, Scale and ElapsedS, and Stop when Params.StopTolerance ends the level
// here; an engine whose optimiser has converged sets Stop itself) and calls the request's
// callbacks; LevelDone then says whether the level has ended. A non-finite loss
// is not logged: the error wraps ErrNonFinite and names the step. A callback's error, or
// image's or state's, is returned wrapped with the step; the run should stop with it.
func (s *Steps) Record(st Step, image func() (*image.NRGBA, error), state func() (*Checkpoint, error)) error {
	n := len(s.log) + 1
	for _, v := range []float64{st.ContentLoss, st.StyleLoss, st.TVLoss, st.TotalLoss} {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("%w at step %d (content %g, style %g, tv %g, total %g): lower the learning rate or the loss weights",
				ErrNonFinite, n, st.ContentLoss, st.StyleLoss, st.TVLoss, st.TotalLoss)
		}
	}
	st.Step, st.Scale, st.ElapsedS = n, 0, s.clock(n)
	if s.levels > 1 {
		st.Scale = s.level + 1
	}
	s.inLevel++
	if st.Stop == "" {
		st.Stop = s.stopReason(st.TotalLoss)
	}
	s.stopped = st.Stop != ""
	s.log = append(s.log, st)
	req := s.req
	if req.OnStep != nil {
		if err := req.OnStep(st); err != nil {
			return fmt.Errorf("step %d: %w", n, err)
		}
	}
	if req.SaveEvery > 0 && req.OnImage != nil && n%req.SaveEvery == 0 {
		img, err := image()
		if err == nil {
			err = req.OnImage(n, img)
		}
		if err != nil {
			return fmt.Errorf("save image at step %d: %w", n, err)
		}
	}
	last := s.level == s.levels-1 && (s.stopped || s.inLevel >= req.Params.LevelSteps(s.level))
	if req.CheckpointEvery > 0 && req.OnCheckpoint != nil && n%req.CheckpointEvery == 0 && !last {
		return s.checkpoint(state)
	}
	return nil
}

// stopReason is Step.Stop for a step of total loss at the level in progress (already counted
// in inLevel, not yet logged), or "" if the level goes on: the loss fell by less than
// StopTolerance (a fraction) over the last StopWindow steps of the level.
func (s *Steps) stopReason(loss float64) string {
	p := s.req.Params
	w := p.StopWindow
	if p.StopTolerance <= 0 || w < 1 || s.inLevel <= w {
		return ""
	}
	before := s.log[len(s.log)-w].TotalLoss // w steps back; the level has inLevel-1 >= w logged
	fell := 0.0                             // from a loss of 0 nothing is left to gain
	if before != 0 {
		fell = (before - loss) / math.Abs(before)
	}
	if fell >= p.StopTolerance {
		return ""
	}
	return fmt.Sprintf("stopTolerance: the loss fell %.3g%% over the last %d steps, under %.3g%%", 100*fell, w, 100*p.StopTolerance)
}

// checkpoint completes the engine's state into a Checkpoint and hands it to OnCheckpoint.
func (s *Steps) checkpoint(state func() (*Checkpoint, error)) error {
	n := len(s.log)
	cp, err := state()
	if err != nil {
		return fmt.Errorf("checkpoint at step %d: %w", n, err)
	}
	cp.Version = checkpointVersion
	cp.ParamsDigest = s.req.Params.Digest()
	cp.Scale = s.level
	cp.Step = n
	cp.Optimizer = s.req.Params.Optimizer
	cp.Log = append([]Step(nil), s.log...)
	if cp.State == nil {
		cp.State = map[string][]float32{}
	}
	cp.State[stateLevelSteps] = []float32{float32(s.inLevel)}
	if err := s.req.OnCheckpoint(cp); err != nil {
		return fmt.Errorf("checkpoint at step %d: %w", n, err)
	}
	return nil
}

// Len is the number of steps logged, those of a resumed checkpoint included.
func (s *Steps) Len() int { return len(s.log) }

// Result is the finished run: img, the log, and the time since NewSteps.
func (s *Steps) Result(img *image.NRGBA) *Result {
	return &Result{Image: img, Log: s.log, Duration: time.Since(s.start)}
}
