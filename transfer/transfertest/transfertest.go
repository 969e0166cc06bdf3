// Package transfertest holds the contract every style-transfer engine must meet, as one test
// suite: Run. It is run on the fake engine (transfer/fake), the libtorch engine on a narrow
// VGG19 checkpoint (transfer/torch), and the worker pool, which runs an engine in child
// processes (transfer/worker, over the fake and over libtorch), so that none of them can drift
// from the others.
//
// The suite checks behaviour, not maths: what is logged and when, which callbacks are called
// with what, how runs stop, resume and fail, what is refused. Each engine's own tests check
// its maths (for libtorch: parity with the seed's PyTorch loop).
package transfertest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/color"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nst-project/nst/transfer"
	"github.com/nst-project/nst/transfer/imaging"
)

// Caveats are an engine's known, documented departures from the ideal contract. The zero
// value claims none.
type Caveats struct {
	// ApproximateBatch: a request run in a batch gets its lone run's result only up to float
	// rounding (the batched convolutions sum in another order): every logged loss within 1e-4
	// relative, every pixel within 3 levels and at most 1 in 1000 more than 1 level off.
	ApproximateBatch bool
	// LBFGSResumeDiffers: a resumed L-BFGS run starts with an empty history (it is not
	// checkpointed), so it goes on improving from the checkpoint but does not repeat the
	// uninterrupted run's steps.
	LBFGSResumeDiffers bool
	// CancelLags: cancellation reaches the engine asynchronously (it runs in another
	// process), so a few steps may run after ctx is done and the last checkpoint may be from
	// a later step than the one at which ctx was cancelled. It must still come, and resume.
	CancelLags bool
}

// Run runs the contract on engines from newEngine, which is called once per subtest and must
// arrange the engine's cleanup with t.Cleanup. Engines must accept the default layers
// (conv1_1..conv5_1, conv4_2): the suite's images are 32 to 48 px. Subtests run one after
// another; the engine must be safe for concurrent use (one subtest checks that).
func Run(t *testing.T, newEngine func(t *testing.T) transfer.Engine, c Caveats) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, e transfer.Engine, c Caveats)
	}{
		{"Info", testInfo},
		{"Result", testResult},
		{"OnStepSeesTheLog", testOnStep},
		{"SaveAndCheckpointCadence", testCadence},
		{"CallbackErrorsStop", testCallbackErrors},
		{"Scales", testScales},
		{"ScaleSteps", testScaleSteps},
		{"StopTolerance", testStopTolerance},
		{"ResumeEqualsUninterrupted", testResume},
		{"ResumeLBFGS", testResumeLBFGS},
		{"ResumeMismatch", testResumeMismatch},
		{"CancelCheckpointsAndResumes", testCancel},
		{"CancelledBeforeStart", testCancelledBeforeStart},
		{"Deadline", testDeadline},
		{"CancelCheckpointError", testCancelCheckpointError},
		{"NonFiniteLoss", testNonFinite},
		{"BadInput", testBadInput},
		{"InitAndSeed", testInitAndSeed},
		{"StyleKeysDoNotChangeResults", testStyleKeys},
		{"PreserveColors", testPreserveColors},
		{"Concurrent", testConcurrent},
		{"BatchMatchesLoneRuns", testBatchMatches},
		{"BatchIsolatesFailures", testBatchFailures},
		{"BatchCancel", testBatchCancel},
		{"BatchStopTolerance", testBatchStop},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.fn(t, newEngine(t), c)
		})
	}
}

// Content returns the suite's content picture, w x h: a diagonal gradient with a bright disc
// and a dark bar, so that every region and channel differs. Any size works.
func Content(w, h int) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			c := color.NRGBA{uint8(40 + 160*x/w), uint8(60 + 140*y/h), uint8(200 - 120*(x+y)/(w+h)), 255}
			if dx, dy := x-w/3, y-h/2; dx*dx+dy*dy < (h/4)*(h/4) {
				c = color.NRGBA{250, 240, 200, 255}
			}
			if x > 2*w/3 && x < 2*w/3+w/8 {
				c = color.NRGBA{20, 30, 40, 255}
			}
			img.SetNRGBA(x, y, c)
		}
	}
	return img
}

// Style returns the suite's style picture, w x h: bold diagonal stripes of red and blue.
func Style(w, h int) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			c := color.NRGBA{220, 40, 30, 255}
			if (x+y)/6%2 == 1 {
				c = color.NRGBA{30, 60, 210, 255}
			}
			img.SetNRGBA(x, y, c)
		}
	}
	return img
}

// params are the suite's parameters: the defaults (the seed's layers and weights, Adam) at
// 32 px, with a learning rate that moves the image visibly in a few steps.
func params(steps int) transfer.Params {
	p := transfer.DefaultParams()
	p.Size, p.Steps, p.LR = 32, steps, 0.02
	return p
}

// request is a request of the suite's content (48x40, fitted to 32x27) and style.
func request(p transfer.Params) transfer.Request {
	return transfer.Request{Content: Content(48, 40), Styles: []image.Image{Style(40, 40)}, Params: p}
}

func stylize(t *testing.T, e transfer.Engine, req transfer.Request) *transfer.Result {
	t.Helper()
	res, err := e.Stylize(t.Context(), req)
	if err != nil {
		t.Fatalf("Stylize: %v", err)
	}
	if res == nil || res.Image == nil {
		t.Fatalf("Stylize returned %+v and no error", res)
	}
	return res
}

// sameLosses reports how two logs differ in anything but ElapsedS ("" if they do not).
func sameLosses(got, want []transfer.Step) string {
	if len(got) != len(want) {
		return fmt.Sprintf("%d steps logged, want %d", len(got), len(want))
	}
	for i := range got {
		g, w := got[i], want[i]
		g.ElapsedS, w.ElapsedS = 0, 0
		if g != w {
			return fmt.Sprintf("log[%d] = %+v, want %+v", i, got[i], want[i])
		}
	}
	return ""
}

// roundTrip passes a checkpoint through its bytes, as the pipeline stores it.
func roundTrip(t *testing.T, c *transfer.Checkpoint) *transfer.Checkpoint {
	t.Helper()
	b, err := c.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var back transfer.Checkpoint
	if err := back.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	return &back
}

func relErr(got, want float64) float64 {
	if want == 0 {
		return math.Abs(got)
	}
	return math.Abs(got-want) / math.Abs(want)
}

func testInfo(t *testing.T, e transfer.Engine, _ Caveats) {
	i := e.Info()
	if i.Engine == "" || i.Device == "" || i.Weights == "" {
		t.Errorf("Info = %+v: want the engine, device and weights named (provenance records them)", i)
	}
	stylize(t, e, request(params(1)))
	if again := e.Info(); again != i {
		t.Errorf("Info changed after a run: %+v, then %+v", i, again)
	}
}

// testResult: a run logs every step, numbered, with a total that is the weighted sum of the
// terms; the image has the content's shape fitted to Size; the loss goes down; a second run
// gives the same.
func testResult(t *testing.T, e transfer.Engine, _ Caveats) {
	p := params(8)
	p.TVWeight = 1
	res := stylize(t, e, request(p))
	if got, want := res.Image.Rect.Size(), image.Pt(imaging.FitSize(48, 40, 32)); got != want || res.Image.Rect.Min != (image.Point{}) {
		t.Errorf("image %v, want the content fitted to %v at the origin", res.Image.Rect, want)
	}
	if len(res.Log) != 8 {
		t.Fatalf("%d steps logged, want 8", len(res.Log))
	}
	prev := 0.0
	for i, s := range res.Log {
		if s.Step != i+1 || s.Scale != 0 {
			t.Errorf("log[%d] is step %d at scale %d, want step %d at scale 0 (one scale)", i, s.Step, s.Scale, i+1)
		}
		want := p.ContentWeight*s.ContentLoss + p.StyleWeight*s.StyleLoss + p.TVWeight*s.TVLoss
		if relErr(s.TotalLoss, want) > 1e-4 {
			t.Errorf("step %d: total %g, the weighted sum of its terms is %g", s.Step, s.TotalLoss, want)
		}
		if s.ContentLoss < 0 || s.StyleLoss < 0 || s.TVLoss < 0 {
			t.Errorf("step %d: a negative loss term: %+v", s.Step, s)
		}
		if s.ElapsedS < prev {
			t.Errorf("step %d: elapsed %v after %v", s.Step, s.ElapsedS, prev)
		}
		prev = s.ElapsedS
	}
	if res.Final() != res.Log[len(res.Log)-1] || res.Duration <= 0 {
		t.Errorf("Final %+v, Duration %v", res.Final(), res.Duration)
	}
	if first, last := res.Log[0].TotalLoss, res.Final().TotalLoss; !(last < first) {
		t.Errorf("total loss %g -> %g over 8 steps: the engine does not optimise", first, last)
	}
	again := stylize(t, e, request(p))
	if d := sameLosses(again.Log, res.Log); d != "" || !bytes.Equal(again.Image.Pix, res.Image.Pix) {
		t.Errorf("a second run of the same request differs: %s (images equal: %v)", d, bytes.Equal(again.Image.Pix, res.Image.Pix))
	}
}

func testOnStep(t *testing.T, e transfer.Engine, _ Caveats) {
	req := request(params(6))
	var seen []transfer.Step
	req.OnStep = func(s transfer.Step) error { seen = append(seen, s); return nil }
	res := stylize(t, e, req)
	if len(seen) != len(res.Log) {
		t.Fatalf("OnStep called %d times for %d logged steps", len(seen), len(res.Log))
	}
	for i := range seen {
		if seen[i] != res.Log[i] {
			t.Errorf("OnStep saw %+v, the log holds %+v", seen[i], res.Log[i])
		}
	}
}

// testCadence: OnImage every SaveEvery steps with the image the result would be; OnCheckpoint
// every CheckpointEvery steps, but not after the last, each a consistent prefix of the run.
func testCadence(t *testing.T, e transfer.Engine, _ Caveats) {
	p := params(8)
	req := request(p)
	var calls []string
	images := map[int]*image.NRGBA{}
	var cps []*transfer.Checkpoint
	req.SaveEvery, req.CheckpointEvery = 4, 3
	req.OnImage = func(n int, img *image.NRGBA) error {
		calls = append(calls, fmt.Sprint("img", n))
		images[n] = img
		return nil
	}
	req.OnCheckpoint = func(c *transfer.Checkpoint) error {
		calls = append(calls, fmt.Sprint("cp", c.Step))
		cps = append(cps, c)
		return nil
	}
	res := stylize(t, e, req)
	if got, want := strings.Join(calls, " "), "cp3 img4 cp6 img8"; got != want {
		t.Errorf("callbacks %q, want %q (none after the last step but the image it asks for)", got, want)
	}
	for n, img := range images {
		if img.Rect != res.Image.Rect {
			t.Errorf("image at step %d is %v, the result %v", n, img.Rect, res.Image.Rect)
		}
	}
	if img := images[8]; img != nil && !bytes.Equal(img.Pix, res.Image.Pix) {
		t.Errorf("the image saved at the last step differs from the result")
	}
	for _, c := range cps {
		if c.Step != len(c.Log) || c.ParamsDigest != p.Digest() || c.Optimizer != p.Optimizer || c.Scale != 0 {
			t.Errorf("checkpoint at step %d: %d logged steps, digest %.12s (want %.12s), optimizer %q, scale %d",
				c.Step, len(c.Log), c.ParamsDigest, p.Digest(), c.Optimizer, c.Scale)
		}
		if c.Width != res.Image.Rect.Dx() || c.Height != res.Image.Rect.Dy() || len(c.Image) != 3*c.Width*c.Height {
			t.Errorf("checkpoint at step %d holds a %dx%d image of %d values", c.Step, c.Width, c.Height, len(c.Image))
		}
		if d := sameLosses(c.Log, res.Log[:min(c.Step, len(res.Log))]); d != "" {
			t.Errorf("checkpoint at step %d: its log is not the run's: %s", c.Step, d)
		}
	}

	// A cadence without its callback, or a callback without its cadence, calls nothing.
	quiet := request(p)
	quiet.SaveEvery, quiet.CheckpointEvery = 1, 1
	stylize(t, e, quiet)
	quiet = request(p)
	quiet.OnImage = func(int, *image.NRGBA) error { t.Error("OnImage called without SaveEvery"); return nil }
	quiet.OnCheckpoint = func(*transfer.Checkpoint) error { t.Error("OnCheckpoint called without CheckpointEvery"); return nil }
	stylize(t, e, quiet)
}

// testCallbackErrors: a callback's error stops the run and is returned; nothing is reported
// after it.
func testCallbackErrors(t *testing.T, e transfer.Engine, _ Caveats) {
	boom := errors.New("disk full")
	tests := []struct {
		name string
		edit func(r *transfer.Request)
	}{
		{"OnStep", func(r *transfer.Request) {
			r.OnStep = func(s transfer.Step) error {
				if s.Step == 2 {
					return boom
				}
				return nil
			}
		}},
		{"OnImage", func(r *transfer.Request) {
			r.SaveEvery = 2
			r.OnImage = func(int, *image.NRGBA) error { return boom }
		}},
		{"OnCheckpoint", func(r *transfer.Request) {
			r.CheckpointEvery = 2
			r.OnCheckpoint = func(*transfer.Checkpoint) error { return boom }
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := request(params(40))
			tt.edit(&req)
			var mu sync.Mutex
			last, after := 0, 0
			inner := req.OnStep
			req.OnStep = func(s transfer.Step) error {
				mu.Lock()
				if last >= 2 {
					after++
				}
				last = s.Step
				mu.Unlock()
				if inner != nil {
					return inner(s)
				}
				return nil
			}
			res, err := e.Stylize(t.Context(), req)
			if !errors.Is(err, boom) || res != nil {
				t.Fatalf("Stylize = %v, %v; want the callback's error and no result", res, err)
			}
			if !strings.Contains(err.Error(), "at step 2") && !strings.Contains(err.Error(), "step 2:") {
				t.Errorf("error %q does not name step 2", err)
			}
			if after > 0 {
				t.Errorf("OnStep called %d times after the failing step", after)
			}
		})
	}
}

// testScales: a two-level pyramid logs Steps steps per level with Scale 1 and 2, checkpoints
// hold each level's image size, and the result is at full size.
func testScales(t *testing.T, e transfer.Engine, _ Caveats) {
	p := params(3)
	p.Size, p.Scales = 40, 2
	req := request(p)
	var sizes []image.Point
	var levels []int
	req.CheckpointEvery = 1
	req.OnCheckpoint = func(c *transfer.Checkpoint) error {
		sizes = append(sizes, image.Pt(c.Width, c.Height))
		levels = append(levels, c.Scale)
		return nil
	}
	res := stylize(t, e, req)
	full := image.Pt(imaging.FitSize(48, 40, 40))
	half := image.Pt(imaging.FitSize(full.X, full.Y, 20))
	if res.Image.Rect.Size() != full {
		t.Errorf("image %v, want %v", res.Image.Rect, full)
	}
	if len(res.Log) != 6 {
		t.Fatalf("%d steps logged, want 3 per scale", len(res.Log))
	}
	for i, s := range res.Log {
		if s.Step != i+1 || s.Scale != i/3+1 {
			t.Errorf("log[%d] is step %d at scale %d, want step %d at scale %d", i, s.Step, s.Scale, i+1, i/3+1)
		}
	}
	want := []image.Point{half, half, half, full, full}
	if !slices.Equal(sizes, want) || !slices.Equal(levels, []int{0, 0, 0, 1, 1}) {
		t.Errorf("checkpoints of %v at levels %v, want %v at [0 0 0 1 1]", sizes, levels, want)
	}
}

// testScaleSteps: with ScaleSteps the coarser scales run their own step counts and the last
// one Steps; a checkpoint in the middle of each resumes to the same run.
func testScaleSteps(t *testing.T, e transfer.Engine, _ Caveats) {
	p := params(2)
	p.Size, p.Scales, p.ScaleSteps = 64, 3, []int{4, 1} // 16, 32 and 64 px
	req := request(p)
	req.Content = Content(64, 64)
	res := stylize(t, e, req)
	var scales []int
	for _, s := range res.Log {
		scales = append(scales, s.Scale)
	}
	if want := []int{1, 1, 1, 1, 2, 3, 3}; !slices.Equal(scales, want) {
		t.Errorf("steps at scales %v, want %v", scales, want)
	}
	if p.TotalSteps() != 7 {
		t.Errorf("TotalSteps = %d, want 7", p.TotalSteps())
	}
	resumeAll(t, e, req, true)
}

// relFall is the fraction by which the loss fell from log[k-w] to log[k] (Params.StopTolerance).
func relFall(log []transfer.Step, k, w int) float64 {
	before := log[k-w].TotalLoss
	if before == 0 {
		return 0
	}
	return (before - log[k].TotalLoss) / math.Abs(before)
}

// checkStops checks the stop criterion on a log: within each scale, the first step (past the
// window) whose loss fell by less than p.StopTolerance over p.StopWindow steps ends the scale
// and says so in Stop; no other step has a Stop; a scale that never met it ran all its steps.
func checkStops(t *testing.T, name string, p transfer.Params, log []transfer.Step) {
	t.Helper()
	w := p.StopWindow
	start := 0
	for level := 0; start < len(log); level++ {
		end := start
		for end < len(log) && log[end].Scale == log[start].Scale {
			end++
		}
		lv := log[start:end]
		stopAt := -1
		for k := w; k < len(lv); k++ {
			if relFall(lv, k, w) < p.StopTolerance {
				stopAt = k
				break
			}
		}
		switch {
		case stopAt < 0 && len(lv) != p.LevelSteps(level):
			t.Errorf("%s: scale %d ran %d of its %d steps, but its loss never fell less than %g over %d steps",
				name, level+1, len(lv), p.LevelSteps(level), p.StopTolerance, w)
		case stopAt >= 0 && stopAt != len(lv)-1:
			t.Errorf("%s: scale %d should have ended at its step %d (fell %g over %d steps), it ran %d",
				name, level+1, stopAt+1, relFall(lv, stopAt, w), w, len(lv))
		}
		for k, st := range lv {
			if want := k == stopAt; (st.Stop != "") != want || (want && !strings.Contains(st.Stop, "stopTolerance")) {
				t.Errorf("%s: step %d (scale %d) has Stop %q, want one: %v", name, st.Step, level+1, st.Stop, want)
			}
		}
		start = end
	}
}

// testStopTolerance: StopTolerance ends each scale at the first step whose loss fell by less
// than the tolerance over the window (the run without it, up to there, logs the same losses),
// says so in the log, and a run stopped that way resumes from any checkpoint to the same run.
func testStopTolerance(t *testing.T, e transfer.Engine, _ Caveats) {
	p := params(12)
	p.Size, p.Scales, p.ScaleSteps = 40, 2, []int{10}
	full := stylize(t, e, request(p))
	if len(full.Log) != 22 {
		t.Fatalf("%d steps without a tolerance, want 10 + 12", len(full.Log))
	}
	// A tolerance that the first scale meets by its 7th step: its fall over 3 steps there.
	p.StopWindow = 3
	p.StopTolerance = math.Min(math.Max(relFall(full.Log, 6, 3), 1e-9)*1.000001, 0.99)
	res := stylize(t, e, request(p))
	checkStops(t, "run", p, res.Log)
	first := 0
	for first < len(res.Log) && res.Log[first].Scale == 1 {
		first++
	}
	if first > 7 {
		t.Errorf("scale 1 ran %d steps, want at most 7 (tolerance %g)", first, p.StopTolerance)
	}
	got := slices.Clone(res.Log[:first])
	for i := range got {
		got[i].Stop = ""
	}
	if d := sameLosses(got, full.Log[:first]); d != "" {
		t.Errorf("scale 1 with a tolerance differs from the run without: %s", d)
	}
	if last := res.Log[len(res.Log)-1]; last.Scale != 2 || res.Image.Rect.Size() != full.Image.Rect.Size() {
		t.Errorf("the run ended at scale %d with a %v image, want scale 2 and %v", last.Scale, res.Image.Rect, full.Image.Rect)
	}

	t.Run("resume", func(t *testing.T) { resumeAll(t, e, request(p), true) })
	t.Run("one scale", func(t *testing.T) {
		q := params(30)
		q.StopWindow, q.StopTolerance = 2, p.StopTolerance
		res := stylize(t, e, request(q))
		checkStops(t, "one scale", q, res.Log)
		if len(res.Log) == 30 {
			t.Errorf("ran all 30 steps with tolerance %g", q.StopTolerance)
		}
	})
}

// resumeAll runs req uninterrupted with a checkpoint after every step, then resumes each
// checkpoint (through its bytes) and compares.
func resumeAll(t *testing.T, e transfer.Engine, req transfer.Request, exact bool) {
	t.Helper()
	var cps []*transfer.Checkpoint
	full := req
	full.CheckpointEvery = 1
	full.OnCheckpoint = func(c *transfer.Checkpoint) error { cps = append(cps, c); return nil }
	want := stylize(t, e, full)
	if len(cps) != len(want.Log)-1 {
		t.Fatalf("%d checkpoints for %d steps, want one after every step but the last", len(cps), len(want.Log))
	}
	for _, cp := range cps {
		r := req
		r.Resume = roundTrip(t, cp)
		var seen []int
		r.OnStep = func(s transfer.Step) error { seen = append(seen, s.Step); return nil }
		got := stylize(t, e, r)
		if d := sameLosses(got.Log[:min(cp.Step, len(got.Log))], cp.Log); d != "" {
			t.Errorf("resumed from step %d: the log does not start with the checkpoint's: %s", cp.Step, d)
		}
		if len(seen) != len(got.Log)-cp.Step || (len(seen) > 0 && seen[0] != cp.Step+1) {
			t.Errorf("resumed from step %d: OnStep saw steps %v of %d", cp.Step, seen, len(got.Log))
		}
		if exact {
			if d := sameLosses(got.Log, want.Log); d != "" || !bytes.Equal(got.Image.Pix, want.Image.Pix) {
				t.Errorf("resumed from step %d: differs from the uninterrupted run: %s (images equal: %v)",
					cp.Step, d, bytes.Equal(got.Image.Pix, want.Image.Pix))
			}
			continue
		}
		if len(got.Log) != len(want.Log) || !(got.Final().TotalLoss < cp.Log[len(cp.Log)-1].TotalLoss) {
			t.Errorf("resumed from step %d: %d steps, total %g -> %g: want %d steps and a lower loss",
				cp.Step, len(got.Log), cp.Log[len(cp.Log)-1].TotalLoss, got.Final().TotalLoss, len(want.Log))
		}
	}
}

func testResume(t *testing.T, e transfer.Engine, _ Caveats) {
	t.Run("one scale", func(t *testing.T) { resumeAll(t, e, request(params(5)), true) })
	t.Run("two scales, noise, preserved colours", func(t *testing.T) {
		p := params(3)
		p.Size, p.Scales, p.Init, p.Seed, p.PreserveColors = 40, 2, transfer.InitNoise, 7, true
		resumeAll(t, e, request(p), true)
	})
}

func testResumeLBFGS(t *testing.T, e transfer.Engine, c Caveats) {
	p := params(5)
	p.Optimizer, p.LR = transfer.LBFGS, 1
	resumeAll(t, e, request(p), !c.LBFGSResumeDiffers)
}

// testResumeMismatch: a checkpoint that does not belong to the run is refused before any step.
func testResumeMismatch(t *testing.T, e transfer.Engine, _ Caveats) {
	p := params(6)
	req := request(p)
	var cp *transfer.Checkpoint
	req.CheckpointEvery = 3
	req.OnCheckpoint = func(c *transfer.Checkpoint) error { cp = c; return nil }
	stylize(t, e, req)
	if cp == nil {
		t.Fatal("no checkpoint")
	}
	tests := []struct {
		name string
		edit func(*transfer.Request, *transfer.Checkpoint)
	}{
		{"other params", func(r *transfer.Request, c *transfer.Checkpoint) { r.Params.StyleWeight = 5 }},
		{"other optimizer", func(r *transfer.Request, c *transfer.Checkpoint) { c.Optimizer = transfer.LBFGS }},
		{"content of another size", func(r *transfer.Request, c *transfer.Checkpoint) { r.Content = Content(40, 40) }},
		{"step beyond the run", func(r *transfer.Request, c *transfer.Checkpoint) {
			c.Step = 7
			c.Log = append(c.Log, c.Log[2], c.Log[2], c.Log[2], c.Log[2])
			for i := range c.Log {
				c.Log[i].Step = i + 1
			}
			c.State["scale_step"] = []float32{7}
		}},
		{"step and log disagree", func(r *transfer.Request, c *transfer.Checkpoint) { c.Log = c.Log[:2] }},
		{"log misnumbered", func(r *transfer.Request, c *transfer.Checkpoint) { c.Log[1].Step = 5 }},
		{"scale it does not have", func(r *transfer.Request, c *transfer.Checkpoint) { c.Scale = 1 }},
		{"short image", func(r *transfer.Request, c *transfer.Checkpoint) { c.Image = c.Image[:10] }},
		{"no step count", func(r *transfer.Request, c *transfer.Checkpoint) { delete(c.State, "scale_step") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := *roundTrip(t, cp)
			r := request(p)
			tt.edit(&r, &c)
			r.Resume = &c
			ran := false
			r.OnStep = func(transfer.Step) error { ran = true; return nil }
			res, err := e.Stylize(t.Context(), r)
			if !errors.Is(err, transfer.ErrCheckpointMismatch) || res != nil {
				t.Errorf("Stylize = %v, %v; want ErrCheckpointMismatch", res, err)
			}
			if ran {
				t.Error("a step ran")
			}
		})
	}
}

// testCancel: cancelling mid-run returns the context's error and hands over one checkpoint of
// what was reached; resuming it completes the run.
func testCancel(t *testing.T, e transfer.Engine, c Caveats) {
	steps := cancelSteps(c)
	p := params(steps)
	req := request(p)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var cps []*transfer.Checkpoint
	var mu sync.Mutex
	req.OnStep = func(s transfer.Step) error {
		if s.Step == 3 {
			cancel()
		}
		return nil
	}
	req.OnCheckpoint = func(c *transfer.Checkpoint) error {
		mu.Lock()
		defer mu.Unlock()
		cps = append(cps, c)
		return nil
	}
	res, err := e.Stylize(ctx, req)
	if !errors.Is(err, context.Canceled) || res != nil {
		t.Fatalf("Stylize = %v, %v; want context.Canceled and no result", res, err)
	}
	if len(cps) != 1 {
		t.Fatalf("%d checkpoints, want exactly one on cancellation", len(cps))
	}
	cp := cps[0]
	if (!c.CancelLags && cp.Step != 3) || cp.Step < 3 || cp.Step >= steps {
		t.Errorf("checkpoint at step %d, want 3 (cancelled there)", cp.Step)
	}
	r := request(p)
	r.Resume = roundTrip(t, cp)
	got := stylize(t, e, r)
	if len(got.Log) != steps {
		t.Errorf("resumed run logged %d steps, want %d", len(got.Log), steps)
	}
	if d := sameLosses(got.Log[:cp.Step], cp.Log); d != "" {
		t.Errorf("resumed log does not start with the checkpoint's: %s", d)
	}
}

// cancelSteps is the length of the runs the cancellation tests cancel at step 3: long enough
// that a lagging cancellation still lands mid-run.
func cancelSteps(c Caveats) int {
	if c.CancelLags {
		return 300
	}
	return 100
}

func testCancelledBeforeStart(t *testing.T, e transfer.Engine, _ Caveats) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	req := request(params(5))
	req.CheckpointEvery = 1
	req.OnStep = func(transfer.Step) error { t.Error("a step ran"); return nil }
	req.OnCheckpoint = func(*transfer.Checkpoint) error { t.Error("a checkpoint without progress"); return nil }
	if res, err := e.Stylize(ctx, req); !errors.Is(err, context.Canceled) || res != nil {
		t.Errorf("Stylize = %v, %v; want context.Canceled", res, err)
	}
}

// testDeadline: a deadline stops a long run soon after it passes, with a checkpoint.
func testDeadline(t *testing.T, e transfer.Engine, _ Caveats) {
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	req := request(params(transfer.MaxSteps))
	var cp *transfer.Checkpoint
	req.OnCheckpoint = func(c *transfer.Checkpoint) error { cp = c; return nil }
	res, err := e.Stylize(ctx, req)
	if !errors.Is(err, context.DeadlineExceeded) || res != nil {
		t.Fatalf("Stylize = %v, %v; want context.DeadlineExceeded", res, err)
	}
	if late := time.Since(mustDeadline(ctx)); late > 10*time.Second {
		t.Errorf("returned %v after the deadline", late)
	}
	if cp == nil || cp.Step < 1 {
		t.Errorf("checkpoint %v, want one of the steps reached", cp)
	}
}

func mustDeadline(ctx context.Context) time.Time {
	d, _ := ctx.Deadline()
	return d
}

// testCancelCheckpointError: if the last checkpoint cannot be taken, the error says so and
// still says the run was cancelled.
func testCancelCheckpointError(t *testing.T, e transfer.Engine, _ Caveats) {
	boom := errors.New("bucket unreachable")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	req := request(params(100))
	req.OnStep = func(s transfer.Step) error {
		if s.Step == 2 {
			cancel()
		}
		return nil
	}
	req.OnCheckpoint = func(*transfer.Checkpoint) error { return boom }
	_, err := e.Stylize(ctx, req)
	if !errors.Is(err, context.Canceled) || !errors.Is(err, boom) {
		t.Errorf("err = %v, want both context.Canceled and the checkpoint's error", err)
	}
}

// testNonFinite: a learning rate that blows the image up stops the run with ErrNonFinite,
// naming the step; the steps before it were reported.
func testNonFinite(t *testing.T, e transfer.Engine, _ Caveats) {
	p := params(50)
	p.LR = 1e30
	req := request(p)
	seen := 0
	req.OnStep = func(transfer.Step) error { seen++; return nil }
	res, err := e.Stylize(t.Context(), req)
	if !errors.Is(err, transfer.ErrNonFinite) || res != nil {
		t.Fatalf("Stylize = %v, %v; want ErrNonFinite", res, err)
	}
	if want := fmt.Sprintf("at step %d ", seen+1); !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not name the step (%q) after the %d reported", err, want, seen)
	}
	if seen > 10 {
		t.Errorf("%d finite steps with lr 1e30", seen)
	}
}

// testBadInput: what the engine cannot use is refused before any step, with ErrBadInput and a
// message naming the problem.
func testBadInput(t *testing.T, e transfer.Engine, _ Caveats) {
	tests := []struct {
		name   string
		edit   func(*transfer.Request)
		saying []string
	}{
		{"invalid params, all listed", func(r *transfer.Request) { r.Params.Steps = 0; r.Params.Optimizer = "sgd" },
			[]string{"steps: 0", `optimizer: "sgd"`}},
		{"unknown layer", func(r *transfer.Request) { r.Params.ContentLayer = "conv9_9" }, []string{"contentLayer", "conv9_9"}},
		{"negative lr", func(r *transfer.Request) { r.Params.LR = -1 }, []string{"lr: -1"}},
		{"no content", func(r *transfer.Request) { r.Content = nil }, []string{"content: no image"}},
		{"empty content", func(r *transfer.Request) { r.Content = image.NewNRGBA(image.Rectangle{}) }, []string{"content: no image"}},
		{"no styles", func(r *transfer.Request) { r.Styles = nil }, []string{"styles: no style image"}},
		{"nil style", func(r *transfer.Request) { r.Styles = []image.Image{r.Styles[0], nil} }, []string{"styles[1]: no image"}},
		{"style keys", func(r *transfer.Request) { r.StyleKeys = []string{"a", "b"} }, []string{"styleKeys: 2 keys for 1"}},
		{"blend length", func(r *transfer.Request) { r.Params.StyleBlend = []float64{1, 2} }, []string{"styleBlend has 2 weights for 1"}},
		{"content too small for VGG19", func(r *transfer.Request) { r.Content = Content(10, 12) },
			[]string{"the content is 10x12 px at scale 1 of 1; conv5_1 needs at least 16 px per side"}},
		{"content too thin", func(r *transfer.Request) { r.Content = Content(200, 10) }, []string{"the content is 32x2 px"}},
		{"pyramid too deep", func(r *transfer.Request) { r.Params.Scales = 3 }, []string{"the content is 8x7 px at scale 1 of 3"}},
		{"style scaled too small", func(r *transfer.Request) { r.Params.StyleScale = 0.3 },
			[]string{"a style is 10x10 px at scale 1 of 1; conv5_1 needs at least 16 px per side"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := request(params(3))
			tt.edit(&req)
			req.OnStep = func(transfer.Step) error { t.Error("a step ran"); return nil }
			res, err := e.Stylize(t.Context(), req)
			if !errors.Is(err, transfer.ErrBadInput) || res != nil {
				t.Fatalf("Stylize = %v, %v; want ErrBadInput", res, err)
			}
			for _, s := range tt.saying {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not say %q", err, s)
				}
			}
		})
	}
	// The smallest content the default layers take works.
	req := request(params(1))
	req.Content = Content(16, 16)
	if res := stylize(t, e, req); res.Image.Rect.Size() != image.Pt(16, 16) {
		t.Errorf("16x16 content gave %v", res.Image.Rect)
	}
}

func testInitAndSeed(t *testing.T, e transfer.Engine, _ Caveats) {
	run := func(init string, seed int64) *transfer.Result {
		p := params(2)
		p.Init, p.Seed = init, seed
		return stylize(t, e, request(p))
	}
	n1, n1b, n2 := run(transfer.InitNoise, 1), run(transfer.InitNoise, 1), run(transfer.InitNoise, 2)
	if !bytes.Equal(n1.Image.Pix, n1b.Image.Pix) {
		t.Error("noise init with one seed gave two images")
	}
	if bytes.Equal(n1.Image.Pix, n2.Image.Pix) {
		t.Error("noise init with seeds 1 and 2 gave the same image")
	}
	content, style := run(transfer.InitContent, 0), run(transfer.InitStyle, 0)
	if bytes.Equal(content.Image.Pix, n1.Image.Pix) || bytes.Equal(content.Image.Pix, style.Image.Pix) {
		t.Error("content, noise and style init gave equal images")
	}
}

func testStyleKeys(t *testing.T, e transfer.Engine, _ Caveats) {
	plain := stylize(t, e, request(params(3)))
	for i := range 2 { // the second may come from a cache
		req := request(params(3))
		req.StyleKeys = []string{"styles/stripes.png@etag1"}
		got := stylize(t, e, req)
		if d := sameLosses(got.Log, plain.Log); d != "" || !bytes.Equal(got.Image.Pix, plain.Image.Pix) {
			t.Errorf("run %d with a style key differs from a run without: %s", i+1, d)
		}
	}
}

// testPreserveColors: with PreserveColors the result keeps the content's chroma (I and Q of
// YIQ within 3 levels on average) while its luminance changes.
func testPreserveColors(t *testing.T, e transfer.Engine, _ Caveats) {
	p := params(10)
	p.PreserveColors = true
	res := stylize(t, e, request(p))
	content := imaging.Fit(Content(48, 40), 32)
	var chroma, luma float64
	for i := 0; i < len(content.Pix); i += 4 {
		yiq := func(p []uint8) (float64, float64, float64) {
			r, g, b := float64(p[0]), float64(p[1]), float64(p[2])
			return 0.299*r + 0.587*g + 0.114*b, 0.596*r - 0.274*g - 0.322*b, 0.211*r - 0.523*g + 0.312*b
		}
		cy, ci, cq := yiq(content.Pix[i:])
		ry, ri, rq := yiq(res.Image.Pix[i:])
		chroma += math.Abs(ci-ri) + math.Abs(cq-rq)
		luma += math.Abs(cy - ry)
	}
	n := float64(len(content.Pix) / 4)
	if chroma/n > 3 {
		t.Errorf("mean chroma change %.2f levels, want < 3 with preserved colours", chroma/n)
	}
	if luma == 0 {
		t.Error("the luminance did not change: nothing was stylised")
	}
}

// testConcurrent: concurrent calls give what sequential ones give.
func testConcurrent(t *testing.T, e transfer.Engine, _ Caveats) {
	reqs := []transfer.Request{request(params(4)), request(params(5)), request(params(4))}
	reqs[1].Content = Content(40, 48)
	want := make([]*transfer.Result, len(reqs))
	for i, r := range reqs {
		want[i] = stylize(t, e, r)
	}
	var wg sync.WaitGroup
	got := make([]*transfer.Result, len(reqs))
	errs := make([]error, len(reqs))
	for i, r := range reqs {
		wg.Go(func() { got[i], errs[i] = e.Stylize(t.Context(), r) })
	}
	wg.Wait()
	for i := range reqs {
		if errs[i] != nil {
			t.Errorf("request %d: %v", i, errs[i])
			continue
		}
		if d := sameLosses(got[i].Log, want[i].Log); d != "" || !bytes.Equal(got[i].Image.Pix, want[i].Image.Pix) {
			t.Errorf("request %d run concurrently differs from its sequential run: %s", i, d)
		}
	}
}

func batcher(t *testing.T, e transfer.Engine) transfer.BatchEngine {
	b, ok := e.(transfer.BatchEngine)
	if !ok {
		t.Skipf("%T is not a transfer.BatchEngine", e)
	}
	return b
}

// checkLikeAlone compares a batched result with the request's lone run.
func checkLikeAlone(t *testing.T, name string, got, alone *transfer.Result, c Caveats) {
	t.Helper()
	if !c.ApproximateBatch {
		if d := sameLosses(got.Log, alone.Log); d != "" || !bytes.Equal(got.Image.Pix, alone.Image.Pix) {
			t.Errorf("%s: batched result differs from its lone run: %s (images equal: %v)", name, d, bytes.Equal(got.Image.Pix, alone.Image.Pix))
		}
		return
	}
	if len(got.Log) != len(alone.Log) || got.Image.Rect != alone.Image.Rect {
		t.Fatalf("%s: %d steps and %v image batched, %d and %v alone", name, len(got.Log), got.Image.Rect, len(alone.Log), alone.Image.Rect)
	}
	for k, s := range got.Log {
		a := alone.Log[k]
		if s.Step != a.Step || s.Scale != a.Scale {
			t.Errorf("%s: log[%d] is step %d scale %d, alone %d %d", name, k, s.Step, s.Scale, a.Step, a.Scale)
		}
		for _, v := range [][2]float64{{s.ContentLoss, a.ContentLoss}, {s.StyleLoss, a.StyleLoss}, {s.TVLoss, a.TVLoss}, {s.TotalLoss, a.TotalLoss}} {
			if relErr(v[0], v[1]) > 1e-4 {
				t.Errorf("%s: step %d batched %+v, alone %+v", name, s.Step, s, a)
				break
			}
		}
	}
	maxd, off := 0, 0
	for k := range alone.Image.Pix {
		d := int(alone.Image.Pix[k]) - int(got.Image.Pix[k])
		d = max(d, -d)
		maxd = max(maxd, d)
		if d > 1 {
			off++
		}
	}
	if maxd > 3 || off > len(alone.Image.Pix)/1000 {
		t.Errorf("%s: pixels differ from the lone run by up to %d levels (%d by more than 1)", name, maxd, off)
	}
}

// testBatchMatches: each request of a batch gets its own callbacks and the result it gets
// alone.
func testBatchMatches(t *testing.T, e transfer.Engine, c Caveats) {
	b := batcher(t, e)
	p := params(6)
	p.TVWeight = 10
	swapped := Content(48, 40)
	for i := 0; i < len(swapped.Pix); i += 4 {
		swapped.Pix[i], swapped.Pix[i+2] = swapped.Pix[i+2], swapped.Pix[i]
	}
	reqs := []transfer.Request{request(p), request(p), request(p)}
	reqs[1].Content = swapped
	reqs[2].Styles = []image.Image{Content(40, 40)}
	steps := make([]int, len(reqs))
	for i := range reqs {
		reqs[i].OnStep = func(transfer.Step) error { steps[i]++; return nil }
	}
	results, errs := b.StylizeBatch(t.Context(), reqs)
	if len(results) != len(reqs) || len(errs) != len(reqs) {
		t.Fatalf("%d results and %d errors for %d requests", len(results), len(errs), len(reqs))
	}
	for i, r := range reqs {
		if errs[i] != nil || results[i] == nil {
			t.Fatalf("request %d: %v", i, errs[i])
		}
		alone := r
		alone.OnStep = nil
		checkLikeAlone(t, fmt.Sprint("request ", i), results[i], stylize(t, e, alone), c)
		if steps[i] != 6 {
			t.Errorf("request %d: OnStep called %d times, want 6", i, steps[i])
		}
	}
	if results, errs := b.StylizeBatch(t.Context(), nil); len(results) != 0 || len(errs) != 0 {
		t.Errorf("an empty batch gave %d results and %d errors", len(results), len(errs))
	}
}

// testBatchStop: in a batch, each request stops where its lone run does (StopTolerance), with
// its lone run's result, while the others go on.
func testBatchStop(t *testing.T, e transfer.Engine, c Caveats) {
	b := batcher(t, e)
	p := params(20)
	p.StopWindow = 2
	reqs := []transfer.Request{request(p), request(p)}
	reqs[1].Styles = []image.Image{Content(40, 40)}
	// A tolerance that the first request meets at its 5th step and, ideally, the second at
	// another: the midpoint between its falls at steps 4 and 5 (if they differ), so that
	// rounding in a batch cannot move the stop.
	alone := stylize(t, e, reqs[0])
	f4, f5 := relFall(alone.Log, 3, 2), relFall(alone.Log, 4, 2)
	p.StopTolerance = math.Min(math.Max((f4+f5)/2, 1e-9), 0.99)
	if f4 <= f5 {
		p.StopTolerance = math.Min(math.Max(f5*1.000001, 1e-9), 0.99)
	}
	for i := range reqs {
		reqs[i].Params = p
	}
	results, errs := b.StylizeBatch(t.Context(), reqs)
	for i, r := range reqs {
		if errs[i] != nil || results[i] == nil {
			t.Fatalf("request %d: %v", i, errs[i])
		}
		lone := stylize(t, e, r)
		checkStops(t, fmt.Sprint("request ", i, " alone"), p, lone.Log)
		checkLikeAlone(t, fmt.Sprint("request ", i), results[i], lone, c)
	}
	if n := len(results[0].Log); n > 5 || n == 20 {
		t.Errorf("request 0 ran %d steps, want at most 5 (tolerance %g)", n, p.StopTolerance)
	}
}

// testBatchIsolatesFailures: in a batch, a request that fails (its callback's error, bad
// input, a non-finite loss) fails alone; the others, of any size or optimiser, succeed with
// their lone runs' results. The first batch shares its parameters (an engine may run it as
// one), the second mixes them.
func testBatchFailures(t *testing.T, e transfer.Engine, c Caveats) {
	b := batcher(t, e)
	boom := errors.New("disk full")
	p := params(4)
	check := func(reqs []transfer.Request, want map[int]error) {
		t.Helper()
		results, errs := b.StylizeBatch(t.Context(), reqs)
		for i := range reqs {
			if w, ok := want[i]; ok {
				if !errors.Is(errs[i], w) || results[i] != nil {
					t.Errorf("request %d: %v, want %v", i, errs[i], w)
				}
				continue
			}
			if errs[i] != nil || results[i] == nil {
				t.Errorf("request %d: %v", i, errs[i])
				continue
			}
			alone := reqs[i]
			alone.OnStep = nil
			checkLikeAlone(t, fmt.Sprint("request ", i), results[i], stylize(t, e, alone), c)
		}
	}

	same := []transfer.Request{request(p), request(p), request(p), request(p), request(p)}
	same[1].OnStep = func(s transfer.Step) error {
		if s.Step == 2 {
			return boom
		}
		return nil
	}
	same[2].Content = Content(10, 10)
	same[3].Content = Content(40, 48)
	check(same, map[int]error{1: boom, 2: transfer.ErrBadInput})

	lbfgs := p
	lbfgs.Optimizer, lbfgs.LR = transfer.LBFGS, 1
	blowUp := p
	blowUp.LR = 1e30
	check([]transfer.Request{request(p), request(lbfgs), request(blowUp), request(p)}, map[int]error{2: transfer.ErrNonFinite})
}

// testBatchCancel: cancelling a batch stops every request with the context's error; each that
// made progress hands over one checkpoint, which resumes to the full run.
func testBatchCancel(t *testing.T, e transfer.Engine, c Caveats) {
	b := batcher(t, e)
	steps := cancelSteps(c)
	p := params(steps)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	reqs := []transfer.Request{request(p), request(p), request(p)}
	var mu sync.Mutex
	cps := make([][]*transfer.Checkpoint, len(reqs))
	for i := range reqs {
		reqs[i].OnCheckpoint = func(c *transfer.Checkpoint) error {
			mu.Lock()
			defer mu.Unlock()
			cps[i] = append(cps[i], c)
			return nil
		}
	}
	reqs[0].OnStep = func(s transfer.Step) error {
		if s.Step == 3 {
			cancel()
		}
		return nil
	}
	results, errs := b.StylizeBatch(ctx, reqs)
	for i := range reqs {
		if !errors.Is(errs[i], context.Canceled) || results[i] != nil {
			t.Errorf("request %d: %v, %v; want context.Canceled", i, results[i], errs[i])
		}
		if len(cps[i]) > 1 {
			t.Errorf("request %d: %d checkpoints, want at most one", i, len(cps[i]))
		}
	}
	if len(cps[0]) != 1 {
		t.Fatalf("request 0 (cancelled at its step 3) got %d checkpoints, want one", len(cps[0]))
	}
	// Every checkpoint is whole; the last request's that has one resumes to the full run (one
	// resume: ResumeEqualsUninterrupted checks them thoroughly).
	last := 0
	for i := range reqs {
		if len(cps[i]) == 0 {
			continue
		}
		last = i
		if c := cps[i][0]; c.Step < 1 || c.Step != len(c.Log) || len(c.Image) != 3*c.Width*c.Height {
			t.Errorf("request %d: checkpoint at step %d with %d logged steps and %d values for %dx%d",
				i, c.Step, len(c.Log), len(c.Image), c.Width, c.Height)
		}
	}
	r := request(p)
	r.Resume = roundTrip(t, cps[last][0])
	if got := stylize(t, e, r); len(got.Log) != steps {
		t.Errorf("request %d resumed from step %d logged %d steps, want %d", last, cps[last][0].Step, len(got.Log), steps)
	}
}
