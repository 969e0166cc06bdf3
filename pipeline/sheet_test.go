package pipeline

import (
	"bytes"
	"context"
	"image"
	"image/color"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nst-project/nst/transfer"
)

func solidPNG(t testing.TB, w, h int, c color.NRGBA) []byte {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for i := 0; i < len(img.Pix); i += 4 {
		copy(img.Pix[i:], []byte{c.R, c.G, c.B, c.A})
	}
	return pngBytes(t, img)
}

// sheetBatch runs a two-shard batch on file:// with Report set: two solid green contents and a
// broken one, one solid magenta style, one preset. It returns the output directory.
func sheetBatch(t *testing.T) (out, manifest string) {
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
		cfg := Config{ManifestURL: man, NewEngine: fakeEngine(transfer.Fake{}), RunID: "r1", Version: "test", Report: true,
			ShardIndex: i, ShardCount: 2}
		rep, err := Run(t.Context(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		wantSheet := "_report/shard-0-of-2.html"
		if i == 1 {
			wantSheet = SheetIndex // the last shard finds every summary and merges
		}
		if rep.SheetKey != wantSheet {
			t.Errorf("shard %d: sheet %q, want %q", i, rep.SheetKey, wantSheet)
		}
	}
	return root + "/out", man
}

// TestContactSheetHTML: the merged sheet lists every pair with its status, links only
// relatively to files that exist, names the failure's cause and sums the run; `WriteReport`
// regenerates the same page from the bucket.
func TestContactSheetHTML(t *testing.T) {
	out, man := sheetBatch(t)
	index := filepath.Join(out, "_report", "index.html")
	page, err := os.ReadFile(index)
	if err != nil {
		t.Fatal(err)
	}
	html := string(page)
	if n := strings.Count(html, `<tr class="pair done"`); n != 2 {
		t.Errorf("%d done rows, want 2", n)
	}
	if n := strings.Count(html, `<tr class="pair failed"`); n != 1 {
		t.Errorf("%d failed rows, want 1", n)
	}
	if !strings.Contains(html, `<li class="failure"`) || !strings.Contains(html, "decode: content broken.png") {
		t.Errorf("failure cause missing:\n%s", html)
	}
	for _, tot := range []string{`data-total="pairs">3<`, `data-total="done">2<`, `data-total="failed">1<`} {
		if !strings.Contains(html, tot) {
			t.Errorf("totals: no %s", tot)
		}
	}
	for _, bad := range []string{"<script", "http://", "https://", "file://", `src="/`, `href="/`} {
		if strings.Contains(html, bad) {
			t.Errorf("sheet holds %q: not self-contained", bad)
		}
	}
	links := regexp.MustCompile(`(?:src|href)="([^"]+)"`).FindAllStringSubmatch(html, -1)
	if len(links) < 2*6 {
		t.Errorf("%d links, want thumbnails and outputs of 2 pairs", len(links))
	}
	for _, l := range links {
		if _, err := os.Stat(filepath.Join(out, "_report", filepath.FromSlash(l[1]))); err != nil {
			t.Errorf("link %s: %v", l[1], err)
		}
	}
	if !strings.Contains(html, `href="../default/more/lime__magenta.loss.png"`) {
		t.Errorf("no link to a loss curve")
	}

	// nst report: regenerate from the bucket alone, byte for byte.
	if err := os.Remove(index); err != nil {
		t.Fatal(err)
	}
	key, err := WriteReport(t.Context(), Config{ManifestURL: man, RunID: "r1"})
	if err != nil || key != SheetIndex {
		t.Fatalf("WriteReport: %q, %v", key, err)
	}
	if again, err := os.ReadFile(index); err != nil || !bytes.Equal(again, page) {
		t.Errorf("regenerated sheet differs (%v):\n%s", err, again)
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
	out, _ := sheetBatch(t)
	u := "file://" + out + "/_report/index.html"
	dom := string(browse(t, bin, "--dump-dom", u))
	if n := strings.Count(dom, `data-status="done"`); n != 2 {
		t.Errorf("DOM: %d done rows, want 2:\n%s", n, dom)
	}
	if !strings.Contains(dom, `data-status="failed"`) || !strings.Contains(dom, "decode: content broken.png") {
		t.Errorf("DOM: no failed row with its cause")
	}
	if !strings.Contains(dom, `data-total="pairs">3<`) || !strings.Contains(dom, `data-total="failed">1<`) {
		t.Errorf("DOM: totals missing")
	}
	shot := filepath.Join(t.TempDir(), "sheet.png")
	browse(t, bin, "--window-size=1000,1400", "--screenshot="+shot, u)
	f, err := os.Open(shot)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	if os.Getenv("NST_KEEP_SCREENSHOT") != "" {
		data, _ := os.ReadFile(shot)
		_ = os.WriteFile(os.Getenv("NST_KEEP_SCREENSHOT"), data, 0o644)
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
	// Two content thumbnails (scaled up to the 160 px cap no more than their own size) and two
	// style thumbnails: hundreds of pixels each.
	if g := near(color.NRGBA{0, 200, 0, 255}); g < 2*30*30/2 {
		t.Errorf("screenshot: %d green pixels: content thumbnails not shown", g)
	}
	if m := near(color.NRGBA{255, 0, 255, 255}); m < 2*32*32/2 {
		t.Errorf("screenshot: %d magenta pixels: style thumbnails not shown", m)
	}
}

func d(a uint32, b uint8) int { return max(int(a)-int(b), int(b)-int(a)) }
