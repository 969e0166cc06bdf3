package torch

import (
	"bytes"
	"image"
	"os"
	"strconv"
	"testing"

	"github.com/nst-project/nst/transfer"
)

// rssBytes reads this process's resident set size from /proc/self/statm.
func rssBytes(tb testing.TB) int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		tb.Skip("no /proc/self/statm:", err)
	}
	f := bytes.Fields(b)
	pages, _ := strconv.ParseInt(string(f[1]), 10, 64)
	return pages * int64(os.Getpagesize())
}

// BenchmarkMemory2000Steps runs 2000 Adam steps at 64 px on the narrow VGG19 and reports the
// process RSS after warm-up (step 200), at step 1000 and at the end, and the growth per 1000
// steps over the second half. Run it with:
// go test -run '^$' -bench Memory2000 -benchtime 1x ./transfer/torch/
func BenchmarkMemory2000Steps(b *testing.B) {
	e := narrowEngine(b, "vgg19-narrow.pth")
	for i := 0; i < b.N; i++ {
		var warm, mid, end int64
		p := transfer.DefaultParams()
		p.Size, p.Steps = 64, 2000
		_, err := e.Stylize(b.Context(), transfer.Request{
			Content: loadPNG(b, "content.png"), Styles: []image.Image{loadPNG(b, "style.png")}, Params: p,
			OnStep: func(s transfer.Step) error {
				switch s.Step {
				case 200:
					warm = rssBytes(b)
				case 1000:
					mid = rssBytes(b)
				case 2000:
					end = rssBytes(b)
				}
				return nil
			},
		})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(warm)/(1<<20), "MiB-rss@200")
		b.ReportMetric(float64(end)/(1<<20), "MiB-rss@2000")
		b.ReportMetric(float64(mid)/(1<<20), "MiB-rss@1000")
		b.ReportMetric(float64(end-mid)/1024, "KiB-growth/1000steps")
	}
}

// TestMallocTuned checks that glibc accepted every nst_keep_freed_memory setting: without them
// each step faults its activation buffers in afresh (BenchmarkStep's faults/step).
func TestMallocTuned(t *testing.T) {
	if os.Getenv("NST_MALLOC_DEFAULTS") == "1" {
		t.Skip("NST_MALLOC_DEFAULTS=1 keeps glibc's defaults")
	}
	if !keepFreedMemory() {
		t.Error("mallopt refused a setting of nst_keep_freed_memory")
	}
}
