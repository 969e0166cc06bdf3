package torch

import (
	"fmt"
	"image"
	"math"

	"github.com/sugarme/gotch/ts"

	"github.com/nst-project/nst/transfer"
)

// ImageNet statistics used by torchvision's VGG19 (and the seed's transforms.Normalize).
var (
	imagenetMean = [3]float32{0.485, 0.456, 0.406}
	imagenetStd  = [3]float32{0.229, 0.224, 0.225}
)

// normalise turns an image into 3 x h x w float32 values as torchvision's ToTensor then
// Normalize do: v/255 in float32, then (v - mean) / std in float32, the seed's operations in
// its order (TestLoadBothFormatsAndForward: the first values equal torchvision's, the sums
// within 1e-6).
func normalise(img *image.NRGBA) []float32 {
	w, h := img.Rect.Dx(), img.Rect.Dy()
	out := make([]float32, 3*w*h)
	for y := 0; y < h; y++ {
		row := img.Pix[img.PixOffset(img.Rect.Min.X, img.Rect.Min.Y+y):]
		for x := 0; x < w; x++ {
			for c := 0; c < 3; c++ {
				v := float32(row[4*x+c]) / 255
				out[(c*h+y)*w+x] = (v - imagenetMean[c]) / imagenetStd[c]
			}
		}
	}
	return out
}

// denormalise is the inverse, clamped to [0, 1] and rounded to 8 bits (the seed's im_convert,
// then the usual *255 rounding a PNG needs).
func denormalise(data []float32, w, h int) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			p := img.Pix[img.PixOffset(x, y):]
			for c := 0; c < 3; c++ {
				v := float64(data[(c*h+y)*w+x])*float64(imagenetStd[c]) + float64(imagenetMean[c])
				v = math.Min(1, math.Max(0, v))
				p[c] = uint8(math.Floor(v*255 + 0.5))
			}
			p[3] = 0xff
		}
	}
	return img
}

// lossParts are one image's loss terms (unweighted) and the weighted total.
type lossParts struct {
	content, style, tv, total float64
}

func (l lossParts) finite() bool {
	for _, v := range []float64{l.content, l.style, l.tv, l.total} {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return false
		}
	}
	return true
}

// problem is one scale's objective: the targets and weights the loss compares an image with.
type problem struct {
	m      *vgg
	params transfer.Params
	want   map[string]bool
	// content is the content image's features at params.ContentLayer, (1, C, H, W).
	content *ts.Tensor
	// grams[k][layer] is style k's Gram matrix at a style layer, (1, d, d).
	grams []map[string]*ts.Tensor
	blend []float64
}

// gram returns F·Fᵀ for each image of a (B, d, h, w) activation: (B, d, d), as the seed's
// gram_matrix does (view(d, h*w), then mm with its transpose) for each image.
//
// It is mm per image, not one bmm: mm's backward computes the gradient of its transposed
// operand in that operand's layout, so the two gradients of F add up as contiguous tensors;
// bmm's backward returns it transposed, and summing a transposed 64 x 16384 gradient into F's
// is a strided copy. Forward and backward of one 1x64x128x128 Gram took 5.4 ms with mm and
// 6.5 ms with bmm, 17 and 27 ms at 256 px (bench/gram.py): the largest difference in
// libtorch work between nst's step and the seed's (docs/BENCHMARKS.md, section 1). Several
// images are unbound, each multiplied, and stacked (unbind's backward is one stack), so each
// image's Gram is computed as in a lone run.
func gram(s *scope, f *ts.Tensor) *ts.Tensor {
	if !s.ok() {
		return nil
	}
	size, err := f.Size()
	if err != nil {
		s.err = torchErr("size", err)
		return nil
	}
	b, d, hw := size[0], size[1], size[2]*size[3]
	if b == 1 {
		flat := s.view(f, d, hw)
		return s.view(s.mm(flat, s.transpose(flat, 0, 1)), 1, d, d)
	}
	rows := s.unbind(s.view(f, b, d, hw), 0)
	gs := make([]*ts.Tensor, len(rows))
	for i, r := range rows {
		gs[i] = s.mm(r, s.transpose(r, 0, 1))
	}
	return s.stack(0, gs...)
}

// newProblem computes the targets of one scale, without building an autograd graph (no input
// requires grad). Style targets come from the engine's cache when the request names its styles.
func (r *run) newProblem(s *scope, plan scalePlan) *problem {
	p := r.req.Params
	m, err := r.e.model(p)
	if err != nil {
		s.err = err
		return nil
	}
	pr := &problem{m: m, params: p, blend: r.blend, want: map[string]bool{p.ContentLayer: true}}
	for _, l := range p.StyleLayers {
		pr.want[l.Layer] = true
	}
	dev := r.e.dev
	w, h := plan.content.Rect.Dx(), plan.content.Rect.Dy()
	var tmp scope
	defer tmp.drop()
	c := tmp.fromFloat32(normalise(plan.content), dev, 1, 3, int64(h), int64(w))
	if !tmp.ok() {
		s.err = tmp.err
		return nil
	}
	feats := m.forward(&tmp, c, map[string]bool{p.ContentLayer: true})
	if !tmp.ok() {
		s.err = tmp.err
		return nil
	}
	pr.content = s.add(tmp.take(feats[p.ContentLayer]), nil)

	for k, style := range plan.styles {
		key := ""
		if len(r.req.StyleKeys) > 0 {
			key = fmt.Sprintf("%s|%dx%d|%s|%s", r.req.StyleKeys[k], style.Rect.Dx(), style.Rect.Dy(), deviceName(dev), p.Precision)
		}
		grams := map[string]*ts.Tensor{}
		if cached, ok := r.e.styles.get(key); ok && key != "" && hasLayers(cached, p.StyleLayers) {
			for _, l := range p.StyleLayers {
				g := cached[l.Layer]
				grams[l.Layer] = s.fromFloat32(g.data, dev, 1, g.d, g.d)
			}
		} else {
			sw, sh := style.Rect.Dx(), style.Rect.Dy()
			st := tmp.fromFloat32(normalise(style), dev, 1, 3, int64(sh), int64(sw))
			want := map[string]bool{}
			for _, l := range p.StyleLayers {
				want[l.Layer] = true
			}
			sf := m.forward(&tmp, st, want)
			host := map[string]hostGram{}
			for _, l := range p.StyleLayers {
				// Computed in tmp, so the views it makes (which pin the activations) go with it.
				g := s.add(tmp.take(gram(&tmp, sf[l.Layer])), nil)
				grams[l.Layer] = g
				if key != "" && s.ok() {
					size, _ := g.Size()
					host[l.Layer] = hostGram{d: size[1], data: tmp.float32s(g)}
				}
			}
			if key != "" && s.ok() && tmp.ok() {
				r.e.styles.put(key, host)
			}
		}
		pr.grams = append(pr.grams, grams)
	}
	if s.ok() && !tmp.ok() {
		s.err = tmp.err
	}
	return pr
}

func hasLayers(g map[string]hostGram, layers []transfer.LayerWeight) bool {
	for _, l := range layers {
		if _, ok := g[l.Layer]; !ok {
			return false
		}
	}
	return true
}

// losses computes the loss terms of x (B, 3, H, W) as tensors of B values each, in the seed's
// order of operations:
//
//	content = mean((F - Fc)^2) at the content layer
//	style   = sum over layers l of w_l * mean((G_l - Gs_l)^2) / (d*h*w)   (blended over styles)
//	tv      = mean((x[..., 1:, :] - x[..., :-1, :])^2) + mean((x[..., 1:] - x[..., :-1])^2)
//	total   = alpha*content + beta*style (+ tvWeight*tv)
func (pr *problem) losses(s *scope, x *ts.Tensor) (content, style, tv, total *ts.Tensor) {
	feats := pr.m.forward(s, x, pr.want)
	if !s.ok() {
		return
	}
	p := pr.params
	content = s.meanAll(s.square(s.sub(feats[p.ContentLayer], pr.content)))

	for _, l := range p.StyleLayers {
		f := feats[l.Layer]
		if !s.ok() {
			return
		}
		size, err := f.Size()
		if err != nil {
			s.err = torchErr("size", err)
			return
		}
		dhw := float64(size[1] * size[2] * size[3])
		g := gram(s, f)
		for k, grams := range pr.grams {
			layer := s.scale(s.meanAll(s.square(s.sub(g, grams[l.Layer]))), l.Weight)
			if len(pr.grams) > 1 {
				layer = s.scale(layer, pr.blend[k])
			}
			layer = s.divBy(layer, dhw)
			if style == nil {
				style = layer
			} else {
				style = s.addT(style, layer)
			}
		}
	}
	total = s.addT(s.scale(content, p.ContentWeight), s.scale(style, p.StyleWeight))
	if p.TVWeight > 0 {
		tvT := tvLoss(s, x)
		tv = s.detach(tvT)
		total = s.addT(total, s.scale(tvT, p.TVWeight))
	} else {
		// Only logged: computed off the autograd graph (the seed has no such term), so it
		// records no backward nodes and keeps none of its differences alive.
		tv = tvLoss(s, s.detach(x))
	}
	return
}

// tvLoss is the total-variation term: mean squared difference of vertical and of horizontal
// neighbours, per image.
func tvLoss(s *scope, x *ts.Tensor) *ts.Tensor {
	if !s.ok() {
		return nil
	}
	size, err := x.Size()
	if err != nil {
		s.err = torchErr("size", err)
		return nil
	}
	h, w := size[2], size[3]
	dv := s.sub(s.narrow(x, 2, 1, h-1), s.narrow(x, 2, 0, h-1))
	dh := s.sub(s.narrow(x, 3, 1, w-1), s.narrow(x, 3, 0, w-1))
	return s.addT(s.meanAll(s.square(dv)), s.meanAll(s.square(dh)))
}

// eval computes the losses at x and, if grad is true, d(sum of totals)/dx. The gradient belongs
// to s. x must require grad when grad is true.
func (pr *problem) eval(s *scope, x *ts.Tensor, grad bool) ([]lossParts, *ts.Tensor) {
	c, st, tv, total := pr.losses(s, x)
	if !s.ok() {
		return nil, nil
	}
	vals := s.values(s.stack(0, s.detach(c), s.detach(st), tv, s.detach(total)))
	if !s.ok() {
		return nil, nil
	}
	b := len(vals) / 4
	parts := make([]lossParts, b)
	for i := range parts {
		parts[i] = lossParts{content: vals[i], style: vals[b+i], tv: vals[2*b+i], total: vals[3*b+i]}
	}
	if !grad {
		return parts, nil
	}
	sum := s.sum(total)
	if !s.ok() {
		return nil, nil
	}
	g, err := ts.RunBackward([]*ts.Tensor{sum}, []*ts.Tensor{x}, false, false)
	if err != nil {
		s.err = torchErr("backward", err)
		return nil, nil
	}
	return parts, s.add(g[0], nil)
}

// upsample resizes an image tensor (1, 3, h, w) bilinearly, for the next pyramid level.
func upsample(s *scope, x *ts.Tensor, w, h int) *ts.Tensor {
	if !s.ok() {
		return nil
	}
	return s.add(x.UpsampleBilinear2d([]int64{int64(h), int64(w)}, false, nil, nil, false))
}
