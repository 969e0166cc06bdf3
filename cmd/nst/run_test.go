package main

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func runArgs(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := runEnv(context.Background(), args, &out, &errb, func(k string) string { return env[k] })
	return code, out.String(), errb.String()
}

func TestRunPlanFlags(t *testing.T) {
	for _, args := range [][]string{
		{"run", "--manifest", "x.yaml", "--bogus"},
		{"plan", "--manifest", "x.yaml", "--nope"},
		{"run", "--shard-count", "two"},
	} {
		code, _, stderr := runArgs(t, nil, args...)
		if code != exitUsage || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
			t.Errorf("%q: exit %d, stderr %q; want 2 and one line", args, code, stderr)
		}
	}
	if code, _, stderr := runArgs(t, nil, "run"); code != exitUsage || !strings.Contains(stderr, "--manifest is required") {
		t.Errorf("no manifest: %d %q", code, stderr)
	}
	if code, _, stderr := runArgs(t, map[string]string{"NST_SHARD_COUNT": "zz"}, "run", "--manifest", "m.yaml"); code != exitUsage ||
		!strings.Contains(stderr, "NST_SHARD_COUNT") {
		t.Errorf("bad NST_SHARD_COUNT: %d %q", code, stderr)
	}
}

// demoManifest writes a tiny file:// manifest next to generated images and returns its path.
func demoManifest(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, p := range []string{"data/contents/a.png", "data/contents/b.png", "data/styles/s.png"} {
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(p)), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writePNG(t, filepath.Join(dir, "data/contents/a.png"), 48, 40, 1)
	writePNG(t, filepath.Join(dir, "data/contents/b.png"), 40, 48, 2)
	writePNG(t, filepath.Join(dir, "data/styles/s.png"), 40, 40, 3)
	m := `apiVersion: nst/v1
kind: StyleBatch
metadata: {name: cmdtest}
spec:
  model: {weights: random}
  inputs:
    contents: {url: "file://./data/contents/"}
    styles: {url: "file://./data/styles/"}
  params: {size: 48, steps: 2}
  output: {url: "file://./out/?create_dir=true"}
`
	p := filepath.Join(dir, "manifest.yaml")
	if err := os.WriteFile(p, []byte(m), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestRunEndToEnd: nst run on a file:// manifest with random weights exits 0 with every output
// written; a second run exits 0 with everything skipped; plan sees it all done.
func TestRunEndToEnd(t *testing.T) {
	man := demoManifest(t)
	code, stdout, stderr := runArgs(t, map[string]string{"NST_SHARD_COUNT": "1"}, "run", "--manifest", man, "--device", "cpu", "--threads", "1", "--run-id", "t1")
	if code != exitOK || !strings.Contains(stdout, "2 done") {
		t.Fatalf("run: exit %d\nstdout %s\nstderr %s", code, stdout, stderr)
	}
	for _, k := range []string{"default/a__s.png", "default/a__s.loss.jsonl", "default/b__s.json", "_runs/t1/shard-0-of-1.*.json"} {
		if m, err := filepath.Glob(filepath.Join(filepath.Dir(man), "out", k)); err != nil || len(m) != 1 {
			t.Errorf("%s: %v %v", k, m, err)
		}
	}
	code, stdout, stderr = runArgs(t, nil, "run", "--manifest", man, "--device", "cpu", "--run-id", "t1")
	if code != exitOK || !strings.Contains(stdout, "0 done, 2 skipped") {
		t.Fatalf("re-run: exit %d\nstdout %s\nstderr %s", code, stdout, stderr)
	}
	code, stdout, _ = runArgs(t, nil, "plan", "--manifest", man)
	if code != exitOK || !strings.Contains(stdout, "2 pairs in 1 shards: 2 done") {
		t.Errorf("plan: %d %s", code, stdout)
	}
}

// TestShardDefaults: --shard-index defaults to $JOB_COMPLETION_INDEX and the count comes from
// NST_SHARD_COUNT; an index outside the count is a usage error.
func TestShardDefaults(t *testing.T) {
	man := demoManifest(t)
	t.Setenv("JOB_COMPLETION_INDEX", "1")
	code, stdout, stderr := runArgs(t, map[string]string{"NST_SHARD_COUNT": "2"}, "run", "--manifest", man, "--device", "cpu", "--run-id", "t2")
	if m := regexp.MustCompile(`shard 1/2: (\d) pairs: (\d) done`).FindStringSubmatch(stdout); code != exitOK || m == nil || m[1] != m[2] {
		t.Fatalf("exit %d\nstdout %s\nstderr %s", code, stdout, stderr)
	}
	t.Setenv("JOB_COMPLETION_INDEX", "5")
	if code, _, stderr := runArgs(t, map[string]string{"NST_SHARD_COUNT": "2"}, "run", "--manifest", man); code != exitUsage {
		t.Errorf("index 5 of 2: exit %d %s", code, stderr)
	}
}

// TestRunBadManifest: a manifest problem exits 2 before any work.
func TestRunBadManifest(t *testing.T) {
	p := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(p, []byte("apiVersion: nst/v1\nkind: StyleBatch\nmetadata: {name: x}\nspec:\n  model: {weights: random}\n  bogus: 1\n"), 0o644)
	code, _, stderr := runArgs(t, nil, "run", "--manifest", p)
	if code != exitUsage || !strings.Contains(stderr, "line 6") {
		t.Errorf("exit %d: %s", code, stderr)
	}
}

// TestRunBatched: --batch-size 2 sends waiting pairs of a preset to a worker together, and the
// torch engine optimises same-size pairs in one batch. Four same-size contents run twice, with
// --batch-size 1 and 2: every pair is done with losses within 1e-4 of the one-at-a-time run
// (the tolerance of transfer/torch's TestBatchMatchesSingleRuns), and at least two pairs differ
// from it in the last bits, which only a batch gives: one pair at a time is deterministic
// (--threads 1), so pairs that ran alone match the first run exactly. (How many pairs wait when
// a lane asks depends on scheduling; with four, at least two are batched: the rest queue while
// the first computes.) --memory-format reaches the workers' engines, as provenance records.
func TestRunBatched(t *testing.T) {
	type step struct {
		Step                              int
		ContentLoss, StyleLoss, TotalLoss float64
	}
	contents := []string{"a", "b", "c", "d"}
	run := func(batch string) map[string][]step {
		man := demoManifest(t)
		dir := filepath.Dir(man)
		for i, c := range contents {
			writePNG(t, filepath.Join(dir, "data/contents", c+".png"), 48, 40, i+1)
		}
		code, stdout, stderr := runArgs(t, nil, "run", "--manifest", man, "--device", "cpu", "--threads", "1", "--run-id", "b"+batch,
			"--batch-size", batch, "--memory-format", "channels-last", "--log-format", "json", "--no-report")
		if code != exitOK || !strings.Contains(stdout, "4 done") {
			t.Fatalf("--batch-size %s: exit %d\nstdout %s\nstderr %s", batch, code, stdout, stderr)
		}
		logs := map[string][]step{}
		for _, c := range contents {
			b, err := os.ReadFile(filepath.Join(dir, "out", "default", c+"__s.loss.jsonl"))
			if err != nil {
				t.Fatal(err)
			}
			for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
				var s struct {
					Step        int     `json:"step"`
					ContentLoss float64 `json:"content_loss"`
					StyleLoss   float64 `json:"style_loss"`
					TotalLoss   float64 `json:"total_loss"`
				}
				if err := json.Unmarshal([]byte(line), &s); err != nil {
					t.Fatal(err)
				}
				logs[c] = append(logs[c], step{s.Step, s.ContentLoss, s.StyleLoss, s.TotalLoss})
			}
			pb, err := os.ReadFile(filepath.Join(dir, "out", "default", c+"__s.json"))
			if err != nil {
				t.Fatal(err)
			}
			var prov struct {
				Engine struct {
					MemoryFormat string `json:"memory_format"`
				} `json:"engine"`
			}
			if err := json.Unmarshal(pb, &prov); err != nil || prov.Engine.MemoryFormat != "channels-last" {
				t.Errorf("%s: provenance engine memory format %q (%v), want channels-last", c, prov.Engine.MemoryFormat, err)
			}
		}
		return logs
	}
	alone, batched := run("1"), run("2")
	differ := 0
	for _, c := range contents {
		a, b := alone[c], batched[c]
		if len(a) != 2 || len(b) != len(a) {
			t.Fatalf("%s: %d and %d steps logged, want 2", c, len(a), len(b))
		}
		same := true
		for k := range a {
			for _, v := range [][2]float64{{a[k].TotalLoss, b[k].TotalLoss}, {a[k].StyleLoss, b[k].StyleLoss}, {a[k].ContentLoss, b[k].ContentLoss}} {
				if v[0] != v[1] {
					same = false
				}
				if d := math.Abs(v[0] - v[1]); d > 1e-4*math.Abs(v[0]) && d > 1e-12 {
					t.Errorf("%s step %d: batched %v, alone %v: more than 1e-4 apart", c, k+1, v[1], v[0])
				}
			}
		}
		if !same {
			differ++
		}
	}
	if differ < 2 {
		t.Errorf("%d pairs differ from the one-at-a-time run in any bit: with --batch-size 2 at least two were to be optimised in one batch", differ)
	}
	t.Logf("%d of %d pairs were optimised in a batch", differ, len(contents))
}

// TestPlanOutput: nst plan prints totals per shard, not the pairs; --pairs streams them as a
// table or as JSON Lines (one object a pair, nothing else on stdout); a bad --format, a bad
// --on-conflict or a --shard-index outside the count is a usage error.
func TestPlanOutput(t *testing.T) {
	man := demoManifest(t)
	code, stdout, stderr := runArgs(t, nil, "plan", "--manifest", man, "--shard-count", "3")
	if code != exitOK || !strings.Contains(stdout, "2 pairs in 3 shards: 0 done, 0 stale, 2 new, 0 refused") || strings.Contains(stdout, "a.png") ||
		strings.Count(stdout, "\n") != 5 {
		t.Fatalf("plan: %d\n%s%s", code, stdout, stderr)
	}
	code, stdout, _ = runArgs(t, nil, "plan", "--manifest", man, "--pairs")
	if code != exitOK || !strings.Contains(stdout, "a.png") || !strings.Contains(stdout, "default/b__s.png") || !strings.Contains(stdout, "2 new") {
		t.Errorf("plan --pairs: %d\n%s", code, stdout)
	}
	code, stdout, _ = runArgs(t, nil, "plan", "--manifest", man, "--pairs", "--format", "jsonl", "--shard-count", "2", "--shard-index", "1")
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	for _, l := range lines {
		var it struct {
			ID, Content, State, Slot string
			Shard                    int
		}
		if err := json.Unmarshal([]byte(l), &it); err != nil || it.ID == "" || it.State != "new" || it.Shard != 1 || len(it.Slot) != 16 {
			t.Errorf("jsonl line %q: %+v %v", l, it, err)
		}
	}
	if code != exitOK {
		t.Errorf("plan --pairs --format jsonl: %d", code)
	}
	for _, args := range [][]string{
		{"plan", "--manifest", man, "--format", "xml"},
		{"plan", "--manifest", man, "--shard-count", "2", "--shard-index", "2"},
		{"run", "--manifest", man, "--on-conflict", "overwrite"},
	} {
		if code, _, stderr := runArgs(t, nil, args...); code != exitUsage {
			t.Errorf("%q: exit %d %s", args, code, stderr)
		}
	}
}

// TestSummaryNotWrittenNotPrinted: a summary that could not be written is not printed as if it
// were; the failure says why.
func TestSummaryNotWrittenNotPrinted(t *testing.T) {
	man := demoManifest(t)
	out := filepath.Join(filepath.Dir(man), "out")
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(out, "_runs"), []byte("in the way"), 0o644); err != nil { // the summary write fails
		t.Fatal(err)
	}
	code, stdout, stderr := runArgs(t, nil, "run", "--manifest", man, "--device", "cpu", "--threads", "1", "--run-id", "s1", "--in-process", "--no-report")
	if code != exitFailed || strings.Contains(stdout, "summary") || !strings.Contains(stderr, "summary") {
		t.Errorf("exit %d\nstdout %s\nstderr %s", code, stdout, stderr)
	}
}
