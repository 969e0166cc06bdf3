package torch

import (
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// scope owns the tensors made by a run of ops (typically one optimiser step) and remembers the
// first error, so a chain of ops reads as the maths it computes and is freed in one place:
//
//	s := &scope{}
//	defer s.drop()
//	d := s.sub(a, b)
//	l := s.mean(s.square(d))
//	if s.err != nil { ... }
//
// After an error every op is a no-op returning nil. Tensor memory lives in C++ (or on the GPU)
// where Go's GC cannot see it, so nothing is left to finalizers: drop frees everything the
// scope still owns, and take hands a tensor over to the caller.
type scope struct {
	owned []*ts.Tensor
	err   error
}

// add records t (the result of an op that returned err) as owned by s.
func (s *scope) add(t *ts.Tensor, err error) *ts.Tensor {
	if err != nil {
		if s.err == nil {
			s.err = torchErr("libtorch", err)
		}
		return nil
	}
	if t != nil {
		s.owned = append(s.owned, t)
	}
	return t
}

// take removes t from s, so drop leaves it alone; the caller now owns it.
func (s *scope) take(t *ts.Tensor) *ts.Tensor {
	for i := len(s.owned) - 1; i >= 0; i-- {
		if s.owned[i] == t {
			s.owned = append(s.owned[:i], s.owned[i+1:]...)
			break
		}
	}
	return t
}

// drop frees every tensor s owns.
func (s *scope) drop() {
	for _, t := range s.owned {
		_ = t.Drop()
	}
	s.owned = s.owned[:0]
}

// ok reports whether every op so far succeeded (and so no operand is nil).
func (s *scope) ok() bool { return s.err == nil }

func (s *scope) sub(a, b *ts.Tensor) *ts.Tensor {
	if !s.ok() {
		return nil
	}
	return s.add(a.Sub(b, false))
}

func (s *scope) addT(a, b *ts.Tensor) *ts.Tensor {
	if !s.ok() {
		return nil
	}
	return s.add(a.Add(b, false))
}

func (s *scope) mul(a, b *ts.Tensor) *ts.Tensor {
	if !s.ok() {
		return nil
	}
	return s.add(a.Mul(b, false))
}

// scale multiplies by a number. The number is passed to libtorch as a double Scalar, which it
// converts to the tensor's type, as PyTorch does for `0.8 * tensor`.
func (s *scope) scale(a *ts.Tensor, v float64) *ts.Tensor {
	if !s.ok() {
		return nil
	}
	sc := ts.FloatScalar(v)
	defer sc.MustDrop()
	return s.add(a.MulScalar(sc, false))
}

// divBy divides by a number (PyTorch's `tensor / n`).
func (s *scope) divBy(a *ts.Tensor, v float64) *ts.Tensor {
	if !s.ok() {
		return nil
	}
	sc := ts.FloatScalar(v)
	defer sc.MustDrop()
	return s.add(a.DivScalar(sc, false))
}

// plus adds a number.
func (s *scope) plus(a *ts.Tensor, v float64) *ts.Tensor {
	if !s.ok() {
		return nil
	}
	sc := ts.FloatScalar(v)
	defer sc.MustDrop()
	return s.add(a.AddScalar(sc, false))
}

func (s *scope) square(a *ts.Tensor) *ts.Tensor {
	if !s.ok() {
		return nil
	}
	return s.add(a.Square(false))
}

func (s *scope) sqrt(a *ts.Tensor) *ts.Tensor {
	if !s.ok() {
		return nil
	}
	return s.add(a.Sqrt(false))
}

// meanAll is the mean over every element except the batch dimension 0: one value per image.
func (s *scope) meanAll(a *ts.Tensor) *ts.Tensor {
	if !s.ok() {
		return nil
	}
	size, err := a.Size()
	if err != nil {
		s.err = torchErr("size", err)
		return nil
	}
	dims := make([]int64, 0, len(size)-1)
	for d := 1; d < len(size); d++ {
		dims = append(dims, int64(d))
	}
	return s.add(a.MeanDim(dims, false, gotch.Float, false))
}

// sum adds every element (a 0-dim result).
func (s *scope) sum(a *ts.Tensor) *ts.Tensor {
	if !s.ok() {
		return nil
	}
	return s.add(a.Sum(a.DType(), false))
}

func (s *scope) view(a *ts.Tensor, shape ...int64) *ts.Tensor {
	if !s.ok() {
		return nil
	}
	return s.add(a.View(shape, false))
}

func (s *scope) transpose(a *ts.Tensor, d0, d1 int64) *ts.Tensor {
	if !s.ok() {
		return nil
	}
	return s.add(a.Transpose(d0, d1, false))
}

func (s *scope) mm(a, b *ts.Tensor) *ts.Tensor {
	if !s.ok() {
		return nil
	}
	return s.add(a.Mm(b, false))
}

// unbind splits a along dim into views. gotch's Unbind does not free the C array of handles
// libtorch returns (8 bytes per view and one more), a leak of the same order as every gotch
// op's 32 bytes.
func (s *scope) unbind(a *ts.Tensor, dim int64) []*ts.Tensor {
	if !s.ok() {
		return nil
	}
	parts, err := a.Unbind(dim)
	if err != nil {
		s.err = torchErr("unbind", err)
		return nil
	}
	for _, p := range parts {
		s.add(p, nil)
	}
	return parts
}

func (s *scope) narrow(a *ts.Tensor, dim, start, length int64) *ts.Tensor {
	if !s.ok() {
		return nil
	}
	return s.add(a.Narrow(dim, start, length, false))
}

func (s *scope) detach(a *ts.Tensor) *ts.Tensor {
	if !s.ok() {
		return nil
	}
	return s.add(a.Detach(false))
}

func (s *scope) stack(dim int64, xs ...*ts.Tensor) *ts.Tensor {
	if !s.ok() {
		return nil
	}
	return s.add(ts.Stack(xs, dim))
}

// cat concatenates tensors along dim.
func (s *scope) cat(dim int64, xs ...*ts.Tensor) *ts.Tensor {
	if !s.ok() {
		return nil
	}
	return s.add(ts.Cat(xs, dim))
}

// dot is the inner product of two tensors of equal shape, as a 0-dim tensor.
func (s *scope) dot(a, b *ts.Tensor) *ts.Tensor {
	if !s.ok() {
		return nil
	}
	fa := s.add(a.Flatten(0, -1, false))
	fb := s.add(b.Flatten(0, -1, false))
	if !s.ok() {
		return nil
	}
	return s.add(fa.Dot(fb, false))
}

// values copies a tensor's values to the host as float64.
func (s *scope) values(a *ts.Tensor) []float64 {
	if !s.ok() {
		return nil
	}
	d := s.add(a.Totype(gotch.Double, false))
	if !s.ok() {
		return nil
	}
	if dev, err := d.Device(); err == nil && dev.IsCuda() {
		d = s.add(d.To(gotch.CPU, false))
		if !s.ok() {
			return nil
		}
	}
	out := make([]float64, d.Numel())
	if err := d.CopyData(out, d.Numel()); err != nil {
		s.err = torchErr("copy to host", err)
		return nil
	}
	return out
}

// float32s copies a tensor's values to the host as float32.
func (s *scope) float32s(a *ts.Tensor) []float32 {
	if !s.ok() {
		return nil
	}
	d := s.add(a.Totype(gotch.Float, false))
	if !s.ok() {
		return nil
	}
	d = s.add(d.To(gotch.CPU, false))
	if !s.ok() {
		return nil
	}
	out := make([]float32, d.Numel())
	if err := d.CopyData(out, d.Numel()); err != nil {
		s.err = torchErr("copy to host", err)
		return nil
	}
	return out
}

// fromFloat32 makes a tensor of the given shape from host values, on dev.
func (s *scope) fromFloat32(data []float32, dev gotch.Device, shape ...int64) *ts.Tensor {
	if !s.ok() {
		return nil
	}
	t := s.add(ts.NewTensorFromData(data, shape))
	if !s.ok() || dev == gotch.CPU {
		return t
	}
	return s.add(t.To(dev, false))
}

// channelsLast returns a's values in channels-last (NHWC) memory order, still indexed as
// (N, C, H, W): libtorch's ChannelsLast memory format, which its convolutions detect from the
// strides. gotch has no memory-format argument, so this permutes to NHWC, makes that contiguous
// and permutes the view back; the result is differentiable (its backward is a copy).
func (s *scope) channelsLast(a *ts.Tensor) *ts.Tensor {
	if !s.ok() {
		return nil
	}
	nhwc := s.add(a.Permute([]int64{0, 2, 3, 1}, false))
	if !s.ok() {
		return nil
	}
	packed := s.add(nhwc.Contiguous(false))
	if !s.ok() {
		return nil
	}
	return s.add(packed.Permute([]int64{0, 3, 1, 2}, false))
}
