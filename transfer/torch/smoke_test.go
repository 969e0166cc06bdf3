package torch

import (
	"math"
	"runtime"
	"testing"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// TestSmokeConvReluPoolGradient runs conv2d -> relu -> maxpool through gotch on a fixed input
// and checks the forward values against a direct computation in Go, and the gradient of
// sum(output^2) with respect to the input image against central finite differences.
func TestSmokeConvReluPoolGradient(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	const c, h, w, k = 2, 6, 6, 3 // input channels, size; kernel 3x3, 2 output channels
	in := make([]float64, c*h*w)
	for i := range in {
		in[i] = math.Sin(float64(i)*0.37) + 0.1
	}
	wt := make([]float64, 2*c*k*k)
	for i := range wt {
		wt[i] = math.Cos(float64(i)*0.53) * 0.5
	}
	bias := []float64{0.05, -0.1}

	// Reference forward in plain Go: conv (padding 1), relu, 2x2 max pool; loss = sum(out^2).
	ref := func(x []float64) ([]float64, float64) {
		conv := make([]float64, 2*h*w)
		for o := 0; o < 2; o++ {
			for y := 0; y < h; y++ {
				for xx := 0; xx < w; xx++ {
					s := bias[o]
					for ci := 0; ci < c; ci++ {
						for ky := 0; ky < k; ky++ {
							for kx := 0; kx < k; kx++ {
								iy, ix := y+ky-1, xx+kx-1
								if iy < 0 || iy >= h || ix < 0 || ix >= w {
									continue
								}
								s += wt[((o*c+ci)*k+ky)*k+kx] * x[(ci*h+iy)*w+ix]
							}
						}
					}
					conv[(o*h+y)*w+xx] = math.Max(s, 0)
				}
			}
		}
		out := make([]float64, 2*(h/2)*(w/2))
		var loss float64
		for o := 0; o < 2; o++ {
			for y := 0; y < h/2; y++ {
				for xx := 0; xx < w/2; xx++ {
					m := math.Inf(-1)
					for dy := 0; dy < 2; dy++ {
						for dx := 0; dx < 2; dx++ {
							m = math.Max(m, conv[(o*h+2*y+dy)*w+2*xx+dx])
						}
					}
					out[(o*(h/2)+y)*(w/2)+xx] = m
					loss += m * m
				}
			}
		}
		return out, loss
	}

	x, err := ts.NewTensorFromData(in, []int64{1, c, h, w})
	if err != nil {
		t.Fatal(err)
	}
	defer x.MustDrop()
	if err := requiresGrad(x, true); err != nil {
		t.Fatal(err)
	}
	wT := ts.MustOfSlice(wt).MustView([]int64{2, c, k, k}, true)
	defer wT.MustDrop()
	bT := ts.MustOfSlice(bias)
	defer bT.MustDrop()

	conv, err := ts.Conv2d(x, wT, bT, []int64{1, 1}, []int64{1, 1}, []int64{1, 1}, 1)
	if err != nil {
		t.Fatal(err)
	}
	relu, err := conv.Relu(true)
	if err != nil {
		t.Fatal(err)
	}
	pooled, err := relu.MaxPool2d([]int64{2, 2}, []int64{2, 2}, []int64{0, 0}, []int64{1, 1}, false, true)
	if err != nil {
		t.Fatal(err)
	}
	defer pooled.MustDrop()
	loss, err := pooled.Square(false)
	if err != nil {
		t.Fatal(err)
	}
	loss, err = loss.Sum(gotch.Double, true)
	if err != nil {
		t.Fatal(err)
	}
	defer loss.MustDrop()

	wantOut, wantLoss := ref(in)
	gotOut := values(t, pooled)
	for i := range wantOut {
		if math.Abs(gotOut[i]-wantOut[i]) > 1e-9 {
			t.Fatalf("forward[%d] = %v, want %v", i, gotOut[i], wantOut[i])
		}
	}
	if got := values(t, loss)[0]; math.Abs(got-wantLoss) > 1e-9*math.Max(1, wantLoss) {
		t.Fatalf("loss = %v, want %v", got, wantLoss)
	}

	grads, err := ts.RunBackward([]*ts.Tensor{loss}, []*ts.Tensor{x}, false, false)
	if err != nil {
		t.Fatal(err)
	}
	defer grads[0].MustDrop()
	got := values(t, grads[0])

	const eps = 1e-6
	for i := range in {
		p := append([]float64(nil), in...)
		p[i] += eps
		_, lp := ref(p)
		p[i] -= 2 * eps
		_, lm := ref(p)
		fd := (lp - lm) / (2 * eps)
		if math.Abs(got[i]-fd) > 1e-5*math.Max(1, math.Abs(fd)) {
			t.Errorf("d loss / d x[%d] = %v, finite difference %v", i, got[i], fd)
		}
	}
}

func values(t *testing.T, x *ts.Tensor) []float64 {
	t.Helper()
	d, err := x.Totype(gotch.Double, false)
	if err != nil {
		t.Fatal(err)
	}
	defer d.MustDrop()
	out := make([]float64, d.Numel())
	if err := d.CopyData(out, d.Numel()); err != nil {
		t.Fatal(err)
	}
	return out
}
