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
// within +-2.5 MiB over 1500 steps, no trend. inUseBoundKiB bounds the growth of glibc's bytes
// in use (mallocInUse) over the same steps: measured at 0.8-3.7 KiB, so a leak of 1 KiB a step
// fails it.
const (
	rssWarmup     = 200
	rssSteps      = 1000
	rssBoundMiB   = 8
	inUseBoundKiB = 512
)

// growth is how much RSS and glibc's bytes in use grew: the largest value sampled every 100
// steps after warm-up less the value at the end of warm-up.
type growth struct{ rss, inUse int64 }

// rssGrowth runs warmup+steps Adam steps in one Stylize call and returns the growth. Before
// each sample the Go heap is collected and returned to the system, so what is measured is
// libtorch's and glibc's memory. leak, if > 0, keeps that many bytes of tensors alive per step
// (the test's self-check).
func rssGrowth(t *testing.T, e *Engine, warmup, steps int, leak int64) (growth, error) {
	var base, peak growth
	var kept []*ts.Tensor
	defer func() {
		for _, x := range kept {
			x.Drop()
		}
	}()
	sample := func() growth {
		debug.FreeOSMemory()
		return growth{rss: rssBytes(t), inUse: mallocInUse()}
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
				g := sample()
				peak = growth{rss: max(peak.rss, g.rss), inUse: max(peak.inUse, g.inUse)}
			}
			return nil
		},
	})
	if err != nil {
		return growth{}, err
	}
	if base.rss == 0 || peak.rss == 0 {
		return growth{}, fmt.Errorf("no RSS sample (base %d, peak %d)", base.rss, peak.rss)
	}
	return growth{rss: peak.rss - base.rss, inUse: peak.inUse - base.inUse}, nil
}

// TestRSSBounded: in one process, after rssWarmup steps, RSS grows less than rssBoundMiB and
// glibc's bytes in use less than inUseBoundKiB over rssSteps more. A self-check then leaks 64
// KiB a step on purpose, and the bytes in use must exceed their bound, so the measurement can
// see a leak. RSS is not held to the self-check: glibc keeps freed memory resident
// (nst_keep_freed_memory), and a leak can be served from it without RSS growing; it grew by
// as little as 1 MiB for the 12.5 MiB leaked in one run.
func TestRSSBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: 1200+ optimisation steps")
	}
	e := narrowEngine(t, "vgg19-narrow.pth")
	g, err := rssGrowth(t, e, rssWarmup, rssSteps, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("growth over %d steps after %d warm-up: RSS %.2f MiB (bound %d MiB), bytes in use %.1f KiB (bound %d KiB)",
		rssSteps, rssWarmup, float64(g.rss)/(1<<20), rssBoundMiB, float64(g.inUse)/1024, inUseBoundKiB)
	if g.rss > rssBoundMiB<<20 {
		t.Errorf("RSS grew %.2f MiB over %d steps after %d warm-up, over the %d MiB bound", float64(g.rss)/(1<<20), rssSteps, rssWarmup, rssBoundMiB)
	}
	if g.inUse > inUseBoundKiB<<10 {
		t.Errorf("glibc's bytes in use grew %.1f KiB over %d steps after %d warm-up, over the %d KiB bound", float64(g.inUse)/1024, rssSteps, rssWarmup, inUseBoundKiB)
	}
	leaky, err := rssGrowth(t, e, 50, 200, 64<<10)
	if err != nil {
		t.Fatal(err)
	}
	if leaky.inUse <= inUseBoundKiB<<10 {
		t.Fatalf("self-check: leaking 64 KiB a step for 200 steps grew the bytes in use by only %.1f KiB, not over the %d KiB bound: the measurement cannot see leaks",
			float64(leaky.inUse)/1024, inUseBoundKiB)
	}
	t.Logf("self-check: leaking 64 KiB a step for 200 steps grew the bytes in use by %.1f MiB and RSS by %.1f MiB",
		float64(leaky.inUse)/(1<<20), float64(leaky.rss)/(1<<20))
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

// TestMallocTuned checks that glibc accepted every nst_keep_freed_memory setting, and that they
// hold on the engine's threads: without them each step faults its activation buffers in afresh
// (BenchmarkStep's faults/step).
func TestMallocTuned(t *testing.T) {
	if os.Getenv("NST_MALLOC_DEFAULTS") == "1" {
		t.Skip("NST_MALLOC_DEFAULTS=1 keeps glibc's defaults")
	}
	if !keepFreedMemory() {
		t.Error("mallopt refused a setting of nst_keep_freed_memory")
	}

	// A 64 MiB tensor (conv1's activations at 512 px), made on two of the engine's threads at
	// once: it comes from the one heap, not from mmap (which gave 250 000-300 000 page faults a
	// step at 512 px), and no thread has an arena of its own.
	th := &osThreads{}
	defer th.close()
	// Blocks that libraries' own constructors mmapped before nst_keep_freed_memory ran stay so.
	base := mallocMapped()
	errs := make(chan error, 2)
	hold := make(chan struct{})
	for range 2 {
		go func() {
			errs <- th.do(func() error {
				x, err := ts.Zeros([]int64{4096, 4096}, gotch.Float, gotch.CPU)
				if err != nil {
					return err
				}
				defer x.MustDrop()
				<-hold // both tensors alive at once
				if m := mallocMapped() - base; m != 0 {
					return fmt.Errorf("%d more bytes of malloc's blocks mmapped with the tensors alive, want 0", m)
				}
				return nil
			})
		}()
	}
	close(hold)
	for range 2 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if n := mallocArenas(); n != 1 {
		t.Errorf("malloc has %d arenas, want 1: M_ARENA_MAX was set after threads had made their own", n)
	}
}
