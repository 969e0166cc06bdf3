package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nst-project/nst/examples/demo"
	"github.com/nst-project/nst/transfer/imaging"
)

// TestDemo runs the README's first command, nst run --manifest examples/demo.yaml (the
// manifest itself, on the images make setup generates), on shard 0 of 3: three of its six
// pairs, as nst plan lists them, among them pairs of each style. Each result must differ
// visibly from its content (by more than 25 levels on average) and have taken on its style's
// colours: its colour histogram's overlap with the style's (demo.ColourOverlap) at least 0.05
// above the content's, and above its overlap with its own content. NST_DEMO_FULL=1 runs and
// checks all six pairs (three times the time).
func TestDemo(t *testing.T) {
	dir := t.TempDir()
	images := demo.Images()
	for name, img := range images {
		p := filepath.Join(dir, "data", filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := imaging.Encode(f, img, "png", 0); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	manifest, err := os.ReadFile("../../examples/demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	man := filepath.Join(dir, "demo.yaml")
	if err := os.WriteFile(man, manifest, 0o644); err != nil {
		t.Fatal(err)
	}
	// One libtorch thread: the test machine may be busy, and spinning OpenMP threads then
	// slow everything down.
	shards := "3"
	if os.Getenv("NST_DEMO_FULL") != "" {
		shards = "1"
	}
	// Shard 0's pairs, as nst plan lists them (shards are hash ranges of the output slots).
	code, stdout, stderr := runArgs(t, nil, "plan", "--manifest", man, "--shard-count", shards, "--shard-index", "0", "--pairs", "--format", "jsonl")
	if code != exitOK {
		t.Fatalf("nst plan: exit %d\n%s", code, stderr)
	}
	var pairs [][2]string
	styles := map[string]bool{}
	for _, l := range strings.Split(strings.TrimSpace(stdout), "\n") {
		var it struct{ Content, Style string }
		if err := json.Unmarshal([]byte(l), &it); err != nil {
			t.Fatalf("plan line %q: %v", l, err)
		}
		c, s := strings.TrimSuffix(it.Content, ".png"), strings.TrimSuffix(it.Style, ".png")
		pairs = append(pairs, [2]string{c, s})
		styles[s] = true
	}
	if !styles["mosaic"] || !styles["swirls"] {
		t.Fatalf("shard 0 of %s holds %v: not a pair of each style", shards, pairs)
	}
	code, stdout, stderr = runArgs(t, nil, "run", "--manifest", man, "--shard-count", shards, "--shard-index", "0",
		"--device", "cpu", "--threads", "1", "--run-id", "demo-test", "--no-report")
	if want := fmt.Sprintf("%d pairs: %d done", len(pairs), len(pairs)); code != exitOK || !strings.Contains(stdout, want) {
		t.Fatalf("nst run: exit %d, want %q\nstdout %s\nstderr %s", code, want, stdout, stderr)
	}
	for _, pair := range pairs {
		f, err := os.Open(filepath.Join(dir, "out", "default", pair[0]+"__"+pair[1]+".png"))
		if err != nil {
			t.Fatal(err)
		}
		result, _, err := imaging.Decode(f, imaging.DefaultLimits())
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		content := imaging.Fit(images["contents/"+pair[0]+".png"], 128)
		style := images["styles/"+pair[1]+".png"]
		if result.Rect.Size() != content.Rect.Size() {
			t.Fatalf("%s x %s: result %v, content %v", pair[0], pair[1], result.Rect, content.Rect)
		}
		diff := demo.MeanAbsDiff(result, content)
		before, after, own := demo.ColourOverlap(content, style), demo.ColourOverlap(result, style), demo.ColourOverlap(result, content)
		t.Logf("%s x %s: %.1f levels from the content; colour overlap with the style %.3f (content %.3f), with the content %.3f",
			pair[0], pair[1], diff, after, before, own)
		if diff <= 25 {
			t.Errorf("%s x %s: the result is %.1f levels from its content on average: not visibly stylised", pair[0], pair[1], diff)
		}
		if after < before+0.05 || after <= own {
			t.Errorf("%s x %s: colour overlap with the style %.3f (the content's %.3f), with the content %.3f: the style's colours were not carried",
				pair[0], pair[1], after, before, own)
		}
	}
}
