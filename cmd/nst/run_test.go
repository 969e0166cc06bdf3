package main

import (
	"bytes"
	"context"
	"encoding/json"
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

// demoManifest writes a tiny file:// batch next to generated images and returns its path.
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
	p := filepath.Join(dir, "batch.yaml")
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

// TestRunBatched: --batch-size 2 sends the pairs of a preset to a worker together (the torch
// engine optimises them in one batch) and every pair is done; --memory-format reaches the
// workers' engines, as each pair's provenance records.
func TestRunBatched(t *testing.T) {
	man := demoManifest(t)
	code, stdout, stderr := runArgs(t, nil, "run", "--manifest", man, "--device", "cpu", "--threads", "1", "--run-id", "b1", "--batch-size", "2",
		"--memory-format", "channels-last", "--log-format", "json")
	if code != exitOK || !strings.Contains(stdout, "2 done") {
		t.Fatalf("run: exit %d\nstdout %s\nstderr %s", code, stdout, stderr)
	}
	for _, k := range []string{"default/a__s.png", "default/b__s.png"} {
		if _, err := os.Stat(filepath.Join(filepath.Dir(man), "out", k)); err != nil {
			t.Error(err)
		}
	}
	b, err := os.ReadFile(filepath.Join(filepath.Dir(man), "out", "default/a__s.json"))
	if err != nil {
		t.Fatal(err)
	}
	var prov struct {
		Engine struct {
			MemoryFormat string `json:"memory_format"`
		} `json:"engine"`
	}
	if err := json.Unmarshal(b, &prov); err != nil || prov.Engine.MemoryFormat != "channels-last" {
		t.Errorf("provenance engine memory format %q (%v), want channels-last", prov.Engine.MemoryFormat, err)
	}
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
