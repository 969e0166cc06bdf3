package pipeline

// Reliability proof for the nightly-catalogue issue: bad and odd images, hostile manifests,
// NaN and engine failures, interruption, secrets, and load. Storage faults are in
// faults_test.go. docs/RELIABILITY.md lists every case with the test that proves it.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/color/palette"
	"image/gif"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gocloud.dev/blob"

	"github.com/nst-project/nst/transfer"
	"github.com/nst-project/nst/transfer/fake"
	"github.com/nst-project/nst/transfer/imaging"
	"github.com/nst-project/nst/transfer/imaging/imagingtest"
)

// --- image bytes (CMYK, EXIF and oversized headers come from transfer/imaging/imagingtest) ---

func deep16PNG(t testing.TB) []byte {
	img := image.NewRGBA64(image.Rect(0, 0, 24, 20))
	for y := range 20 {
		for x := range 24 {
			img.SetRGBA64(x, y, color.RGBA64{uint16(x * 2700), uint16(y * 3200), 0x8000, 0xffff})
		}
	}
	return pngBytes(t, img)
}

func grayImage(w, h int) *image.Gray {
	img := image.NewGray(image.Rect(0, 0, w, h))
	for i := range img.Pix {
		img.Pix[i] = uint8(i * 3)
	}
	return img
}

func palettedImage(w, h int) *image.Paletted {
	img := image.NewPaletted(image.Rect(0, 0, w, h), palette.Plan9)
	for i := range img.Pix {
		img.Pix[i] = uint8(i % 200)
	}
	return img
}

func alphaImage(w, h int) *image.NRGBA {
	img := testImage(w, h, 6)
	for i := 3; i < len(img.Pix); i += 4 {
		img.Pix[i] = uint8(i / 4 % 256) // 0 (fully transparent) and up
	}
	return img
}

// animatedGIF has two 24x24 frames, red then blue.
func animatedGIF(t testing.TB) []byte {
	pal := color.Palette{color.RGBA{255, 0, 0, 255}, color.RGBA{0, 0, 255, 255}}
	var frames []*image.Paletted
	for i := range 2 {
		f := image.NewPaletted(image.Rect(0, 0, 24, 24), pal)
		for j := range f.Pix {
			f.Pix[j] = uint8(i)
		}
		frames = append(frames, f)
	}
	var buf bytes.Buffer
	if err := gif.EncodeAll(&buf, &gif.GIF{Image: frames, Delay: []int{10, 10}}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// relManifest is a one-preset manifest (size 32, 2 steps) over mem://in.
func relManifest(extra string) string {
	return `apiVersion: nst/v1
kind: StyleBatch
metadata: {name: rel}
spec:
  model: {weights: random}
  inputs:
    contents: {url: "mem://in/contents/"}
    styles: {url: "mem://in/styles/"}
  params: {size: 32, steps: 2}
  output: {url: "mem://out/r/"}
` + extra
}

// readSummary reads a run's summary.
func readSummary(t *testing.T, out *blob.Bucket, key string) Summary {
	t.Helper()
	data, err := out.ReadAll(t.Context(), key)
	if err != nil {
		t.Fatalf("summary %s: %v", key, err)
	}
	var s Summary
	if err := json.Unmarshal(data, &s); err != nil {
		t.Fatalf("summary %s: %v", key, err)
	}
	return s
}

// TestBadImageCatalogue runs one manifest over every kind of broken or odd image next to good
// ones: each broken image fails only its own pair, with its cause (op and message) in the
// report and the summary; every odd-but-valid image is stylised.
func TestBadImageCatalogue(t *testing.T) {
	good := jpegBytes(t, testImage(30, 30, 7))
	goodPNG := pngBytes(t, testImage(30, 30, 8))
	exifJPEG := imagingtest.WithExif(jpegBytes(t, testImage(32, 20, 9)), "MM", 6) // stored 32x20, shown 20x32
	cases := []struct {
		key  string
		data []byte
		op   string // "" means done
		is   error
		msg  string // in the summary's error
		w, h int    // output size, for done items (0: unchecked)
	}{
		{"good.png", goodPNG, "", nil, "", 30, 30},
		{"good2.jpg", good, "", nil, "", 30, 30},
		{"empty.jpg", []byte{}, OpDecode, imaging.ErrCorrupt, "corrupt image: empty input", 0, 0},
		{"trunc.jpg", good[:len(good)/2], OpDecode, imaging.ErrCorrupt, "corrupt image: jpeg", 0, 0},
		{"trunc-late.jpg", good[:len(good)-40], OpDecode, imaging.ErrCorrupt, "corrupt image: jpeg pixels", 0, 0},
		{"trunc2.png", goodPNG[:len(goodPNG)/2], OpDecode, imaging.ErrCorrupt, "corrupt image: png pixels", 0, 0},
		{"text.jpg", []byte("<html>not an image</html>"), OpDecode, imaging.ErrUnsupported, "unknown format", 0, 0},
		{"bomb.png", imagingtest.PNGHeader(50000, 50000, make([]byte, 64)), OpDecode, imaging.ErrTooLarge, "image is 50000x50000 pixels, over the limit", 0, 0},
		{"deep16.png", deep16PNG(t), "", nil, "", 24, 20},
		{"gray.png", pngBytes(t, grayImage(20, 20)), "", nil, "", 20, 20},
		{"gray2.jpg", jpegBytes(t, grayImage(20, 20)), "", nil, "", 20, 20},
		{"cmyk.jpg", imagingtest.CMYKJPEG(16, 0, 255, 255, 0), "", nil, "", 16, 16},
		{"paletted.png", pngBytes(t, palettedImage(20, 20)), "", nil, "", 20, 20},
		{"alpha.png", pngBytes(t, alphaImage(20, 20)), "", nil, "", 20, 20},
		{"exif.jpg", exifJPEG, "", nil, "", 20, 32},
		{"anim.gif", animatedGIF(t), "", nil, "", 24, 24},
		{"tiny.png", pngBytes(t, testImage(1, 1, 1)), OpStylize, transfer.ErrBadInput,
			"the content is 1x1 px at scale 1 of 1; conv5_1 needs at least 16 px per side", 0, 0},
		{"small.png", pngBytes(t, testImage(12, 12, 1)), OpStylize, transfer.ErrBadInput, "the content is 12x12 px", 0, 0},
		{"thin.png", pngBytes(t, testImage(200, 10, 1)), OpStylize, transfer.ErrBadInput, "the content is 32x2 px", 0, 0},
	}
	e := memEnv()
	in := e.bucket(t, e.in)
	for _, c := range cases {
		put(t, in, "contents/"+c.key, c.data)
	}
	put(t, in, "styles/wave.png", pngBytes(t, testImage(24, 24, 4)))
	cfg := e.config(writeManifest(t, relManifest("")))
	cfg.NewEngine = fakeEngine(fake.Engine{})
	rep, res, err := runResults(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	out := e.bucket(t, e.out)
	sum := readSummary(t, out, rep.SummaryKey)
	failures := map[string]SummaryFailure{}
	for _, f := range sum.Failures {
		failures[f.Content] = f
	}
	results := map[string]PairResult{}
	for _, r := range res {
		results[r.Content] = r
	}
	wantFailed := 0
	for _, c := range cases {
		t.Run(c.key, func(t *testing.T) {
			r, ok := results[c.key]
			if !ok {
				t.Fatalf("no result")
			}
			if c.op == "" {
				if r.Status != StatusDone {
					t.Fatalf("status %s: %v", r.Status, r.Err)
				}
				var p Provenance
				data, err := out.ReadAll(t.Context(), r.Outputs.Provenance)
				if err != nil || json.Unmarshal(data, &p) != nil {
					t.Fatalf("provenance: %v", err)
				}
				if p.Output.Width != c.w || p.Output.Height != c.h {
					t.Errorf("output %dx%d, want %dx%d", p.Output.Width, p.Output.Height, c.w, c.h)
				}
				return
			}
			wantFailed++
			var pe *PairError
			if r.Status != StatusFailed || !errors.As(r.Err, &pe) || pe.Op != c.op || !errors.Is(r.Err, c.is) {
				t.Fatalf("status %s, err %v; want op %s wrapping %v", r.Status, r.Err, c.op, c.is)
			}
			f, ok := failures[c.key]
			if !ok || f.Op != c.op || !strings.Contains(f.Error, c.msg) || f.ID == "" {
				t.Errorf("summary failure %+v, want op %s and %q", f, c.op, c.msg)
			}
			if c.op != OpStylize && !strings.Contains(f.Error, c.key) {
				t.Errorf("summary error %q does not name %s", f.Error, c.key)
			}
			for _, k := range []string{r.Outputs.Image, r.Outputs.LossLog, r.Outputs.Provenance} {
				if ok, _ := out.Exists(t.Context(), k); ok {
					t.Errorf("failed pair left %s", k)
				}
			}
			t.Logf("%s: %s: %s", c.key, f.Op, f.Error)
		})
	}
	if rep.Failed != wantFailed || rep.Done != len(cases)-wantFailed || sum.Failed != wantFailed {
		t.Errorf("result: done %d failed %d; summary failed %d; want failed %d", rep.Done, rep.Failed, sum.Failed, wantFailed)
	}
	checkOutputs(t, out, rep, res, 2)
}

// TestBombHeaderAllocatesLittle: a PNG header claiming 50000x50000 pixels (7.5 GB of RGB) is
// refused after a few kilobytes of allocation.
func TestBombHeaderAllocatesLittle(t *testing.T) {
	data := imagingtest.PNGHeader(50000, 50000, make([]byte, 64))
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, _, err := imaging.Decode(bytes.NewReader(data), imaging.DefaultLimits())
	runtime.ReadMemStats(&after)
	if !errors.Is(err, imaging.ErrTooLarge) {
		t.Fatalf("err = %v", err)
	}
	if got := after.TotalAlloc - before.TotalAlloc; got > 1<<20 {
		t.Errorf("allocated %d bytes before refusing", got)
	}
}

// TestHostileManifests: every bad manifest or parameter is refused by Run before any work
// (ErrInvalid; the engine is never opened; nothing but, for the weights digest, the run
// summary is written), each problem named with its line where it has one.
func TestHostileManifests(t *testing.T) {
	base := func(params, extra string) string {
		return `apiVersion: nst/v1
kind: StyleBatch
metadata: {name: rel}
spec:
  model: {weights: random}
  inputs:
    contents: {url: "mem://in/contents/"}
    styles: {url: "mem://in/styles/"}
  params: {` + params + `}
  output: {url: "mem://out/r/"}
` + extra
	}
	listed := func(pairs string) string {
		return strings.Replace(base("size: 32, steps: 2", ""), `    styles: {url: "mem://in/styles/"}`,
			`    styles: {url: "mem://in/styles/"}
    pairing: list
    pairs:
`+pairs, 1)
	}
	digest := strings.Repeat("ab", 32)
	cases := []struct {
		name     string
		manifest string
		want     []string
		summary  bool // refused after listing (weights): a summary is written, no output
	}{
		{"unknown field", base("size: 32, steps: 2", "  bogus: 1\n"), []string{"line 11: spec.bogus: unknown field"}, false},
		{"wrong type", base("size: 32, steps: many", ""), []string{"line 9: spec.params.steps: want an integer"}, false},
		{"negative steps", base("size: 32, steps: -3", ""), []string{"line 9: spec.params.steps"}, false},
		{"absurd steps", base("size: 32, steps: 1000000000", ""), []string{"line 9: spec.params.steps"}, false},
		{"absurd size", base("size: 100000, steps: 2", ""), []string{"line 9: spec.params.size"}, false},
		{"negative size", base("size: -5, steps: 2", ""), []string{"line 9: spec.params.size"}, false},
		{"unknown layer", base("size: 32, steps: 2, contentLayer: conv9_9", ""), []string{"line 9: spec.params.contentLayer", "conv9_9"}, false},
		{"unsupported scheme", strings.Replace(base("size: 32", ""), "mem://in/contents/", "ftp://in/contents/", 1),
			[]string{"line 7: spec.inputs.contents.url", `scheme "ftp" is not supported`}, false},
		{"output inside input", strings.Replace(base("size: 32", ""), "mem://out/r/", "mem://in/contents/out/", 1),
			[]string{"line 10: spec.output.url: is inside spec.inputs.contents.url"}, false},
		{"dotdot key", listed("      - {content: ../../etc/passwd, style: wave.png}\n"), []string{`line 11: spec.inputs.pairs[0].content: "../../etc/passwd" must not contain ..`}, false},
		{"preset name escapes", base("size: 32", "  presets:\n    - {name: ../../escape}\n"), []string{"line 12: spec.presets[0].name"}, false},
		{"absolute key", listed("      - {content: /etc/passwd, style: wave.png}\n"), []string{"line 11", "absolute"}, false},
		{"duplicate pairs", listed("      - {content: a.png, style: wave.png}\n      - {content: a.png, style: wave.png}\n"),
			[]string{"line 12: spec.inputs.pairs[1]: duplicate of spec.inputs.pairs[0] (line 11)"}, false},
		{"duplicate presets", base("size: 32", "  presets:\n    - {name: soft}\n    - {name: soft}\n"), []string{"line 13", "soft"}, false},
		{"presets file missing", base("size: 32", "  presetsFrom: mem://in/nope.yaml\n"), []string{"mem://in/nope.yaml", "not found"}, false},
		{"weights sha256 mismatch", strings.Replace(base("size: 32, steps: 2", ""), "model: {weights: random}",
			"model: {weights: \"mem://in/w.pth\", sha256: \""+digest+"\"}", 1),
			[]string{"spec.model.weights mem://in/w.pth: sha256 is", "the manifest says " + digest}, true},
		{"many problems at once", base("size: -1, steps: 0, contentLayer: nope, lr: -1", "  extra: true\n"),
			[]string{"line 9: spec.params.size", "line 9: spec.params.steps", "line 9: spec.params.contentLayer", "line 9: spec.params.lr", "line 11: spec.extra: unknown field"}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := memEnv()
			in := e.bucket(t, e.in)
			standardInputs(t, in, "contents/", "styles/")
			put(t, in, "w.pth", []byte("not the weights you are looking for"))
			cfg := e.config(writeManifest(t, c.manifest))
			var opened atomic.Int64
			cfg.NewEngine = func(context.Context, EngineSpec) (transfer.Engine, func() error, error) {
				opened.Add(1)
				return fake.Engine{AnySize: true}, nil, nil
			}
			cfg.CacheDir = t.TempDir()
			_, err := Run(t.Context(), cfg)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid", err)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
			if opened.Load() != 0 {
				t.Error("engine opened")
			}
			for k := range snapshot(t, e.bucket(t, e.out)) {
				t.Errorf("wrote %s", k)
			}
			if c.summary {
				if keys := keysUnder(t, e.bucket(t, e.out), "r/_runs/r1/"); len(keys) != 1 || !strings.HasPrefix(keys[0], "r/_runs/r1/shard-0-of-1.") {
					t.Errorf("summaries: %v", keys)
				}
			}
			t.Logf("%v", err)
		})
	}
}

// crashingEngine fails one content's pairs the way a libtorch error does (an error from
// Stylize) and panics for another; the rest go to Fake.
type crashingEngine struct{ fake.Engine }

func (e crashingEngine) Stylize(ctx context.Context, req transfer.Request) (*transfer.Result, error) {
	switch req.Content.Bounds().Dx() {
	case 21:
		return nil, errors.New("libtorch: CUDA error: an illegal memory access was encountered")
	case 22:
		panic("libtorch: std::bad_alloc")
	}
	return e.Engine.Stylize(ctx, req)
}

// TestEngineFailuresIsolated: a NaN loss, an engine error and an engine panic each fail only
// their pair; the others are done. (Crashes of the engine process itself are
// transfer/worker's TestCrashFailsOnlyItsJob: a child process dies, only its pair fails.)
func TestEngineFailuresIsolated(t *testing.T) {
	e := memEnv()
	in := e.bucket(t, e.in)
	put(t, in, "contents/ok.png", pngBytes(t, testImage(20, 20, 1)))
	put(t, in, "contents/nan.png", magentaPNG(t))
	put(t, in, "contents/err.png", pngBytes(t, testImage(21, 20, 2)))
	put(t, in, "contents/panic.png", pngBytes(t, testImage(22, 20, 3)))
	put(t, in, "styles/wave.png", pngBytes(t, testImage(16, 16, 4)))
	cfg := e.config(writeManifest(t, relManifest("")))
	cfg.NewEngine = func(context.Context, EngineSpec) (transfer.Engine, func() error, error) {
		return crashingEngine{fake.Engine{AnySize: true}}, nil, nil
	}
	cfg.Lanes = 2
	rep, res, err := runResults(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"ok.png": "", "nan.png": "loss is not finite", "err.png": "illegal memory access", "panic.png": "panic: libtorch: std::bad_alloc"}
	for _, r := range res {
		w := want[r.Content]
		if w == "" {
			if r.Status != StatusDone {
				t.Errorf("%s: %s %v", r.Content, r.Status, r.Err)
			}
			continue
		}
		var pe *PairError
		if r.Status != StatusFailed || !errors.As(r.Err, &pe) || pe.Op != OpStylize || !strings.Contains(r.Err.Error(), w) {
			t.Errorf("%s: %s %v, want stylize failure with %q", r.Content, r.Status, r.Err, w)
		}
	}
	if rep.Done != 1 || rep.Failed != 3 {
		t.Errorf("done %d failed %d", rep.Done, rep.Failed)
	}
}

// dropLateCheckpoints passes checkpoints through until ctx is cancelled, then drops them: a
// SIGKILL, where no last checkpoint is written.
type dropLateCheckpoints struct{ fake.Engine }

func (d dropLateCheckpoints) Stylize(ctx context.Context, req transfer.Request) (*transfer.Result, error) {
	on := req.OnCheckpoint
	req.OnCheckpoint = func(c *transfer.Checkpoint) error {
		if ctx.Err() != nil {
			return nil
		}
		return on(c)
	}
	return d.Engine.Stylize(ctx, req)
}

// TestKillLosesOnlyStepsSinceCheckpoint: with checkpoints every 5 steps and no checkpoint on
// the way out (as after SIGKILL), the next run resumes from the last periodic checkpoint:
// at most 4 steps are lost, and the result equals an uninterrupted run's.
func TestKillLosesOnlyStepsSinceCheckpoint(t *testing.T) {
	e := memEnv()
	in := e.bucket(t, e.in)
	put(t, in, "contents/a.png", pngBytes(t, testImage(20, 20, 1)))
	put(t, in, "styles/wave.png", pngBytes(t, testImage(16, 16, 4)))
	man := writeManifest(t, strings.Replace(relManifest(""), "steps: 2", "steps: 40", 1))
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	cfg := e.config(man)
	cfg.CheckpointEvery = 5
	cfg.NewEngine = func(context.Context, EngineSpec) (transfer.Engine, func() error, error) {
		return dropLateCheckpoints{fake.Engine{AnySize: true, StepDelay: time.Millisecond}}, nil, nil
	}
	cfg.Progress = &countingProgress{onStep: func(_ string, step int) {
		if step == 18 {
			cancel()
		}
	}}
	if _, err := Run(ctx, cfg); !errors.Is(err, context.Canceled) {
		t.Fatalf("killed run: %v", err)
	}
	cfg.NewEngine, cfg.Progress = fakeEngine(fake.Engine{AnySize: true, StepDelay: time.Millisecond}), nil // same synthetic ElapsedS
	rep, res, err := runResults(t.Context(), cfg)
	if err != nil || rep.Done != 1 {
		t.Fatalf("resumed run: %v %+v", err, rep)
	}
	if r := res[0]; r.ResumedAt != 15 || r.Steps != 25 {
		t.Errorf("resumed at %d computing %d steps, want 15 and 25 (lost %d steps)", r.ResumedAt, r.Steps, 18-r.ResumedAt)
	}
	// The resumed result equals an uninterrupted run's.
	e2 := memEnv()
	in2 := e2.bucket(t, e2.in)
	put(t, in2, "contents/a.png", pngBytes(t, testImage(20, 20, 1)))
	put(t, in2, "styles/wave.png", pngBytes(t, testImage(16, 16, 4)))
	cfg2 := e2.config(man)
	cfg2.NewEngine = fakeEngine(fake.Engine{AnySize: true, StepDelay: time.Millisecond})
	rep2, res2, err := runResults(t.Context(), cfg2)
	if err != nil || rep2.Done != 1 {
		t.Fatal(err)
	}
	a, _ := e.bucket(t, e.out).ReadAll(t.Context(), res[0].Outputs.Image)
	b, _ := e2.bucket(t, e2.out).ReadAll(t.Context(), res2[0].Outputs.Image)
	la, _ := e.bucket(t, e.out).ReadAll(t.Context(), res[0].Outputs.LossLog)
	lb, _ := e2.bucket(t, e2.out).ReadAll(t.Context(), res2[0].Outputs.LossLog)
	if !bytes.Equal(a, b) || !bytes.Equal(la, lb) || len(a) == 0 {
		t.Error("resumed result differs from an uninterrupted run's")
	}
}

// loadRun runs n tiny pairs (n contents x 1 style, steps 1, size 8) on file:// and returns
// the peak heap in use and the peak number of open file descriptors sampled during the run.
func loadRun(t *testing.T, n int) (heap uint64, fds int, d time.Duration) {
	root := filepath.ToSlash(t.TempDir())
	for _, dir := range []string{"in/contents", "in/styles", "out"} {
		if err := os.MkdirAll(filepath.Join(root, dir), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	img := pngBytes(t, testImage(8, 8, 1))
	for i := range n {
		if err := os.WriteFile(filepath.Join(root, "in/contents", fmt.Sprintf("c%05d.png", i)), img, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "in/styles/s.png"), pngBytes(t, testImage(8, 8, 2)), 0o644); err != nil {
		t.Fatal(err)
	}
	man := writeManifest(t, fmt.Sprintf(`apiVersion: nst/v1
kind: StyleBatch
metadata: {name: load}
spec:
  model: {weights: random}
  inputs: {contents: {url: "file://%s/in/contents/"}, styles: {url: "file://%s/in/styles/"}}
  params: {size: 8, steps: 1}
  output: {url: "file://%s/out/"}
`, root, root, root))
	cfg := Config{ManifestURL: man, NewEngine: fakeEngine(fake.Engine{AnySize: true}), RunID: "load", Version: "test", Lanes: 2, IOJobs: 4}
	runtime.GC()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			heap = max(heap, ms.HeapInuse)
			if ents, err := os.ReadDir("/proc/self/fd"); err == nil {
				fds = max(fds, len(ents))
			}
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	})
	start := time.Now()
	rep, err := Run(t.Context(), cfg)
	d = time.Since(start)
	close(stop)
	wg.Wait()
	if err != nil || rep.Done != n || !rep.OK() {
		t.Fatalf("%d pairs: %v, done %d failed %d", n, err, rep.Done, rep.Failed)
	}
	return heap, fds, d
}

// TestLoadManyTinyPairs: thousands of tiny pairs on file:// complete, with peak heap and open
// files that do not grow with the catalogue (N=60 against 360; NST_LOAD=1: 500 against 3000).
func TestLoadManyTinyPairs(t *testing.T) {
	if testing.Short() {
		t.Skip("load test")
	}
	// About 45 ms a pair on a shared 2-core machine (four outputs, each written once and
	// verified): the default sizes keep the test near 20 s; NST_LOAD=1 runs 500 and 3000.
	small, big := 60, 360
	if os.Getenv("NST_LOAD") == "1" {
		small, big = 500, 3000
	}
	base, _ := os.ReadDir("/proc/self/fd")
	h1, f1, d1 := loadRun(t, small)
	h2, f2, d2 := loadRun(t, big)
	after, _ := os.ReadDir("/proc/self/fd")
	t.Logf("N=%d: %v, peak heap %d KiB, peak fds %d; N=%d: %v, peak heap %d KiB, peak fds %d; fds before %d, after %d",
		small, d1.Round(time.Millisecond), h1>>10, f1, big, d2.Round(time.Millisecond), h2>>10, f2, len(base), len(after))
	// Results and the summary grow with N (a few hundred bytes an item); images do not stay.
	if h2 > 2*h1+16<<20 {
		t.Errorf("peak heap grew from %d KiB to %d KiB", h1>>10, h2>>10)
	}
	if f2 > f1+8 || f2 > len(base)+64 {
		t.Errorf("peak open files grew from %d to %d (base %d)", f1, f2, len(base))
	}
	if len(after) > len(base)+2 {
		t.Errorf("%d files open after the runs, %d before", len(after), len(base))
	}
}
