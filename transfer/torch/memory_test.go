package torch

import (
	"bytes"
	"fmt"
	"image"
	"os"
	"runtime/debug"
	"strconv"
	"testing"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

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

// rssBoundMiB is how much the resident set of one process may grow over rssSteps Adam steps
// after rssWarmup warm-up steps (narrow VGG19, 64 px). Measured on the 2-core development VM:
// within +-2.5 MiB over 1500 steps, no trend. A leak of 8 KiB a step or more fails.
const (
	rssWarmup   = 200
	rssSteps    = 1000
	rssBoundMiB = 8
)

// rssGrowth runs warmup+steps Adam steps in one Stylize call and returns the largest RSS seen
// every 100 steps after warm-up less the RSS at the end of warm-up. Before each sample the Go
// heap is collected and returned to the system, so what is measured is libtorch's and glibc's
// memory. leak, if > 0, keeps that many bytes of tensors alive per step (the test's self-check).
func rssGrowth(t *testing.T, e *Engine, warmup, steps int, leak int64) (int64, error) {
	var base, peak int64
	var kept []*ts.Tensor
	defer func() {
		for _, x := range kept {
			x.Drop()
		}
	}()
	sample := func() int64 {
		debug.FreeOSMemory()
		return rssBytes(t)
	}
	p := transfer.DefaultParams()
	p.Size, p.Steps = 64, warmup+steps
	_, err := e.Stylize(t.Context(), transfer.Request{
		Content: loadPNG(t, "content.png"), Styles: []image.Image{loadPNG(t, "style.png")}, Params: p,
		OnStep: func(s transfer.Step) error {
			if leak > 0 && s.Step > warmup {
				x, err := ts.Ones([]int64{leak / 4}, gotch.Float, gotch.CPU)
				if err != nil {
					return err
				}
				kept = append(kept, x)
			}
			switch {
			case s.Step == warmup:
				base = sample()
			case s.Step > warmup && (s.Step-warmup)%100 == 0:
				peak = max(peak, sample())
			}
			return nil
		},
	})
	if err != nil {
		return 0, err
	}
	if base == 0 || peak == 0 {
		return 0, fmt.Errorf("no RSS sample (base %d, peak %d)", base, peak)
	}
	return peak - base, nil
}

// TestRSSBounded: in one process, after rssWarmup steps, RSS grows less than rssBoundMiB over
// rssSteps more. A self-check then leaks 64 KiB a step on purpose and must exceed the bound, so
// the measurement can see a leak.
func TestRSSBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: 1200+ optimisation steps")
	}
	e := narrowEngine(t, "vgg19-narrow.pth")
	grew, err := rssGrowth(t, e, rssWarmup, rssSteps, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("RSS growth over %d steps after %d warm-up: %.2f MiB (bound %d MiB)", rssSteps, rssWarmup, float64(grew)/(1<<20), rssBoundMiB)
	if grew > rssBoundMiB<<20 {
		t.Errorf("RSS grew %.2f MiB over %d steps after %d warm-up, over the %d MiB bound", float64(grew)/(1<<20), rssSteps, rssWarmup, rssBoundMiB)
	}
	// After the measurement: memory the leak frees stays in glibc's pools and would hide a
	// real leak from a measurement after it.
	leaky, err := rssGrowth(t, e, 50, 200, 64<<10)
	if err != nil {
		t.Fatal(err)
	}
	if leaky <= rssBoundMiB<<20 {
		t.Fatalf("self-check: leaking 64 KiB a step for 200 steps grew RSS by only %.1f MiB, not over the %d MiB bound: the measurement cannot see leaks",
			float64(leaky)/(1<<20), rssBoundMiB)
	}
	t.Logf("self-check: leaking 64 KiB a step for 200 steps grew RSS by %.1f MiB", float64(leaky)/(1<<20))
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
