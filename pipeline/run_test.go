package pipeline

import (
	"context"
	"errors"
	"fmt"
	"image"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gocloud.dev/blob"

	"github.com/nst-project/nst/transfer"
	"github.com/nst-project/nst/transfer/fake"
)

// env is one backend for the end-to-end scenario.
type env struct {
	open          func(ctx context.Context, u string) (*blob.Bucket, error) // for the test's own access
	runOpen       func(ctx context.Context, u string) (*blob.Bucket, error) // Config.OpenBucket (nil: default)
	in, out, out2 string                                                    // bucket URLs (as OpenBucket gets them)
	dir           func(bucketURL, prefix string) string                     // directory URL in a manifest
}

func memEnv() env {
	m := &memBuckets{}
	return env{open: m.open, runOpen: m.open, in: "mem://in", out: "mem://out", out2: "mem://out2",
		dir: func(b, p string) string { return b + "/" + p }}
}

func (e env) bucket(t *testing.T, u string) *blob.Bucket {
	t.Helper()
	b, err := e.open(t.Context(), u)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (e env) config(manifest string) Config {
	return Config{ManifestURL: manifest, OpenBucket: e.runOpen, NewEngine: fakeEngine(fake.Engine{AnySize: true}), RunID: "r1", Version: "test"}
}

// runScenario: a manifest with three contents, two styles and two presets runs to completion
// with valid outputs; a re-run skips everything and writes nothing; shards 0..n-1 together write
// each output once.
func runScenario(t *testing.T, e env) {
	in := e.bucket(t, e.in)
	standardInputs(t, in, "contents/", "styles/")
	man := writeManifest(t, manifestText(e.dir(e.in, "contents/"), e.dir(e.in, "styles/"), e.dir(e.out, ""), ""))
	cfg := e.config(man)
	start := time.Now()
	rep, res, err := runResults(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("12 pairs in %v", time.Since(start))
	if rep.Planned != 12 || rep.Done != 12 || !rep.OK() {
		t.Fatalf("result: planned %d done %d failed %d: %+v", rep.Planned, rep.Done, rep.Failed, res)
	}
	out := e.bucket(t, e.out)
	checkOutputs(t, out, rep, res, 4)
	sum := readSummary(t, out, rep.SummaryKey)
	if !strings.HasPrefix(rep.SummaryKey, "_runs/r1/shard-0-of-1.") || sum.Done != 12 || sum.Planned != 12 ||
		len(pairLog(t, out, "", sum)) != 12 || sum.Interrupted != 0 || sum.Attempt == "" {
		t.Fatalf("summary %s: %+v", rep.SummaryKey, sum)
	}
	wantKeys := map[string]bool{}
	for _, r := range res {
		for _, k := range []string{r.Outputs.Image, r.Outputs.LossLog, r.Outputs.LossPlot, r.Outputs.Provenance} {
			wantKeys[k] = true
		}
	}
	if !wantKeys["soft/sub/b__night.png"] || !wantKeys["bold/c__wave.json"] {
		t.Errorf("keys: %v", wantKeys)
	}

	// A re-run skips everything and writes nothing but its summary.
	before := snapshot(t, out)
	if len(before) != 60 { // 4 outputs and an index marker per item
		t.Errorf("%d objects, want 60: %v", len(before), before)
	}
	prog := &countingProgress{}
	cfg.Progress = prog
	rep2, err := Run(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if rep2.Skipped != 12 || rep2.Done != 0 || prog.steps.Load() != 0 {
		t.Errorf("re-run: skipped %d done %d steps %d", rep2.Skipped, rep2.Done, prog.steps.Load())
	}
	if after := snapshot(t, out); !maps.Equal(before, after) {
		t.Errorf("re-run changed objects:\nbefore %v\nafter  %v", before, after)
	}

	// Shards 0..2 into a fresh output write each output exactly once.
	man3 := writeManifest(t, manifestText(e.dir(e.in, "contents/"), e.dir(e.in, "styles/"), e.dir(e.out2, ""), ""))
	seen := map[string]int{}
	total, planned := 0, 0
	for i := range 3 {
		c := e.config(man3)
		c.ShardIndex, c.ShardCount = i, 3
		rep, res, err := runResults(t.Context(), c)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Done != rep.Planned || !rep.OK() {
			t.Errorf("shard %d: planned %d done %d", i, rep.Planned, rep.Done)
		}
		planned += rep.Planned
		for _, r := range res {
			seen[r.ID]++
			total++
		}
	}
	if len(seen) != 12 || total != 12 || planned != 12 {
		t.Errorf("shards planned %d and wrote %d items (%d distinct), want 12", planned, total, len(seen))
	}
	if sharded := len(snapshot(t, e.bucket(t, e.out2))); sharded != 60 {
		t.Errorf("sharded outputs: %d objects, want 60", sharded)
	}
}

func TestRunMem(t *testing.T) { runScenario(t, memEnv()) }

// TestBrokenImages: truncated JPEG bytes, text named .png and an all-magenta content (NaN in
// the fake engine) fail only their own pairs, with clear causes in the shard result and summary.
func TestBrokenImages(t *testing.T) {
	e := memEnv()
	in := e.bucket(t, e.in)
	standardInputs(t, in, "contents/", "styles/")
	good := jpegBytes(t, testImage(30, 30, 7))
	put(t, in, "contents/trunc.jpg", good[:len(good)/2])
	put(t, in, "contents/text.png", []byte("this is not an image at all"))
	put(t, in, "contents/magenta.png", magentaPNG(t))
	man := writeManifest(t, manifestText("mem://in/contents/", "mem://in/styles/", "mem://out/r/", ""))
	rep, res, err := runResults(t.Context(), e.config(man))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Done != 12 || rep.Failed != 12 {
		t.Fatalf("done %d failed %d, want 12 and 12", rep.Done, rep.Failed)
	}
	for _, r := range res {
		if r.Status != StatusFailed {
			continue
		}
		var pe *PairError
		if !errors.As(r.Err, &pe) {
			t.Fatalf("%v is not a PairError", r.Err)
		}
		want := map[string]string{"trunc.jpg": OpDecode, "text.png": OpDecode, "magenta.png": OpStylize}[r.Content]
		if pe.Op != want || !strings.Contains(r.Err.Error(), r.Content) && pe.Op != OpStylize {
			t.Errorf("%s: op %s, want %s: %v", r.Content, pe.Op, want, r.Err)
		}
		if r.Content == "magenta.png" && !errors.Is(r.Err, transfer.ErrNonFinite) {
			t.Errorf("magenta: %v does not wrap ErrNonFinite", r.Err)
		}
	}
	out := e.bucket(t, e.out)
	sum := readSummary(t, out, rep.SummaryKey)
	if sum.Failed != 12 || len(sum.Failures) != 12 {
		t.Fatalf("summary: %+v", sum)
	}
	for _, f := range sum.Failures {
		if f.Op == "" || f.Error == "" || f.ID == "" || f.Preset == "" {
			t.Errorf("failure without cause: %+v", f)
		}
	}
	t.Logf("example causes: %q; %q", sum.Failures[0].Error, sum.Failures[len(sum.Failures)-1].Error)
	checkOutputs(t, out, rep, res, 4)
}

// TestNewPresetLeavesOldOutputs: adding a preset computes only its items and leaves the
// earlier preset's objects untouched.
func TestNewPresetLeavesOldOutputs(t *testing.T) {
	e := memEnv()
	standardInputs(t, e.bucket(t, e.in), "contents/", "styles/")
	one := `apiVersion: nst/v1
kind: StyleBatch
metadata: {name: test}
spec:
  model: {weights: random}
  inputs: {contents: {url: "mem://in/contents/"}, styles: {url: "mem://in/styles/"}}
  params: {size: 16, steps: 3}
  presets:
    - {name: soft, styleWeight: 10}
%s  output: {url: "mem://out/r/"}
`
	rep, err := Run(t.Context(), e.config(writeManifest(t, fmt.Sprintf(one, ""))))
	if err != nil || rep.Done != 6 {
		t.Fatalf("first run: %v, %+v", err, rep)
	}
	out := e.bucket(t, e.out)
	before := snapshot(t, out)
	rep, err = Run(t.Context(), e.config(writeManifest(t, fmt.Sprintf(one, "    - {name: sharp, styleWeight: 1e4, tvWeight: 1}\n"))))
	if err != nil || rep.Done != 6 || rep.Skipped != 6 {
		t.Fatalf("second run: %v, done %d skipped %d", err, rep.Done, rep.Skipped)
	}
	after := snapshot(t, out)
	for k, v := range before {
		if after[k] != v {
			t.Errorf("%s changed", k)
		}
	}
	if len(after) != 2*len(before) {
		t.Errorf("%d objects after, want %d", len(after), 2*len(before))
	}
	// Changing a preset's weights under the same name conflicts instead of overwriting.
	changed := strings.Replace(fmt.Sprintf(one, ""), "styleWeight: 10", "styleWeight: 20", 1)
	rep, res, err := runResults(t.Context(), e.config(writeManifest(t, changed)))
	if err != nil || rep.Failed != 6 || !errors.Is(res[0].Err, ErrConflict) {
		t.Fatalf("changed preset: %v, %+v", err, res)
	}
	if msg := res[0].Err.Error(); !strings.Contains(msg, "use a new preset name, or --on-conflict replace") || strings.Contains(msg, "--force") {
		t.Errorf("conflict message: %v", msg)
	}
	for k, v := range before {
		if snapshot(t, out)[k] != v {
			t.Errorf("%s changed by a conflicting run", k)
		}
	}
	// --force overwrites.
	cfg := e.config(writeManifest(t, changed))
	cfg.Force = true
	if rep, err = Run(t.Context(), cfg); err != nil || rep.Done != 6 {
		t.Fatalf("forced: %v, %+v", err, rep)
	}
}

// TestLeftoversOfSameID: an image and loss log left by an interrupted attempt of the same item
// (no provenance) are replaced; a foreign nst-id is a conflict for that pair only.
func TestLeftovers(t *testing.T) {
	e := memEnv()
	standardInputs(t, e.bucket(t, e.in), "contents/", "styles/")
	man := writeManifest(t, manifestText("mem://in/contents/", "mem://in/styles/", "mem://out/r/", ""))
	var items []PlanItem
	if _, err := PlanRun(t.Context(), e.config(man), PlanOptions{Shard: -1, Each: func(it PlanItem) error {
		items = append(items, it)
		return nil
	}}); err != nil {
		t.Fatal(err)
	}
	out := e.bucket(t, e.out)
	same, foreign := items[0], items[1]
	w := func(key, id string) {
		if err := out.WriteAll(t.Context(), key, []byte("partial"), &blob.WriterOptions{Metadata: map[string]string{metaID: id}}); err != nil {
			t.Fatal(err)
		}
	}
	w(same.Outputs.Image, same.ID)
	w(same.Outputs.LossLog, same.ID)
	w(foreign.Outputs.Image, "0123456789abcdef")
	rep, err := Run(t.Context(), e.config(man))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Done != 11 || rep.Failed != 1 || rep.Failures[0].ID != foreign.ID || !errors.Is(rep.Failures[0].Err, ErrConflict) ||
		!strings.Contains(rep.Failures[0].Err.Error(), "(id 0123456789abcdef)") {
		t.Fatalf("done %d failed %d: %+v", rep.Done, rep.Failed, rep.Failures)
	}
	if data, _ := out.ReadAll(t.Context(), same.Outputs.Image); string(data) == "partial" {
		t.Error("same-ID leftover not replaced")
	}
	if data, _ := out.ReadAll(t.Context(), foreign.Outputs.Image); string(data) != "partial" {
		t.Error("foreign object overwritten")
	}
}

// TestCancelAndResume: cancelling mid-pair writes a checkpoint and an interrupted summary; the
// next run resumes from the checkpoint, computes only the remaining steps and completes.
func TestCancelAndResume(t *testing.T) {
	e := memEnv()
	in := e.bucket(t, e.in)
	put(t, in, "contents/a.png", pngBytes(t, testImage(20, 14, 1)))
	put(t, in, "styles/wave.png", pngBytes(t, testImage(16, 16, 4)))
	const steps = 40
	man := writeManifest(t, strings.Replace(manifestText("mem://in/contents/", "mem://in/styles/", "mem://out/r/", ""),
		"steps: 4", fmt.Sprintf("steps: %d", steps), 1))
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	prog := &countingProgress{onStep: func(_ string, step int) {
		if step == 15 {
			cancel()
		}
	}}
	cfg := e.config(man)
	cfg.NewEngine = fakeEngine(fake.Engine{AnySize: true, StepDelay: time.Millisecond})
	cfg.Progress, cfg.Lanes, cfg.CheckpointEvery = prog, 1, 1000
	rep, err := Run(ctx, cfg)
	if !errors.Is(err, context.Canceled) || rep == nil || rep.Stopped != "interrupted" || rep.Interrupted != 1 {
		t.Fatalf("cancelled run: %v, %+v", err, rep)
	}
	out := e.bucket(t, e.out)
	keys := snapshot(t, out)
	var ckpt string
	for k := range keys {
		if strings.HasPrefix(k, "r/_checkpoints/") {
			ckpt = k
		}
	}
	if ckpt == "" {
		t.Fatalf("no checkpoint: %v", keys)
	}
	if sum := readSummary(t, out, rep.SummaryKey); sum.Stopped != "interrupted" || sum.Interrupted != 1 || sum.Done != 0 {
		t.Fatalf("summary %+v", sum)
	}
	first := prog.steps.Load()

	prog2 := &countingProgress{}
	cfg.Progress, cfg.NewEngine = prog2, fakeEngine(fake.Engine{AnySize: true})
	rep, res, err := runResults(t.Context(), cfg)
	if err != nil || rep.Done != 2 {
		t.Fatalf("resumed run: %v, %+v", err, rep)
	}
	resumed := res[0] // the item that was running: the one with a checkpoint
	if res[1].ResumedAt > 0 {
		resumed = res[1]
	}
	if resumed.ResumedAt < 15 || resumed.Steps != steps-resumed.ResumedAt {
		t.Errorf("resumed at %d, computed %d steps (first run %d)", resumed.ResumedAt, resumed.Steps, first)
	}
	if got := prog2.steps.Load(); got >= 2*steps {
		t.Errorf("resumed run computed %d steps, want fewer than %d", got, 2*steps)
	}
	checkOutputs(t, out, rep, res, steps)
	if _, ok := snapshot(t, out)[ckpt]; ok {
		t.Error("checkpoint left after the pair was done")
	}
}

// TestMaxFailures: once more than MaxFailures pairs failed, no new pair starts.
func TestMaxFailures(t *testing.T) {
	e := memEnv()
	in := e.bucket(t, e.in)
	for i := range 6 {
		put(t, in, fmt.Sprintf("contents/bad%d.png", i), []byte("nope"))
	}
	put(t, in, "styles/wave.png", pngBytes(t, testImage(16, 16, 4)))
	man := writeManifest(t, manifestText("mem://in/contents/", "mem://in/styles/", "mem://out/r/", ""))
	cfg := e.config(man)
	cfg.MaxFailures, cfg.IOJobs, cfg.MaxInFlight = 1, 1, 1
	rep, err := Run(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Failed < 2 || rep.Failed > 3 || rep.Stopped != "max failures exceeded" || rep.OK() {
		t.Errorf("failed %d of %d, stopped %q", rep.Failed, rep.Planned, rep.Stopped)
	}
}

// TestPanicIsPairError: an engine panic fails its pair only.
func TestPanicIsPairError(t *testing.T) {
	e := memEnv()
	standardInputs(t, e.bucket(t, e.in), "contents/", "styles/")
	man := writeManifest(t, manifestText("mem://in/contents/", "mem://in/styles/", "mem://out/r/", ""))
	cfg := e.config(man)
	cfg.NewEngine = fakeEngine(fake.Engine{AnySize: true, FailIf: func(r transfer.Request) error {
		if r.Content.Bounds().Dx() == 14 { // sub/b.png
			panic("boom")
		}
		return nil
	}})
	rep, res, err := runResults(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Failed != 4 || rep.Done != 8 {
		t.Fatalf("failed %d done %d", rep.Failed, rep.Done)
	}
	for _, r := range res {
		if r.Status == StatusFailed && (r.Content != "sub/b.png" || !strings.Contains(r.Err.Error(), "panic: boom")) {
			t.Errorf("%s: %v", r.Content, r.Err)
		}
	}
}

// TestManifestProblemsAllAtOnce: engine-level parameter problems are reported together with
// their lines, as ErrInvalid, and nothing is written.
func TestManifestProblemsAllAtOnce(t *testing.T) {
	e := memEnv()
	standardInputs(t, e.bucket(t, e.in), "contents/", "styles/")
	text := `apiVersion: nst/v1
kind: StyleBatch
metadata: {name: test}
spec:
  model: {weights: random}
  inputs: {contents: {url: "mem://in/contents/"}, styles: {url: "mem://in/styles/"}}
  params:
    size: 16
    contentLayer: conv9_9
  presets:
    - name: soft
      styleLayers: {conv1_1: 1, conv7_1: 0.5}
    - {name: bold, styleBlend: [1, 2]}
  output: {url: "mem://out/r/"}
`
	_, err := Run(t.Context(), e.config(writeManifest(t, text)))
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("err = %v, want ErrInvalid", err)
	}
	for _, want := range []string{"line 9: spec.params.contentLayer:", "line 12: spec.presets[0].styleLayers.conv7_1:"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if n := len(snapshot(t, e.bucket(t, e.out))); n != 0 {
		t.Errorf("%d objects written", n)
	}
	// What only the pipeline checks (one style per pair) comes with its line too.
	text = strings.Replace(text, "conv9_9", "conv4_2", 1)
	text = strings.Replace(text, "conv7_1", "conv2_1", 1)
	_, err = Run(t.Context(), e.config(writeManifest(t, text)))
	for _, want := range []string{"line 13: spec.presets[1].styleBlend: has 2 weights"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("err = %v, want ErrInvalid", err)
	}
}

// TestInterruptedAttempts: a re-run with the same run ID writes its own summary beside the
// interrupted attempt's, which stays; a checkpoint of an item whose definition changed since is
// deleted when its slot runs again.
func TestInterruptedAttempts(t *testing.T) {
	e := memEnv()
	in := e.bucket(t, e.in)
	put(t, in, "contents/a.png", pngBytes(t, testImage(20, 14, 1)))
	put(t, in, "styles/wave.png", pngBytes(t, testImage(16, 16, 4)))
	text := strings.Replace(manifestText("mem://in/contents/", "mem://in/styles/", "mem://out/r/", ""), "steps: 4", "steps: 40", 1)
	interrupt := func(man string, grace time.Duration) *ShardResult {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		cfg := e.config(man)
		cfg.NewEngine = fakeEngine(fake.Engine{AnySize: true, StepDelay: time.Millisecond})
		cfg.Lanes, cfg.CheckpointEvery, cfg.GracePeriod = 1, 5, grace
		cfg.Progress = &countingProgress{onStep: func(_ string, step int) {
			if step == 12 {
				cancel()
			}
		}}
		rep, err := Run(ctx, cfg)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("interrupted run: %v", err)
		}
		return rep
	}
	out := e.bucket(t, e.out)
	first := interrupt(writeManifest(t, text), 5*time.Second)
	ckpts := keysUnder(t, out, "r/_checkpoints/")
	if first.SummaryKey == "" || len(ckpts) == 0 {
		t.Fatalf("first attempt: summary %q, checkpoints %v", first.SummaryKey, ckpts)
	}
	// The soft preset's weights change: its checkpoint can never be resumed.
	changed := writeManifest(t, strings.Replace(text, "styleWeight: 10}", "styleWeight: 11}", 1))
	rep, err := Run(t.Context(), e.config(changed))
	if err != nil || rep.Done != 2 || rep.SummaryKey == first.SummaryKey {
		t.Fatalf("re-run: %v %+v", err, rep)
	}
	if s := readSummary(t, out, first.SummaryKey); s.Stopped != "interrupted" {
		t.Errorf("the interrupted attempt's summary was replaced: %+v", s)
	}
	if left := keysUnder(t, out, "r/_checkpoints/"); len(left) != 0 {
		t.Errorf("checkpoints left: %v (before: %v)", left, ckpts)
	}
}

// TestSummaryNotWritten: when the summary cannot be written (here a file stands where its
// directory would go), the run says so and reports no summary key.
func TestSummaryNotWritten(t *testing.T) {
	root := filepath.ToSlash(t.TempDir())
	for _, d := range []string{"in/contents", "in/styles", "out"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for k, img := range map[string]*image.NRGBA{"in/contents/a.png": testImage(20, 20, 1), "in/styles/wave.png": testImage(16, 16, 2)} {
		if err := os.WriteFile(filepath.Join(root, k), pngBytes(t, img), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "out", "_runs"), []byte("in the way"), 0o644); err != nil {
		t.Fatal(err)
	}
	man := writeManifest(t, manifestText("file://"+root+"/in/contents/", "file://"+root+"/in/styles/", "file://"+root+"/out/", ""))
	rep, err := Run(t.Context(), Config{ManifestURL: man, NewEngine: fakeEngine(fake.Engine{AnySize: true}), RunID: "r1", Version: "test"})
	if err == nil || !strings.Contains(err.Error(), "summary") || rep == nil || rep.SummaryKey != "" || rep.Done != 2 {
		t.Errorf("%v; result %+v", err, rep)
	}
}

// TestOddKeys: an input key that would escape the output prefix fails only its own items
// (naming the key, quoted); a zero-byte "directory" object is no input; a key with control
// characters runs, and is quoted wherever nst prints it. (gocloud refuses keys that are not
// UTF-8; storage's file:// listing reports such names, see storage's tests.)
func TestOddKeys(t *testing.T) {
	e := memEnv()
	in := e.bucket(t, e.in)
	img := pngBytes(t, testImage(20, 20, 1))
	for _, k := range []string{"good.png", "x/../../evil.png", "ctl\x1b[31mred.png"} {
		put(t, in, "contents/"+k, img)
	}
	put(t, in, "contents/sub/", nil)
	put(t, in, "styles/wave.png", pngBytes(t, testImage(16, 16, 4)))
	man := writeManifest(t, strings.Replace(manifestText("mem://in/contents/", "mem://in/styles/", "mem://out/r/", ""),
		"  presets:\n    - {name: soft, styleWeight: 10}\n    - {name: bold, styleWeight: 1000}\n", "", 1))
	rep, res, err := runResults(t.Context(), e.config(man))
	if err != nil || rep.Planned != 3 || rep.Done != 2 || rep.Failed != 1 {
		t.Fatalf("%v: planned %d done %d failed %d", err, rep.Planned, rep.Done, rep.Failed)
	}
	for _, r := range res {
		var pe *PairError
		switch r.Content {
		case "good.png", "ctl\x1b[31mred.png":
			if r.Status != StatusDone {
				t.Errorf("%q: %s %v", r.Content, r.Status, r.Err)
			}
		case "x/../../evil.png":
			if !errors.As(r.Err, &pe) || pe.Op != OpCheck || !strings.Contains(r.Err.Error(), `"x/../../evil.png" has a ".." path segment`) {
				t.Errorf("%q: %v", r.Content, r.Err)
			}
		default:
			t.Errorf("unexpected item %q", r.Content)
		}
	}
	if q := quote("ctl\x1b[31mred.png"); q != `"ctl\x1b[31mred.png"` {
		t.Errorf("quote: %s", q)
	}
	for _, k := range keysUnder(t, e.bucket(t, e.out), "r/") {
		if strings.Contains(k, "evil") || strings.Contains(k, "..") {
			t.Errorf("wrote %q", k)
		}
	}
}
