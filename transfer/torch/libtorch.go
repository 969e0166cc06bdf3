package torch

// The few libtorch C calls gotch v0.9.1 does not wrap, or wraps in ways a long-running batch
// cannot afford. The symbols come from gotch's own C API (libtch/torch_api.h), which is linked
// into every binary that imports gotch; declaring them here needs no libtorch headers.

/*
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
typedef void *tensor;
extern char *get_and_reset_last_err();
extern void at_set_num_threads(int n_threads);
extern int at_get_num_threads();
extern void at_manual_seed(int64_t);
extern void at_copy_(tensor dst, tensor src);
extern void at_free(tensor);
extern void atg_requires_grad_(tensor *out, tensor self, int requires_grad);
extern void atg_relu_(tensor *out, tensor self);
typedef void *scalar;
extern scalar ats_float(double);
extern void ats_free(scalar);
extern void atg_lerp_(tensor *out, tensor self, tensor end, scalar weight);
extern void atg_mul_scalar_(tensor *out, tensor self, scalar other);
extern void atg_div_scalar_(tensor *out, tensor self, scalar other);
extern void atg_add_scalar_(tensor *out, tensor self, scalar other);
extern void atg_addcmul_(tensor *out, tensor self, tensor t1, tensor t2);
extern void atg_addcdiv_(tensor *out, tensor self, tensor t1, tensor t2);

// nst_requires_grad sets requires_grad in place. gotch's RequiresGrad_ replaces its handle
// with the new one libtorch returns and never frees the old one, which pins the tensor's
// storage for the life of the process; here the returned alias is freed at once instead.
static void nst_requires_grad(tensor t, int on) {
	tensor out = 0;
	atg_requires_grad_(&out, t, on);
	if (out) at_free(out);
}

// nst_relu_ applies ReLU in place (torchvision's ReLU(inplace=True), as the seed's VGG19 runs
// it), freeing the alias libtorch returns, which gotch's Relu_ would leak with its storage.
static void nst_relu_(tensor t) {
	tensor out = 0;
	atg_relu_(&out, t);
	if (out) at_free(out);
}

// The in-place ops torch.optim.Adam runs. Each frees the alias libtorch returns (gotch's
// Xxx_ methods leak it, and with it the tensor's storage) and makes no gotch tensor.
enum { NST_LERP, NST_MUL, NST_DIV, NST_ADD };
static void nst_scalar_op_(int op, tensor self, tensor other, double v) {
	tensor out = 0;
	scalar s = ats_float(v);
	switch (op) {
	case NST_LERP: atg_lerp_(&out, self, other, s); break;
	case NST_MUL: atg_mul_scalar_(&out, self, s); break;
	case NST_DIV: atg_div_scalar_(&out, self, s); break;
	case NST_ADD: atg_add_scalar_(&out, self, s); break;
	}
	ats_free(s);
	if (out) at_free(out);
}
static void nst_addc_(int div, tensor self, tensor t1, tensor t2) {
	tensor out = 0;
	if (div) atg_addcdiv_(&out, self, t1, t2); else atg_addcmul_(&out, self, t1, t2);
	if (out) at_free(out);
}

// nst_keep_freed_memory tunes glibc's malloc for a loop that frees and reallocates the same
// large activation buffers every step. By default glibc hands freed memory back to the kernel
// (trims heap tops, shrinks and unmaps the per-thread arenas that serve the engine's locked OS
// threads, unmaps every block over its mmap threshold), so every step faults its buffers in
// again: ~24 000 page faults per Adam step at 256 px, against ~1 400 in the seed's Python
// process, and 250 000-300 000 at 512 px, where conv1's 64 MiB activations are over glibc's
// 32 MiB ceiling for the threshold. Here: one arena for all threads (the main one), no trimming,
// a 256 MiB top pad, and no mmap for any block, so every buffer comes from the heap and goes back
// to it. The memory stays with the process, which needs its peak working set every step anyway;
// worker recycling (--worker-max-pairs) returns it.
//
// It runs as a constructor, when the process loads and before any thread exists: set later,
// M_ARENA_MAX cannot take back the arenas threads already made, and then the faults at 512 px
// came back in some runs and not others (docs/BENCHMARKS.md, section 1). NST_MALLOC_DEFAULTS=1
// keeps glibc's defaults, for comparisons.
static int nst_malloc_tuned;
__attribute__((constructor)) static void nst_keep_freed_memory(void) {
	const char *d = getenv("NST_MALLOC_DEFAULTS");
	if (d && strcmp(d, "1") == 0) return;
	int ok = 1;
	ok &= mallopt(M_ARENA_MAX, 1);
	ok &= mallopt(M_MMAP_MAX, 0);
	ok &= mallopt(M_TRIM_THRESHOLD, -1); // -1: never trim (mallopt(3))
	ok &= mallopt(M_TOP_PAD, 256 << 20);
	nst_malloc_tuned = ok;
}
static int nst_malloc_is_tuned(void) { return nst_malloc_tuned; }

// nst_malloc_mapped is the bytes in blocks glibc's malloc has mmapped (mallinfo2's hblkhd).
static long long nst_malloc_mapped(void) { return (long long)mallinfo2().hblkhd; }

// nst_malloc_arenas counts the arenas malloc_info(3) reports.
static int nst_malloc_arenas(void) {
	char *buf = 0;
	size_t n = 0;
	FILE *f = open_memstream(&buf, &n);
	if (!f) return -1;
	malloc_info(0, f);
	fclose(f);
	int count = 0;
	for (char *p = buf; (p = strstr(p, "<heap nr=")); p++) count++;
	free(buf);
	return count;
}

// nst_malloc_in_use is the bytes glibc's malloc has handed out and not had back: heap chunks in
// use plus mmapped blocks. libtorch's CPU tensors are allocated there; Go's heap is not.
static long long nst_malloc_in_use(void) {
	struct mallinfo2 m = mallinfo2();
	return (long long)(m.uordblks + m.hblkhd);
}
*/
import "C"

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"unsafe"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// lastErr returns and clears libtorch's last error on this OS thread. Callers run on a locked
// thread (the engine's osThreads, or runtime.LockOSThread in tests): the slot is thread-local.
func lastErr() error {
	p := C.get_and_reset_last_err()
	if p == nil {
		return nil
	}
	defer C.free(unsafe.Pointer(p))
	return errors.New(firstLine(C.GoString(p)))
}

// firstLine keeps libtorch's message and drops the C++ and Go stack traces that follow it
// (gotch appends a goroutine dump to every error).
func firstLine(s string) string {
	s = strings.TrimPrefix(s, "Libtorch API Error: ")
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return strings.TrimSpace(s)
}

// torchErr shortens an error that came out of gotch to its first line.
func torchErr(op string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %s", op, firstLine(err.Error()))
}

// keepFreedMemory reports whether nst_keep_freed_memory tuned glibc's malloc when the process
// started (not with NST_MALLOC_DEFAULTS=1).
func keepFreedMemory() bool { return C.nst_malloc_is_tuned() == 1 }

// mallocMapped is the bytes in blocks glibc's malloc has mmapped rather than taken from its heap.
func mallocMapped() int64 { return int64(C.nst_malloc_mapped()) }

// mallocArenas is the number of glibc malloc arenas (malloc_info), -1 if it cannot be read.
func mallocArenas() int { return int(C.nst_malloc_arenas()) }

// mallocInUse reports the bytes glibc's malloc has allocated and not had freed: what a leak
// of libtorch tensors grows, whether or not RSS shows it (freed memory kept resident by
// nst_keep_freed_memory can serve a leak without the process growing).
func mallocInUse() int64 { return int64(C.nst_malloc_in_use()) }

// setThreads sets libtorch's intra-op thread count for the calling OS thread's work.
func setThreads(n int) {
	if n > 0 {
		C.at_set_num_threads(C.int(n))
	}
}

// numThreads reports libtorch's intra-op thread count.
func numThreads() int { return int(C.at_get_num_threads()) }

// requiresGrad marks t as a leaf whose gradient is wanted, without leaking a handle.
func requiresGrad(t *ts.Tensor, on bool) error {
	v := C.int(0)
	if on {
		v = 1
	}
	C.nst_requires_grad(C.tensor(t.Ctensor()), v)
	return lastErr()
}

// reluInPlace clamps t's negative values to 0 in place.
func reluInPlace(t *ts.Tensor) error {
	C.nst_relu_(C.tensor(t.Ctensor()))
	return lastErr()
}

// scalarInPlace runs one of nst_scalar_op_'s ops on a (with b, for lerp) and the number v.
func scalarInPlace(op C.int, a, b *ts.Tensor, v float64) error {
	var other C.tensor
	if b != nil {
		other = C.tensor(b.Ctensor())
	}
	C.nst_scalar_op_(op, C.tensor(a.Ctensor()), other, C.double(v))
	return lastErr()
}

// lerpInPlace sets a = a + w*(b - a) (torch's lerp_, which computes it so for w < 0.5).
func lerpInPlace(a, b *ts.Tensor, w float64) error { return scalarInPlace(C.NST_LERP, a, b, w) }

// scaleInPlace sets a = a*v; divInPlace a = a/v; plusInPlace a = a + v.
func scaleInPlace(a *ts.Tensor, v float64) error { return scalarInPlace(C.NST_MUL, a, nil, v) }
func divInPlace(a *ts.Tensor, v float64) error   { return scalarInPlace(C.NST_DIV, a, nil, v) }
func plusInPlace(a *ts.Tensor, v float64) error  { return scalarInPlace(C.NST_ADD, a, nil, v) }

// addcInPlace sets a = a + t1*t2, or a + t1/t2 if div (torch's addcmul_ and addcdiv_ with
// value 1).
func addcInPlace(div bool, a, t1, t2 *ts.Tensor) error {
	d := C.int(0)
	if div {
		d = 1
	}
	C.nst_addc_(d, C.tensor(a.Ctensor()), C.tensor(t1.Ctensor()), C.tensor(t2.Ctensor()))
	return lastErr()
}

func addcmulInPlace(a, t1, t2 *ts.Tensor) error { return addcInPlace(false, a, t1, t2) }
func addcdivInPlace(a, t1, t2 *ts.Tensor) error { return addcInPlace(true, a, t1, t2) }

// copyInto copies src's values into dst in place (shapes must match). Unlike gotch's Copy_,
// an error is returned rather than ending the process.
func copyInto(dst, src *ts.Tensor) error {
	C.at_copy_(C.tensor(dst.Ctensor()), C.tensor(src.Ctensor()))
	return lastErr()
}

// Version reports the version of the libtorch this process loaded, found from the shared
// library's location: the wheel layout keeps torch/version.py (and nst's setup writes
// torch/build-version) beside torch/lib; an official libtorch archive has build-version at its
// root. "unknown" if neither is found.
func Version() string {
	lib := loadedLibrary("libtorch_cpu.so")
	if lib == "" {
		return "unknown"
	}
	root := filepath.Dir(filepath.Dir(lib))
	if b, err := os.ReadFile(filepath.Join(root, "build-version")); err == nil {
		return strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile(filepath.Join(root, "version.py")); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "__version__ = "); ok {
				return strings.Trim(strings.TrimSpace(v), `'"`)
			}
		}
	}
	return "unknown"
}

// loadedLibrary returns the path of a shared library mapped into this process.
func loadedLibrary(name string) string {
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 6 && filepath.Base(fields[5]) == name {
			return fields[5]
		}
	}
	return ""
}

// Devices describes the compute devices libtorch can use here, e.g. "cpu (2 threads)" or
// "cpu (16 threads), cuda x2".
func Devices() string {
	s := fmt.Sprintf("cpu (%d threads)", numThreads())
	if gotch.CUDA.IsAvailable() {
		s += fmt.Sprintf(", cuda x%d", gotch.CUDA.DeviceCount())
	}
	return s
}
