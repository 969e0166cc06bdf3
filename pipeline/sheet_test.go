package pipeline

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nst-project/nst/transfer/fake"
)

func solidPNG(t testing.TB, w, h int, c color.NRGBA) []byte {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for i := 0; i < len(img.Pix); i += 4 {
		copy(img.Pix[i:], []byte{c.R, c.G, c.B, c.A})
	}
	return pngBytes(t, img)
}

// sheetRun runs a two-shard manifest on file:// with ContactSheet set: two solid green contents and a
// broken one, one solid magenta style, one preset. It returns the output directory.
func sheetRun(t *testing.T) (out, manifest string) {
	t.Helper()
	root := filepath.ToSlash(t.TempDir())
	for _, f := range []struct {
		name string
		data []byte
	}{
		{"in/contents/green.png", solidPNG(t, 40, 30, color.NRGBA{0, 200, 0, 255})},
		{"in/contents/more/lime.png", solidPNG(t, 30, 40, color.NRGBA{0, 200, 0, 255})},
		{"in/contents/broken.png", []byte("\x89PNG\r\n\x1a\nnot really")},
		{"in/styles/magenta.png", solidPNG(t, 32, 32, color.NRGBA{255, 0, 255, 255})},
	} {
		p := filepath.Join(root, f.name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, f.data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(root+"/out", 0o755); err != nil {
		t.Fatal(err)
	}
	man := writeManifest(t, `apiVersion: nst/v1
kind: StyleBatch
metadata: {name: sheet}
spec:
  model: {weights: random}
  inputs:
    contents: {url: "file://`+root+`/in/contents/"}
    styles: {url: "file://`+root+`/in/styles/"}
  params: {size: 32, steps: 5}
  output: {url: "file://`+root+`/out/"}
`)
	for i := range 2 {
		cfg := Config{ManifestURL: man, NewEngine: fakeEngine(fake.Engine{AnySize: true}), RunID: "r1", Version: "test", ContactSheet: true,
			ShardIndex: i, ShardCount: 2}
		rep, err := Run(t.Context(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case i == 1 && rep.SheetKey != SheetIndex: // the last shard finds every summary and writes the index
			t.Errorf("shard 1: sheet %q, want %q", rep.SheetKey, SheetIndex)
		case i == 0 && rep.SheetKey != "" && !regexp.MustCompile(`^_report/r1/shard-0-of-2\.[0-9TZ]+-[0-9a-f]{4}\.00000\.html$`).MatchString(rep.SheetKey):
			t.Errorf("shard 0: sheet %q, want its first page", rep.SheetKey)
		}
	}
	return root + "/out", man
}

// sheetPages returns the HTML of a run's pages, by file name.
func sheetPages(t *testing.T, out, runID string) map[string]string {
	t.Helper()
	pages := map[string]string{}
	files, _ := filepath.Glob(filepath.Join(out, "_report", runID, "shard-*.html"))
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		pages[filepath.Base(f)] = string(data)
	}
	return pages
}

// checkLinks checks that a page is self-contained and that its relative links (from dir) name
// files that exist; it returns the links.
func checkLinks(t *testing.T, name, html, dir string) []string {
	t.Helper()
	for _, bad := range []string{"<script", "http://", "https://", "file://", `src="/`, `href="/`} {
		if strings.Contains(html, bad) {
			t.Errorf("%s holds %q: not self-contained", name, bad)
		}
	}
	var out []string
	for _, l := range regexp.MustCompile(`(?:src|href)="([^"]+)"`).FindAllStringSubmatch(html, -1) {
		out = append(out, l[1])
		if _, err := os.Stat(filepath.Join(dir, filepath.FromSlash(l[1]))); err != nil {
			t.Errorf("%s: link %s: %v", name, l[1], err)
		}
	}
	return out
}

// TestContactSheetHTML: the run's index sums the shards and lists the failure's cause and every
// page; the pages hold the pairs the run wrote or failed, linking only relatively to files that
// exist; `WriteContactSheet` regenerates the same index from the bucket.
func TestContactSheetHTML(t *testing.T) {
	out, man := sheetRun(t)
	index := filepath.Join(out, "_report", "index.html")
	data, err := os.ReadFile(index)
	if err != nil {
		t.Fatal(err)
	}
	html := string(data)
	if !strings.Contains(html, `<li class="failure"`) || !strings.Contains(html, "decode: content broken.png") {
		t.Errorf("failure cause missing:\n%s", html)
	}
	for _, tot := range []string{`data-total="planned">3<`, `data-total="done">2<`, `data-total="failed">1<`, `data-total="notrun">0<`} {
		if !strings.Contains(html, tot) {
			t.Errorf("totals: no %s", tot)
		}
	}
	if n := strings.Count(html, `<tr class="shard"`); n != 2 {
		t.Errorf("%d shard rows, want 2", n)
	}
	links := checkLinks(t, "index", html, filepath.Join(out, "_report"))
	pages := sheetPages(t, out, "r1")
	if nl := strings.Count(html, `class="page"`); nl != len(pages) || len(pages) == 0 || len(links) < len(pages) {
		t.Errorf("index links %d pages, %d exist", nl, len(pages))
	}
	done, failed, curve := 0, 0, false
	for name, p := range pages {
		done += strings.Count(p, `<tr class="pair done"`)
		failed += strings.Count(p, `<tr class="pair failed"`)
		checkLinks(t, name, p, filepath.Join(out, "_report", "r1"))
		curve = curve || strings.Contains(p, `href="../../default/more/lime__magenta.loss.png"`)
		if !strings.Contains(p, `id="index" href="index.html"`) {
			t.Errorf("%s does not link the run's index", name)
		}
	}
	if done != 2 || failed != 1 || !curve {
		t.Errorf("pages: %d done rows, %d failed, loss curve linked %v; want 2, 1, true", done, failed, curve)
	}
	if _, err := os.Stat(filepath.Join(out, "_report", "r1", "index.html")); err != nil {
		t.Errorf("no run index: %v", err)
	}

	// nst report: regenerate from the bucket alone, byte for byte.
	if err := os.Remove(index); err != nil {
		t.Fatal(err)
	}
	key, err := WriteContactSheet(t.Context(), Config{ManifestURL: man, RunID: "r1"})
	if err != nil || key != SheetIndex {
		t.Fatalf("WriteContactSheet: %q, %v", key, err)
	}
	if again, err := os.ReadFile(index); err != nil || !bytes.Equal(again, data) {
		t.Errorf("regenerated sheet differs (%v):\n%s", err, again)
	}
}

// TestContactSheetPages: a run of 11 items in segments of 5 (render.PageSize in use) writes 3
// pages of at most a segment each, linked in order, and 3 pair log files; a run without
// Config.ContactSheet writes none, and WriteContactSheet makes them (and the thumbnails) from its pair log
// afterwards.
func TestContactSheetPages(t *testing.T) {
	e := memEnv()
	in := e.bucket(t, e.in)
	const n, seg = 11, 5
	for i := range n {
		put(t, in, fmt.Sprintf("contents/c%04d.png", i), pngBytes(t, testImage(16, 16, i%7)))
	}
	put(t, in, "styles/wave.png", pngBytes(t, testImage(16, 16, 4)))
	for _, withSheet := range []bool{true, false} {
		man := writeManifest(t, strings.Replace(manifestText("mem://in/contents/", "mem://in/styles/", fmt.Sprintf("mem://out/r%v/", withSheet), ""),
			"  presets:\n    - {name: soft, styleWeight: 10}\n    - {name: bold, styleWeight: 1000}\n", "", 1))
		cfg := e.config(man)
		cfg.RunID = fmt.Sprintf("pages-%v", withSheet)
		cfg.ContactSheet, cfg.segment = withSheet, seg
		rep, err := Run(t.Context(), cfg)
		if err != nil || rep.Done != n {
			t.Fatalf("run: %v, %+v", err, rep)
		}
		if !withSheet {
			if key, err := WriteContactSheet(t.Context(), cfg); err != nil || key != fmt.Sprintf("r%v/%s", withSheet, SheetIndex) {
				t.Fatalf("WriteContactSheet: %q %v", key, err)
			}
		}
		out := e.bucket(t, e.out)
		pre := fmt.Sprintf("r%v/", withSheet)
		sum := readSummary(t, out, rep.SummaryKey)
		if len(sum.Pages) != 3 || len(sum.PairLogs) != 3 {
			t.Fatalf("sheet %v: pages %v, pair logs %v", withSheet, sum.Pages, sum.PairLogs)
		}
		rows := 0
		for k, key := range sum.Pages {
			data, err := out.ReadAll(t.Context(), pre+key)
			if err != nil {
				t.Fatal(err)
			}
			html := string(data)
			r := strings.Count(html, `<tr class="pair done"`)
			rows += r
			if r > seg || (k < 2 && r != seg) {
				t.Errorf("page %d: %d rows", k, r)
			}
			if hasPrev, hasNext := strings.Contains(html, `id="prev"`), strings.Contains(html, `id="next"`); hasPrev != (k > 0) || hasNext != (k < 2) {
				t.Errorf("page %d: prev %v next %v", k, hasPrev, hasNext)
			}
			if k < 2 && !strings.Contains(html, `href="`+path.Base(sum.Pages[k+1])+`"`) {
				t.Errorf("page %d does not link page %d", k, k+1)
			}
		}
		if rows != n {
			t.Errorf("pages hold %d rows, want %d", rows, n)
		}
		if thumbs := len(keysUnder(t, out, pre+"_report/thumbs/r-")); thumbs < n {
			t.Errorf("sheet %v: %d result thumbnails, want %d", withSheet, thumbs, n)
		}
	}
}

// chromium returns the headless browser's path; without one the test skips, except in CI
// (CI set), where .ci/run installs it and its absence is a failure.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium not found: .ci/run installs it (apt-get install chromium)")
	}
	// go test shows this only with -v; make test prints its own line when chromium is missing.
	t.Skip("SKIPPED: no chromium, chromium-browser or google-chrome on PATH, so the contact sheet is not checked in a browser (apt-get install chromium; CI installs it and fails without it)")
	return ""
}

func browse(t *testing.T, bin string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
		"--user-data-dir=" + t.TempDir()}
	cmd := exec.CommandContext(ctx, bin, append(base, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium %v: %v\n%s", args, err, stderr.Bytes())
	}
	return out
}

// TestContactSheetInBrowser opens the sheet of a real run in headless Chromium from file://:
// the DOM it builds has the pair rows, the failure's cause and the totals, and its screenshot
// shows the thumbnails (the green contents and the magenta style: pixels of those colours,
// which only loaded images can put there).
func TestContactSheetInBrowser(t *testing.T) {
	bin := chromium(t)
	out, _ := sheetRun(t)
	u := "file://" + out + "/_report/index.html"
	dom := string(browse(t, bin, "--dump-dom", u))
	if !strings.Contains(dom, `class="failure"`) || !strings.Contains(dom, "decode: content broken.png") {
		t.Errorf("DOM: no failure with its cause:\n%s", dom)
	}
	if !strings.Contains(dom, `data-total="planned">3<`) || !strings.Contains(dom, `data-total="failed">1<`) {
		t.Errorf("DOM: totals missing")
	}
	done, green, magenta := 0, 0, 0
	for name := range sheetPages(t, out, "r1") {
		pu := "file://" + out + "/_report/r1/" + name
		done += strings.Count(string(browse(t, bin, "--dump-dom", pu)), `data-status="done"`)
		shot := filepath.Join(t.TempDir(), "sheet.png")
		browse(t, bin, "--window-size=1000,1400", "--screenshot="+shot, pu)
		f, err := os.Open(shot)
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		if os.Getenv("NST_KEEP_SCREENSHOT") != "" {
			data, _ := os.ReadFile(shot)
			_ = os.WriteFile(os.Getenv("NST_KEEP_SCREENSHOT")+"."+name+".png", data, 0o644)
		}
		near := func(c color.NRGBA) int {
			n := 0
			b := img.Bounds()
			for y := b.Min.Y; y < b.Max.Y; y++ {
				for x := b.Min.X; x < b.Max.X; x++ {
					r, g, bb, _ := img.At(x, y).RGBA()
					if d(r>>8, c.R) < 24 && d(g>>8, c.G) < 24 && d(bb>>8, c.B) < 24 {
						n++
					}
				}
			}
			return n
		}
		green += near(color.NRGBA{0, 200, 0, 255})
		magenta += near(color.NRGBA{255, 0, 255, 255})
	}
	if done != 2 {
		t.Errorf("DOM of the pages: %d done rows, want 2", done)
	}
	// Two content thumbnails (scaled up to the 160 px cap no more than their own size) and two
	// style thumbnails: hundreds of pixels each.
	if green < 2*30*30/2 {
		t.Errorf("screenshots: %d green pixels: content thumbnails not shown", green)
	}
	if magenta < 2*32*32/2 {
		t.Errorf("screenshots: %d magenta pixels: style thumbnails not shown", magenta)
	}
}

func d(a uint32, b uint8) int { return max(int(a)-int(b), int(b)-int(a)) }
