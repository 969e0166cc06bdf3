package torch

import (
	"math"

	"github.com/sugarme/gotch/ts"
)

// adam is torch.optim.Adam (PyTorch 2.1, single-tensor path, no weight decay, no amsgrad) with
// its state in plain tensors, so it can be checkpointed and resumed, and run with the same
// in-place operations in the same order as PyTorch's:
//
//	m.lerp_(g, 1-b1)                         exp_avg.lerp_(grad, 1 - beta1)
//	v.mul_(b2).addcmul_((1-b2)*g, g)         exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
//	denom = (sqrt(v) / sqrt(1-b2^t)).add_(eps)
//	x.addcdiv_((-lr/(1-b1^t))*m, denom)      param.addcdiv_(exp_avg, denom, value=-step_size)
//
// gotch's addcmul_ and addcdiv_ take no value, so the value multiplies the first operand
// first, which is the product PyTorch's kernels form first too. In place, a step makes three
// temporaries where it made thirteen; each gotch tensor costs Go a lock, a map entry, a name
// and a finalizer on top of libtorch's work (docs/BENCHMARKS.md, section 1).
// gotch's own optimisers (libtorch's C++ Adam) keep their state out of reach.
type adam struct {
	lr, beta1, beta2, eps float64
	t                     int
	m, v                  *ts.Tensor // owned; nil until the first step
}

func newAdam(lr float64) *adam {
	return &adam{lr: lr, beta1: 0.9, beta2: 0.999, eps: 1e-8}
}

// step updates x in place from its gradient g, and m and v in place. Temporaries are freed.
func (a *adam) step(x, g *ts.Tensor) error {
	var s scope
	defer s.drop()
	if a.m == nil {
		a.m = s.take(s.add(g.ZerosLike(false)))
		a.v = s.take(s.add(g.ZerosLike(false)))
		if !s.ok() {
			return s.err
		}
	}
	a.t++
	bc1 := 1 - math.Pow(a.beta1, float64(a.t))
	bc2 := 1 - math.Pow(a.beta2, float64(a.t))
	if err := lerpInPlace(a.m, g, 1-a.beta1); err != nil {
		return torchErr("adam m", err)
	}
	if err := scaleInPlace(a.v, a.beta2); err != nil {
		return torchErr("adam v", err)
	}
	gs := s.scale(g, 1-a.beta2)
	if !s.ok() {
		return s.err
	}
	if err := addcmulInPlace(a.v, gs, g); err != nil {
		return torchErr("adam v", err)
	}
	denom := s.sqrt(a.v)
	step := s.scale(a.m, -a.lr/bc1)
	xd := s.detach(x) // x is a leaf that requires grad; its detached alias may change in place
	if !s.ok() {
		return s.err
	}
	if err := divInPlace(denom, math.Sqrt(bc2)); err != nil {
		return torchErr("adam denom", err)
	}
	if err := plusInPlace(denom, a.eps); err != nil {
		return torchErr("adam denom", err)
	}
	if err := addcdivInPlace(xd, step, denom); err != nil {
		return torchErr("adam update", err)
	}
	return nil
}

// drop frees the state.
func (a *adam) drop() {
	if a.m != nil {
		_ = a.m.Drop()
		_ = a.v.Drop()
		a.m, a.v = nil, nil
	}
}
