package torch

import (
	"context"
	"flag"
	"fmt"
	"image"
	"image/color"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/nst-project/nst/transfer"
	"github.com/nst-project/nst/transfer/imaging"
)

// The per-step benchmarks of docs/BENCHMARKS.md: full-width VGG19 (random weights: the real
// network's FLOPs), CPU, seconds per optimiser step (forward + backward + update) measured from
// the loss log's elapsed_s, the first NST_BENCH_WARMUP steps (default 1, which includes the
// content and style targets) excluded. b.N is the number of measured steps:
//
//	go test -run '^$' -bench 'BenchmarkStep/adam/256$' -benchtime 5x ./transfer/torch
//
// Metrics: s/step (median step), cpu-s/step (the process's CPU time over the measured steps,
// per step), GFLOP/s (the VGG19 FLOPs of one evaluation, vggStepFLOPs,
// over the median Adam step; for L-BFGS, whose steps hold one or more evaluations, it is left
// out) and peak-RSS-MiB (the process's VmHWM so far: run one sub-benchmark per process for a
// per-size figure). 512 and 1024 px take seconds a step on 2 cores: they run only when the
// -bench pattern names the size or NST_BENCH_512=1.
//
// Environment: NST_BENCH_FORMAT (channels-last or nchw; default the engine's),
// NST_BENCH_PRECISION (bf16 or fp32; default fp32),
// NST_BENCH_THREADS (default 2), NST_BENCH_WARMUP (default 1), NST_BENCH_DIR (a folder with
// content-<size>.png and style-<size>.png, as bench/prep_images.py writes from your photos or
// its own synthetic pictures; default: synthetic pictures drawn here, see synthImages). The
// time of a step does not depend on the pictures: every convolution does the same work.
func BenchmarkStep(b *testing.B) {
	var eng *Engine
	defer func() {
		if eng != nil {
			eng.Close()
		}
	}()
	for _, opt := range []string{transfer.Adam, transfer.LBFGS} {
		for _, size := range []int{128, 256, 512, 1024} {
			b.Run(fmt.Sprintf("%s/%d", opt, size), func(b *testing.B) {
				if size >= 512 && !wantLarge(size) {
					b.Skipf("%d px: name it in -bench or set NST_BENCH_512=1 (seconds a step on 2 cores)", size)
				}
				content, style := benchImages(b, size)
				openBenchEngine(b, &eng)
				warm := benchEnvInt("NST_BENCH_WARMUP", 1)
				p := transfer.DefaultParams()
				p.Size = size
				p.Steps = warm + b.N
				p.Optimizer = opt
				p.Precision = os.Getenv("NST_BENCH_PRECISION")
				if opt == transfer.LBFGS {
					p.LR = 1
				}
				// Page faults of the measured steps: a step that faults its buffers in afresh
				// pays for it in kernel time (see nst_keep_freed_memory).
				var faults0, faults1 int64
				var cpu0, cpu1 float64
				var mem0, mem1 runtime.MemStats
				b.ResetTimer()
				res, err := eng.Stylize(context.Background(), transfer.Request{
					Content: content, Styles: []image.Image{style}, Params: p,
					OnStep: func(st transfer.Step) error {
						switch st.Step {
						case warm:
							faults0, cpu0 = minorFaults(), cpuSeconds()
							runtime.ReadMemStats(&mem0)
						case p.Steps:
							faults1, cpu1 = minorFaults(), cpuSeconds()
							runtime.ReadMemStats(&mem1)
						}
						return nil
					},
				})
				b.StopTimer()
				if err != nil {
					b.Fatal(err)
				}
				steps := stepTimes(res.Log)
				if len(steps) <= warm {
					b.Fatalf("%d steps done (converged?), %d warm-up: nothing measured", len(steps), warm)
				}
				med := median(steps[warm:])
				b.ReportMetric(med, "s/step")
				if opt == transfer.Adam {
					b.ReportMetric(vggStepFLOPs(size, size)/med/1e9, "GFLOP/s")
				}
				b.ReportMetric(peakRSSMiB(), "peak-RSS-MiB")
				if faults1 > 0 {
					b.ReportMetric(float64(faults1-faults0)/float64(p.Steps-warm), "faults/step")
				}
				if mem1.TotalAlloc > 0 {
					// Go's heap per step (9.7 MB and a collection a step with published gotch's 100 KB
					// per tensor, which setup's copy removes; TestTensorsPerStep) and its collections,
					// whose workers take a core from libtorch's threads.
					n := float64(p.Steps - warm)
					b.ReportMetric(float64(mem1.TotalAlloc-mem0.TotalAlloc)/n/(1<<20), "go-MB/step")
					b.ReportMetric(float64(mem1.NumGC-mem0.NumGC)/n, "GCs/step")
				}
				if cpu1 > 0 {
					// User+system CPU of the whole process per measured step: on a shared machine
					// far steadier than wall time (a descheduled thread costs wall time, not CPU),
					// though spinning OpenMP workers count.
					b.ReportMetric((cpu1-cpu0)/float64(p.Steps-warm), "cpu-s/step")
				}
			})
		}
	}
}

// BenchmarkBatchStep is BenchmarkStep's Adam step for N same-size pairs optimised as one batch
// (Engine.StylizeBatch: one forward and backward over all N images), in seconds per image per
// step (s/step/image; N = 1 is the lone run), so the ratio to N = 1 is what batching gives per
// pair:
//
//	go test -run '^$' -bench 'BenchmarkBatchStep/2/512$' -benchtime 3x ./transfer/torch
//
// Same environment as BenchmarkStep; 512 px only when named or NST_BENCH_512=1.
func BenchmarkBatchStep(b *testing.B) {
	var eng *Engine
	defer func() {
		if eng != nil {
			eng.Close()
		}
	}()
	for _, n := range []int{1, 2, 4} {
		for _, size := range []int{128, 256, 512} {
			b.Run(fmt.Sprintf("%d/%d", n, size), func(b *testing.B) {
				if size >= 512 && !wantLarge(size) {
					b.Skipf("%d px: name it in -bench or set NST_BENCH_512=1", size)
				}
				content, style := benchImages(b, size)
				openBenchEngine(b, &eng)
				warm := benchEnvInt("NST_BENCH_WARMUP", 1)
				p := transfer.DefaultParams()
				p.Size, p.Steps, p.Precision = size, warm+b.N, os.Getenv("NST_BENCH_PRECISION")
				reqs := make([]transfer.Request, n)
				for i := range reqs {
					reqs[i] = transfer.Request{Content: content, Styles: []image.Image{style}, Params: p}
				}
				b.ResetTimer()
				results, errs := eng.StylizeBatch(context.Background(), reqs)
				b.StopTimer()
				for i, err := range errs {
					if err != nil {
						b.Fatalf("request %d: %v", i, err)
					}
				}
				steps := stepTimes(results[0].Log)
				b.ReportMetric(median(steps[warm:])/float64(n), "s/step/image")
				b.ReportMetric(peakRSSMiB(), "peak-RSS-MiB")
			})
		}
	}
}

// stepTimes turns a loss log's cumulative elapsed_s into each step's duration.
func stepTimes(log []transfer.Step) []float64 {
	out := make([]float64, len(log))
	prev := 0.0
	for i, s := range log {
		out[i] = s.ElapsedS - prev
		prev = s.ElapsedS
	}
	return out
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// vggStepFLOPs counts the floating-point operations of one loss evaluation with its gradient
// (the work of one Adam step) on an h x w image, from the layer shapes, as nst runs it: the 3x3
// convs conv1_1..conv5_1 (the deepest layer the seed's losses use) and the five style layers'
// Gram matrices. Forward: 2*MACs of every conv and Gram. Backward: the gradient with respect to
// the input only (the weights do not require grad, so libtorch computes no weight gradients):
// one conv-sized product per conv and two Gram-sized products per Gram (dL/dF = dG·F + dGᵀ·F).
// Biases, ReLUs, pools and the element-wise loss terms (memory-bound, well under 1%) are not
// counted.
func vggStepFLOPs(h, w int) float64 {
	const convs = 13 // conv1_1 .. conv5_1
	style := map[int]bool{0: true, 2: true, 4: true, 8: true, 12: true}
	var conv, gramMACs float64
	in := 3.0
	hh, ww := float64(h), float64(w)
	for i := 0; i < convs; i++ {
		out := float64(vggWidth[i])
		conv += 9 * in * out * hh * ww
		if style[i] {
			gramMACs += out * out * hh * ww
		}
		in = out
		if vggPooled[vggIndex[i]] {
			hh, ww = float64(int(hh)/2), float64(int(ww)/2)
		}
	}
	forward := 2 * (conv + gramMACs)
	backward := 2 * (conv + 2*gramMACs)
	return forward + backward
}

func TestVGGStepFLOPs(t *testing.T) {
	// conv1_1 at 1x1 px: 9*3*64 MACs; the hand count for 224 px matches VGG19's published
	// ~19.6 GMACs for all 16 convs less conv5_2..conv5_4 (3 * 9*512*512*14*14 MACs).
	all16 := 0.0
	in, side := 3.0, 224.0
	for i, w := range vggWidth {
		all16 += 9 * in * float64(w) * side * side
		in = float64(w)
		if vggPooled[vggIndex[i]] {
			side /= 2
		}
	}
	if g := all16 / 1e9; g < 19.4 || g > 19.7 {
		t.Fatalf("VGG19 convs at 224 px: %.2f GMACs, want ~19.6", g)
	}
	got := vggStepFLOPs(224, 224)
	conv := all16 - 3*9*512*512*14*14
	if got < 4*conv || got > 4.4*conv { // + Gram matrices: ~7% at 224 px
		t.Fatalf("vggStepFLOPs(224) = %.3g, conv FLOPs alone 4*%.3g", got, conv)
	}
}

// wantLarge reports whether a size of 512 px or more is to run: named in -bench (its digits)
// or NST_BENCH_512=1.
func wantLarge(size int) bool {
	if os.Getenv("NST_BENCH_512") == "1" {
		return true
	}
	f := flag.Lookup("test.bench")
	return f != nil && strings.Contains(f.Value.String(), strconv.Itoa(size))
}

func benchEnvInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v >= 0 {
		return v
	}
	return def
}

// benchImages returns a size x size content and style: NST_BENCH_DIR's prepared PNGs, else
// synthImages.
func benchImages(b *testing.B, size int) (content, style *image.NRGBA) {
	b.Helper()
	dir := os.Getenv("NST_BENCH_DIR")
	if dir == "" {
		return synthImages(size)
	}
	load := func(path string) *image.NRGBA {
		f, err := os.Open(path)
		if err != nil {
			b.Fatalf("NST_BENCH_DIR: %v", err)
		}
		defer f.Close()
		img, _, err := imaging.Decode(f, imaging.DefaultLimits())
		if err != nil {
			b.Fatalf("%s: %v", path, err)
		}
		w, h := img.Rect.Dx(), img.Rect.Dy()
		m := min(w, h)
		x0, y0 := img.Rect.Min.X+(w-m)/2, img.Rect.Min.Y+(h-m)/2
		sq := img.SubImage(image.Rect(x0, y0, x0+m, y0+m)).(*image.NRGBA)
		return imaging.Resize(imaging.ToNRGBA(sq), size, size)
	}
	return load(filepath.Join(dir, fmt.Sprintf("content-%d.png", size))), load(filepath.Join(dir, fmt.Sprintf("style-%d.png", size)))
}

// synthImages draws a deterministic size x size content (sky, hills, a sun, fine grain) and
// style (coloured strokes over a checkerboard), so benchmarks need no file from outside the
// repository.
func synthImages(size int) (content, style *image.NRGBA) {
	rng := rand.New(rand.NewPCG(1, 2))
	grain := func(v float64) uint8 { return uint8(max(0, min(255, 255*v+rng.NormFloat64()*8))) }
	content = image.NewNRGBA(image.Rect(0, 0, size, size))
	style = image.NewNRGBA(image.Rect(0, 0, size, size))
	n := float64(size - 1)
	for py := range size {
		for px := range size {
			x, y := float64(px)/n, float64(py)/n
			r, g, bl := 0.45+0.4*y, 0.65+0.25*y, 0.95-0.1*y // sky
			if ridge := 0.55 + 0.06*math.Sin(x*11) + 0.03*math.Sin(x*37+1); y >= ridge {
				r, g, bl = 0.15+0.3*x, 0.45+0.4*(y-ridge), 0.2+0.1*x
			}
			if (x-0.75)*(x-0.75)+(y-0.2)*(y-0.2) < 0.0064 {
				r, g, bl = 1, 0.85, 0.3
			}
			content.SetNRGBA(px, py, color.NRGBA{grain(r), grain(g), grain(bl), 255})
			angle := 6*math.Sin(3*x) + 5*math.Cos(4*y)
			stroke := math.Sin(60 * (x*math.Cos(angle) + y*math.Sin(angle)))
			palette := [4][3]float64{{0.1, 0.2, 0.55}, {0.95, 0.8, 0.2}, {0.2, 0.45, 0.8}, {0.05, 0.1, 0.3}}
			c := palette[min(3, max(0, int((stroke+1)*2)))]
			check := float64((px*16/size + py*16/size) % 2)
			style.SetNRGBA(px, py, color.NRGBA{grain(0.85*c[0] + 0.15*check), grain(0.85*c[1] + 0.15*check), grain(0.85*c[2] + 0.15*check), 255})
		}
	}
	return content, style
}

// cpuSeconds is the process's user+system CPU time so far, 0 if unknown.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// minorFaults is the process's minor page faults so far.
func minorFaults() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Minflt
}

// peakRSSMiB is this process's peak resident set (VmHWM), 0 if unknown.
func peakRSSMiB() float64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}

// BenchmarkPeakMatmul times a 4096x4096 float32 matmul (libtorch's sgemm, MKL in the PyPI
// wheel) on NST_BENCH_THREADS threads: the practical peak the per-step GFLOP/s is compared with.
//
//	go test -run '^$' -bench PeakMatmul -benchtime 5x ./transfer/torch
func BenchmarkPeakMatmul(b *testing.B) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	setThreads(benchEnvInt("NST_BENCH_THREADS", 2))
	const n = 4096
	x, err := ts.Randn([]int64{n, n}, gotch.Float, gotch.CPU)
	if err != nil {
		b.Fatal(err)
	}
	defer x.Drop()
	warm, err := x.Matmul(x, false)
	if err != nil {
		b.Fatal(err)
	}
	warm.Drop()
	times := make([]float64, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		y, err := x.Matmul(x, false)
		if err != nil {
			b.Fatal(err)
		}
		times = append(times, time.Since(t0).Seconds())
		y.Drop()
	}
	b.ReportMetric(2*n*n*n/median(times)/1e9, "GFLOP/s")
	b.ReportMetric(float64(numThreads()), "threads")
}

// openBenchEngine opens the benchmarks' shared engine on first use (NST_BENCH_THREADS,
// NST_BENCH_FORMAT): one per benchmark function, so sub-benchmarks skipped by -bench cost nothing.
func openBenchEngine(b *testing.B, eng **Engine) {
	if *eng != nil {
		return
	}
	e, err := New(Options{RandomWeights: true, Device: "cpu", Threads: benchEnvInt("NST_BENCH_THREADS", 2),
		MemoryFormat: os.Getenv("NST_BENCH_FORMAT")})
	if err != nil {
		b.Fatal(err)
	}
	*eng = e
}
