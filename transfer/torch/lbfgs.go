package torch

import (
	"errors"
	"math"

	"github.com/sugarme/gotch/ts"

	"github.com/nst-project/nst/transfer"
)

// lbfgs is limited-memory BFGS with a strong-Wolfe line search, the optimiser of Gatys et al.
// gotch has none; this follows torch.optim.LBFGS (line_search_fn="strong_wolfe") one iteration
// per step, so its behaviour is the one PyTorch users know. Vectors are tensors on the
// engine's device; only scalars (dot products) come back to the host.
type lbfgs struct {
	lr            float64
	history       int
	tolGrad       float64 // stop when max |g| is below this
	tolChange     float64 // stop when the step or the loss change is below this
	iter          int
	dirs, steps   []*ts.Tensor // y_i, s_i (owned)
	rho           []float64
	hDiag         float64
	prevGrad      *ts.Tensor // owned
	d             *ts.Tensor // last direction (owned)
	t             float64    // last step length
	converged     bool
	lineSearchMax int
	// firstStep is the first iteration's step rule (transfer.FirstStepTorch, FirstStepNorm or
	// FirstStepCarry); carried is the scaling FirstStepCarry starts from (0: none).
	firstStep string
	carried   float64
}

// errConverged stops the loop early: the gradient or the progress fell below tolerance.
var errConverged = errors.New("converged")

func newLBFGS(lr float64, history int, tol float64, firstStep string) *lbfgs {
	return &lbfgs{lr: lr, history: history, tolGrad: 1e-7, tolChange: tol, hDiag: 1, lineSearchMax: 25, firstStep: firstStep}
}

// point is the objective evaluated somewhere: its value, loss terms, and gradient (owned by
// whoever holds the point).
type point struct {
	f     float64
	parts lossParts
	g     *ts.Tensor
}

// objective evaluates the loss at x0 + t*d and returns a point whose gradient the caller owns.
type objective func(t float64, d *ts.Tensor) (point, error)

func (o *lbfgs) drop() {
	for i := range o.dirs {
		_ = o.dirs[i].Drop()
		_ = o.steps[i].Drop()
	}
	o.dirs, o.steps, o.rho = nil, nil, nil
	for _, t := range []*ts.Tensor{o.prevGrad, o.d} {
		if t != nil {
			_ = t.Drop()
		}
	}
	o.prevGrad, o.d = nil, nil
}

func scalarOf(s *scope, t *ts.Tensor) float64 {
	v := s.values(t)
	if len(v) == 0 {
		return math.NaN()
	}
	return v[0]
}

func absMax(s *scope, t *ts.Tensor) float64 {
	if !s.ok() {
		return math.NaN()
	}
	return scalarOf(s, s.add(s.add(t.Abs(false)).Max(false)))
}

// step runs one iteration from the point cur (at the current x, with its gradient), moving x
// along the quasi-Newton direction by a strong-Wolfe step. It returns the new point (its
// gradient owned by the caller; cur's gradient is released). move(t, d) must set x += t*d.
func (o *lbfgs) step(cur point, eval objective, move func(t float64, d *ts.Tensor) error) (point, error) {
	var s scope
	defer s.drop()
	g := cur.g
	if absMax(&s, g) <= o.tolGrad {
		return cur, errConverged
	}
	o.iter++
	var d *ts.Tensor
	if o.iter == 1 {
		d = s.scale(g, -1)
		o.hDiag = 1
	} else {
		y := s.sub(g, o.prevGrad)
		st := s.scale(o.d, o.t)
		ys := scalarOf(&s, s.dot(y, st))
		if !s.ok() {
			return cur, s.err
		}
		if ys > 1e-10 {
			if len(o.dirs) == o.history {
				_ = o.dirs[0].Drop()
				_ = o.steps[0].Drop()
				o.dirs, o.steps, o.rho = o.dirs[1:], o.steps[1:], o.rho[1:]
			}
			o.dirs = append(o.dirs, s.take(y))
			o.steps = append(o.steps, s.take(st))
			o.rho = append(o.rho, 1/ys)
			o.hDiag = ys / scalarOf(&s, s.dot(y, y))
		}
		// Two-loop recursion: d = -H g.
		n := len(o.dirs)
		al := make([]float64, n)
		q := s.scale(g, -1)
		for i := n - 1; i >= 0; i-- {
			al[i] = scalarOf(&s, s.dot(o.steps[i], q)) * o.rho[i]
			q = s.sub(q, s.scale(o.dirs[i], al[i]))
		}
		r := s.scale(q, o.hDiag)
		for i := 0; i < n; i++ {
			be := scalarOf(&s, s.dot(o.dirs[i], r)) * o.rho[i]
			r = s.addT(r, s.scale(o.steps[i], al[i]-be))
		}
		d = r
	}
	if !s.ok() {
		return cur, s.err
	}
	if o.prevGrad != nil {
		_ = o.prevGrad.Drop()
	}
	o.prevGrad = s.take(s.scale(g, 1)) // a copy: cur.g is released below
	if o.d != nil {
		_ = o.d.Drop()
	}
	o.d = s.take(d)

	t := o.lr
	switch {
	case o.iter == 1 && o.firstStep == transfer.FirstStepCarry && o.carried > 0:
		// The coarser scale's last hDiag (ys/yy, its estimate of the inverse curvature along
		// the steps it took): a 512 px run of fast accepts its first full-size step at 0.022
		// per unit of gradient after 3 evaluations from L-BFGS-B's 2.2e-4, where the 256 px
		// scale ended with hDiag 0.021 (docs/BENCHMARKS.md section 2, firstStep: carry).
		t = o.lr * o.carried
	case o.iter == 1 && (o.firstStep == transfer.FirstStepNorm || o.firstStep == transfer.FirstStepCarry):
		// L-BFGS-B's first step (Byrd, Lu, Nocedal and Zhu; SciPy's): a move of lr in
		// Euclidean norm. Torch's below moves no value of a 512 px image more than ~4e-6
		// where the line search accepts ~0.2, and the search grows it 10x an evaluation: 7
		// evaluations, against 4 from here (random weights; docs/BENCHMARKS.md section 2).
		t = o.lr / math.Sqrt(scalarOf(&s, s.dot(g, g)))
	case o.iter == 1:
		l1 := scalarOf(&s, s.sum(s.add(g.Abs(false))))
		t = math.Min(1, 1/l1) * o.lr
	}
	gtd := scalarOf(&s, s.dot(g, o.d))
	if !s.ok() {
		return cur, s.err
	}
	if gtd > -o.tolChange {
		return cur, errConverged
	}
	next, tt, err := o.strongWolfe(eval, t, o.d, cur, gtd)
	// torch.optim.LBFGS would stop here; nst lengthens a first step that changed nothing.
	// Its length, lr/sum|g|, shrinks with the image's size, and where the objective sees x
	// rounded (bf16 VGG19 sees it to 2^-7 between 1 and 2) no value of a 512 px image moves
	// more than ~4e-6: the loss cannot move and the search gives up at step 1
	// (TestLBFGSFirstStepUnderRounding). Ten times longer per try, up to lr (the length torch
	// takes when sum|g| < 1). Where torch's first step makes progress, as in the parity
	// tests, nothing here runs.
	for o.iter == 1 && errors.Is(err, errConverged) && t*10 <= o.lr {
		t *= 10
		next, tt, err = o.strongWolfe(eval, t, o.d, cur, gtd)
	}
	if err != nil {
		return cur, err
	}
	o.t = tt
	if err := move(tt, o.d); err != nil {
		_ = next.g.Drop()
		return cur, err
	}
	_ = cur.g.Drop()
	if math.Abs(next.f-cur.f) < o.tolChange || absMax(&s, o.d)*math.Abs(tt) <= o.tolChange {
		o.converged = true
	}
	return next, s.err
}

// cubicInterpolate is the minimiser of the cubic through (x1, f1, g1) and (x2, f2, g2),
// clamped to bounds (torch.optim.lbfgs._cubic_interpolate).
func cubicInterpolate(x1, f1, g1, x2, f2, g2 float64, bounds *[2]float64) float64 {
	lo, hi := math.Min(x1, x2), math.Max(x1, x2)
	if bounds != nil {
		lo, hi = bounds[0], bounds[1]
	}
	d1 := g1 + g2 - 3*(f1-f2)/(x1-x2)
	d2sq := d1*d1 - g1*g2
	if d2sq >= 0 {
		d2 := math.Sqrt(d2sq)
		var minPos float64
		if x1 <= x2 {
			minPos = x2 - (x2-x1)*((g2+d2-d1)/(g2-g1+2*d2))
		} else {
			minPos = x1 - (x1-x2)*((g1+d2-d1)/(g1-g2+2*d2))
		}
		return math.Min(math.Max(minPos, lo), hi)
	}
	return (lo + hi) / 2
}

// strongWolfe finds a step length t along d satisfying the strong Wolfe conditions
// (torch.optim.lbfgs._strong_wolfe, c1 = 1e-4, c2 = 0.9). It returns the chosen point (its
// gradient owned by the caller) and t. Points it does not return are freed.
func (o *lbfgs) strongWolfe(eval objective, t float64, d *ts.Tensor, start point, gtd float64) (point, float64, error) {
	const c1, c2 = 1e-4, 0.9
	var s scope
	defer s.drop()
	dNorm := absMax(&s, d)
	if !s.ok() {
		return point{}, 0, s.err
	}
	var held []*ts.Tensor // gradients of points evaluated here, freed unless returned
	defer func() {
		for _, g := range held {
			if g != nil {
				_ = g.Drop()
			}
		}
	}()
	evalAt := func(t float64) (point, float64, error) {
		p, err := eval(t, d)
		if err != nil {
			return p, 0, err
		}
		held = append(held, p.g)
		var ss scope
		defer ss.drop()
		gd := scalarOf(&ss, ss.dot(p.g, d))
		return p, gd, ss.err
	}
	keep := func(p point) point { // hand p's gradient to the caller
		for i, g := range held {
			if g == p.g {
				held[i] = nil
			}
		}
		return p
	}
	if !start.parts.finite() {
		return point{}, 0, transfer.ErrNonFinite
	}

	cur, gtdNew, err := evalAt(t)
	if err != nil {
		return point{}, 0, err
	}
	tPrev, prev, gtdPrev := 0.0, start, gtd
	type end struct {
		t   float64
		p   point
		gtd float64
	}
	var bracket []end
	done := false
	lsIter := 0
	for lsIter < o.lineSearchMax {
		if !cur.parts.finite() {
			// Overshot into overflow: treat as a failed sufficient-decrease test.
			bracket = []end{{tPrev, prev, gtdPrev}, {t, cur, math.Inf(1)}}
			break
		}
		if cur.f > start.f+c1*t*gtd || (lsIter > 1 && cur.f >= prev.f) {
			bracket = []end{{tPrev, prev, gtdPrev}, {t, cur, gtdNew}}
			break
		}
		if math.Abs(gtdNew) <= -c2*gtd {
			bracket = []end{{t, cur, gtdNew}}
			done = true
			break
		}
		if gtdNew >= 0 {
			bracket = []end{{tPrev, prev, gtdPrev}, {t, cur, gtdNew}}
			break
		}
		minStep, maxStep := t+0.01*(t-tPrev), t*10
		tmp := t
		t = cubicInterpolate(tPrev, prev.f, gtdPrev, t, cur.f, gtdNew, &[2]float64{minStep, maxStep})
		tPrev, prev, gtdPrev = tmp, cur, gtdNew
		cur, gtdNew, err = evalAt(t)
		if err != nil {
			return point{}, 0, err
		}
		lsIter++
	}
	if lsIter == o.lineSearchMax {
		bracket = []end{{0, start, gtd}, {t, cur, gtdNew}}
	}
	// Zoom.
	insufProgress := false
	low, high := 0, 1
	if len(bracket) == 2 && bracket[0].p.f > bracket[1].p.f {
		low, high = 1, 0
	}
	for !done && lsIter < o.lineSearchMax && len(bracket) == 2 {
		if math.Abs(bracket[1].t-bracket[0].t)*dNorm < o.tolChange {
			break
		}
		b0, b1 := bracket[0], bracket[1]
		t = cubicInterpolate(b0.t, b0.p.f, b0.gtd, b1.t, b1.p.f, b1.gtd, nil)
		bmax, bmin := math.Max(b0.t, b1.t), math.Min(b0.t, b1.t)
		eps := 0.1 * (bmax - bmin)
		if math.Min(bmax-t, t-bmin) < eps {
			if insufProgress || t >= bmax || t <= bmin {
				if math.Abs(t-bmax) < math.Abs(t-bmin) {
					t = bmax - eps
				} else {
					t = bmin + eps
				}
				insufProgress = false
			} else {
				insufProgress = true
			}
		} else {
			insufProgress = false
		}
		cur, gtdNew, err = evalAt(t)
		if err != nil {
			return point{}, 0, err
		}
		lsIter++
		if !cur.parts.finite() || cur.f > start.f+c1*t*gtd || cur.f >= bracket[low].p.f {
			bracket[high] = end{t, cur, gtdNew}
			if bracket[0].p.f <= bracket[1].p.f {
				low, high = 0, 1
			} else {
				low, high = 1, 0
			}
		} else {
			if math.Abs(gtdNew) <= -c2*gtd {
				done = true
			} else if gtdNew*(bracket[high].t-bracket[low].t) >= 0 {
				bracket[high] = bracket[low]
			}
			bracket[low] = end{t, cur, gtdNew}
		}
	}
	best := bracket[0]
	if len(bracket) == 2 {
		best = bracket[low]
	}
	if best.p.g == start.g {
		// No step improved on the start: nothing moves (t = 0), and the caller keeps start.
		return start, 0, errConverged
	}
	return keep(best.p), best.t, nil
}
