package pipeline

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gocloud.dev/blob"
	_ "gocloud.dev/blob/fileblob"
	"gocloud.dev/blob/memblob"

	"github.com/nst-project/nst/transfer"
	"github.com/nst-project/nst/transfer/fake"
	"github.com/nst-project/nst/transfer/imaging"
)

// memBuckets hands out one shared memblob bucket per URL (each mem:// open is a new, empty
// bucket otherwise).
type memBuckets struct {
	mu sync.Mutex
	m  map[string]*blob.Bucket
}

func (m *memBuckets) open(_ context.Context, u string) (*blob.Bucket, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.m == nil {
		m.m = map[string]*blob.Bucket{}
	}
	if b, ok := m.m[u]; ok {
		return b, nil
	}
	if !strings.HasPrefix(u, "mem://") {
		return nil, fmt.Errorf("not a mem URL: %s", u)
	}
	b := memblob.OpenBucket(nil)
	m.m[u] = b
	return b, nil
}

// testImage is a small gradient, different for every seed.
func testImage(w, h, seed int) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.SetNRGBA(x, y, color.NRGBA{uint8(x*9 + seed*40), uint8(y*11 + seed*70), uint8((x + y + seed*30) * 5), 255})
		}
	}
	return img
}

func pngBytes(t testing.TB, img image.Image) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func jpegBytes(t testing.TB, img image.Image) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, nil); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func magentaPNG(t testing.TB) []byte {
	img := image.NewNRGBA(image.Rect(0, 0, 12, 12))
	for i := 0; i < len(img.Pix); i += 4 {
		copy(img.Pix[i:], []byte{255, 0, 255, 255})
	}
	return pngBytes(t, img)
}

func put(t testing.TB, b *blob.Bucket, key string, data []byte) {
	t.Helper()
	if err := b.WriteAll(context.Background(), key, data, nil); err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
}

// standardInputs are three contents (one in a subdirectory, one JPEG) and two styles.
func standardInputs(t testing.TB, in *blob.Bucket, contents, styles string) {
	put(t, in, contents+"a.png", pngBytes(t, testImage(20, 14, 1)))
	put(t, in, contents+"sub/b.png", pngBytes(t, testImage(14, 20, 2)))
	put(t, in, contents+"c.jpg", jpegBytes(t, testImage(18, 18, 3)))
	put(t, in, styles+"wave.png", pngBytes(t, testImage(16, 16, 4)))
	put(t, in, styles+"night.jpg", jpegBytes(t, testImage(16, 12, 5)))
}

// writeManifest writes a manifest file and returns its path.
func writeManifest(t testing.TB, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "manifest.yaml")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// manifestText is a manifest over the given directory URLs with two presets.
func manifestText(contents, styles, out string, extra string) string {
	return fmt.Sprintf(`apiVersion: nst/v1
kind: StyleBatch
metadata: {name: test}
spec:
  model: {weights: random}
  inputs:
    contents: {url: %q}
    styles: {url: %q}
  params: {size: 16, steps: 4}
  presets:
    - {name: soft, styleWeight: 10}
    - {name: bold, styleWeight: 1000}
  output: {url: %q}
%s`, contents, styles, out, extra)
}

// fakeEngine returns a NewEngine giving f.
func fakeEngine(f fake.Engine) func(context.Context, EngineSpec) (transfer.Engine, func() error, error) {
	return func(context.Context, EngineSpec) (transfer.Engine, func() error, error) { return f, nil, nil }
}

// countingProgress counts steps and ends.
type countingProgress struct {
	NoProgress
	steps   atomic.Int64
	planned atomic.Int64
	onStep  func(id string, step int)
}

func (p *countingProgress) Planned(n int) { p.planned.Store(int64(n)) }
func (p *countingProgress) PairStep(id string, step, total int) {
	p.steps.Add(1)
	if p.onStep != nil {
		p.onStep(id, step)
	}
}

// collector records every PairResult a run reports, passing calls on to next (nil: none).
type collector struct {
	next    Progress
	mu      sync.Mutex
	results []PairResult
}

func (c *collector) Planned(n int) {
	if c.next != nil {
		c.next.Planned(n)
	}
}
func (c *collector) PairStarted(id string) {
	if c.next != nil {
		c.next.PairStarted(id)
	}
}
func (c *collector) PairStep(id string, step, total int) {
	if c.next != nil {
		c.next.PairStep(id, step, total)
	}
}
func (c *collector) PairDone(r PairResult) {
	c.mu.Lock()
	c.results = append(c.results, r)
	c.mu.Unlock()
	if c.next != nil {
		c.next.PairDone(r)
	}
}

// runResults runs cfg and returns, with the shard result, every item's result sorted by content,
// style and preset.
func runResults(ctx context.Context, cfg Config) (*ShardResult, []PairResult, error) {
	c := &collector{next: cfg.Progress}
	cfg.Progress = c
	rep, err := Run(ctx, cfg)
	slices.SortFunc(c.results, func(a, b PairResult) int {
		return cmp.Or(strings.Compare(a.Content, b.Content), strings.Compare(a.Style, b.Style), strings.Compare(a.Preset, b.Preset))
	})
	return rep, c.results, err
}

// pairLog reads the pair log lines of a summary.
func pairLog(t testing.TB, b *blob.Bucket, prefix string, s Summary) []SummaryPair {
	t.Helper()
	var out []SummaryPair
	for _, k := range s.PairLogs {
		data, err := b.ReadAll(context.Background(), prefix+k)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
			var p SummaryPair
			if err := json.Unmarshal([]byte(l), &p); err != nil {
				t.Fatalf("%s: %q: %v", k, l, err)
			}
			out = append(out, p)
		}
	}
	return out
}

// snapshot lists every object of b (but run summaries) with what changes when it is written.
func snapshot(t testing.TB, b *blob.Bucket) map[string]string {
	t.Helper()
	out := map[string]string{}
	it := b.List(nil)
	for {
		o, err := it.Next(context.Background())
		if err != nil {
			break
		}
		if strings.Contains(o.Key, "_runs/") {
			continue
		}
		data, err := b.ReadAll(context.Background(), o.Key)
		if err != nil {
			t.Fatal(err)
		}
		out[o.Key] = fmt.Sprintf("%x %d %s %x", o.MD5, o.Size, o.ModTime.Format(time.RFC3339Nano), data[:min(len(data), 0)])
	}
	return out
}

// checkOutputs checks every item's image, loss log and provenance in out under prefix.
func checkOutputs(t *testing.T, out *blob.Bucket, rep *ShardResult, results []PairResult, steps int) {
	t.Helper()
	ctx := context.Background()
	for _, r := range results {
		if r.Status != StatusDone && r.Status != StatusSkipped {
			continue
		}
		data, err := out.ReadAll(ctx, r.Outputs.Image)
		if err != nil {
			t.Fatalf("%s: %v", r.Outputs.Image, err)
		}
		if _, _, err := imaging.Decode(bytes.NewReader(data), imaging.Limits{}); err != nil {
			t.Errorf("%s does not decode: %v", r.Outputs.Image, err)
		}
		attrs, err := out.Attributes(ctx, r.Outputs.Image)
		if err != nil || attrs.Metadata[metaID] != r.ID {
			t.Errorf("%s metadata %v (err %v), want nst-id %s", r.Outputs.Image, attrs, err, r.ID)
		}
		log, err := out.ReadAll(ctx, r.Outputs.LossLog)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(log)), "\n")
		if len(lines) != steps {
			t.Errorf("%s has %d lines, want %d", r.Outputs.LossLog, len(lines), steps)
		}
		for i, l := range lines {
			var s transfer.Step
			if err := json.Unmarshal([]byte(l), &s); err != nil || s.Step != i+1 {
				t.Errorf("%s line %d: %q (%v)", r.Outputs.LossLog, i+1, l, err)
			}
		}
		plot, err := out.ReadAll(ctx, r.Outputs.LossPlot)
		if err != nil {
			t.Fatal(err)
		}
		if cfg, err := png.DecodeConfig(bytes.NewReader(plot)); err != nil || cfg.Width < 100 {
			t.Errorf("%s: %+v (%v), want a PNG plot", r.Outputs.LossPlot, cfg, err)
		}
		pdata, err := out.ReadAll(ctx, r.Outputs.Provenance)
		if err != nil {
			t.Fatal(err)
		}
		var p Provenance
		if err := json.Unmarshal(pdata, &p); err != nil {
			t.Fatalf("%s: %v", r.Outputs.Provenance, err)
		}
		if p.ID != r.ID || p.Content.Key != r.Content || p.Style.Key != r.Style || p.Preset != r.Preset ||
			p.Steps != steps || p.Params.Steps != steps || p.Engine.Engine != "fake" || p.RunID != rep.RunID ||
			p.Content.Version == "" || p.Style.Size == 0 || p.Weights.Digest != "random:0" || p.End.Before(p.Start) ||
			p.Final.TotalLoss == 0 || p.Output.Width == 0 || p.Content.URL == "" {
			t.Errorf("%s: %+v", r.Outputs.Provenance, p)
		}
	}
}

// keysUnder returns the keys under prefix.
func keysUnder(t testing.TB, b *blob.Bucket, prefix string) []string {
	t.Helper()
	var keys []string
	it := b.List(&blob.ListOptions{Prefix: prefix})
	for {
		o, err := it.Next(context.Background())
		if err == io.EOF {
			return keys
		}
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, o.Key)
	}
}
