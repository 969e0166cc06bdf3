package main

import (
	"image/png"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// TestRunReportAndMetrics: nst run writes the contact sheet and pushes its shard's metrics to
// --metrics-push; nst report regenerates the sheet from the bucket; --no-report writes none.
func TestRunReportAndMetrics(t *testing.T) {
	var mu sync.Mutex
	var pushed []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		pushed = append(pushed, r.Method+" "+r.URL.Path+"\n"+string(b))
		mu.Unlock()
	}))
	defer srv.Close()
	man := demoManifest(t)
	index := filepath.Join(filepath.Dir(man), "out", "_report", "index.html")
	code, stdout, stderr := runArgs(t, map[string]string{"NST_METRICS_PUSH": srv.URL}, "run", "--manifest", man, "--device", "cpu",
		"--threads", "1", "--run-id", "t3", "--in-process")
	if code != exitOK || !strings.Contains(stdout, "contact sheet _report/index.html") {
		t.Fatalf("run: exit %d\nstdout %s\nstderr %s", code, stdout, stderr)
	}
	if len(pushed) != 1 || !strings.HasPrefix(pushed[0], "PUT /metrics/job/nst/") || !strings.Contains(pushed[0], "/run_id/t3") || !strings.Contains(pushed[0], "/shard/0") ||
		!strings.Contains(pushed[0], `nst_pairs{status="done"} 2`) {
		t.Errorf("pushed %q", pushed)
	}
	page, err := os.ReadFile(index)
	if err != nil || !strings.Contains(string(page), `data-total="done">2<`) {
		t.Fatalf("sheet (%v):\n%s", err, page)
	}
	pages, _ := filepath.Glob(filepath.Join(filepath.Dir(index), "t3", "shard-0-of-1.*.00000.html"))
	if len(pages) != 1 {
		t.Fatalf("pages %v, want one", pages)
	}
	if rows, err := os.ReadFile(pages[0]); err != nil || strings.Count(string(rows), `data-status="done"`) != 2 {
		t.Fatalf("page (%v):\n%s", err, rows)
	}
	if err := os.Remove(index); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr = runArgs(t, nil, "report", "--manifest", man, "--run-id", "t3")
	if code != exitOK || !strings.Contains(stdout, "_report/index.html") {
		t.Fatalf("report: exit %d\nstdout %s\nstderr %s", code, stdout, stderr)
	}
	if again, err := os.ReadFile(index); err != nil || string(again) != string(page) {
		t.Errorf("nst report wrote another page (%v)", err)
	}
	if code, _, stderr := runArgs(t, nil, "report"); code != exitUsage || !strings.Contains(stderr, "--manifest is required") {
		t.Errorf("report without manifest: %d %s", code, stderr)
	}

	man2 := demoManifest(t)
	if code, _, stderr := runArgs(t, nil, "run", "--manifest", man2, "--device", "cpu", "--threads", "1", "--in-process", "--no-report"); code != exitOK {
		t.Fatalf("--no-report: %d %s", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(man2), "out", "_report")); !os.IsNotExist(err) {
		t.Errorf("--no-report: _report exists (%v)", err)
	}
}

// TestStylizeLossPlot: --loss-log x.loss.jsonl also draws x.loss.png; --loss-plot names it.
func TestStylizeLossPlot(t *testing.T) {
	dir := t.TempDir()
	writePNG(t, filepath.Join(dir, "c.png"), 40, 32, 1)
	writePNG(t, filepath.Join(dir, "s.png"), 32, 32, 2)
	args := []string{"stylize", "--content", filepath.Join(dir, "c.png"), "--style", filepath.Join(dir, "s.png"), "--random-weights",
		"--device", "cpu", "--threads", "1", "--size", "40", "--steps", "3", "--out", filepath.Join(dir, "o.png")}
	if code, _, stderr := runArgs(t, nil, append(args, "--loss-log", filepath.Join(dir, "o.loss.jsonl"))...); code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if code, _, stderr := runArgs(t, nil, append(args, "--loss-plot", filepath.Join(dir, "curve.png"))...); code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, p := range []string{"o.loss.png", "curve.png"} {
		f, err := os.Open(filepath.Join(dir, p))
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := png.DecodeConfig(f)
		f.Close()
		if err != nil || cfg.Width != 800 || cfg.Height != 500 {
			t.Errorf("%s: %+v %v", p, cfg, err)
		}
	}
}
