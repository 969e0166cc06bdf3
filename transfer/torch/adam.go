package torch

import (
	"math"

	"github.com/sugarme/gotch/ts"
)

// adam is torch.optim.Adam (PyTorch 2.1, single-tensor path, no weight decay, no amsgrad) with
// its state in plain tensors, so it can be checkpointed and resumed, and written with the same
// operations in the same order so results match PyTorch's to rounding:
//
//	m = m.lerp(g, 1-b1)                      exp_avg.lerp_(grad, 1 - beta1)
//	v = v*b2 + (1-b2)*g*g                    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
//	denom = sqrt(v) / sqrt(1-b2^t) + eps
//	x = x + (-lr/(1-b1^t)) * m / denom       param.addcdiv_(exp_avg, denom, value=-step_size)
//
// gotch's own optimisers (libtorch's C++ Adam) keep their state out of reach.
type adam struct {
	lr, beta1, beta2, eps float64
	t                     int
	m, v                  *ts.Tensor // owned; nil until the first step
}

func newAdam(lr float64) *adam {
	return &adam{lr: lr, beta1: 0.9, beta2: 0.999, eps: 1e-8}
}

// step updates x in place from its gradient g. Temporaries are freed; m and v are replaced.
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
	// lerp with weight w < 0.5 is m + w*(g - m): written out, as gotch's Lerp allocates a Scalar.
	m := s.addT(a.m, s.scale(s.sub(g, a.m), 1-a.beta1))
	v := s.addT(s.scale(a.v, a.beta2), s.mul(s.scale(g, 1-a.beta2), g))
	bc1 := 1 - math.Pow(a.beta1, float64(a.t))
	bc2 := 1 - math.Pow(a.beta2, float64(a.t))
	denom := s.plus(s.divBy(s.sqrt(v), math.Sqrt(bc2)), a.eps)
	xd := s.detach(x)
	next := s.addT(xd, s.div(s.scale(m, -a.lr/bc1), denom))
	if !s.ok() {
		return s.err
	}
	if err := copyInto(xd, next); err != nil {
		return torchErr("adam update", err)
	}
	_ = a.m.Drop()
	_ = a.v.Drop()
	a.m, a.v = s.take(m), s.take(v)
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
