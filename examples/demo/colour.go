package demo

import (
	"image"

	"github.com/nst-project/nst/transfer/imaging"
)

// ColourOverlap is the share of colour two images have in common: the intersection of their
// colour histograms over 8 levels a channel (512 bins of 32x32x32 RGB values), from 0 (no
// bin in common) to 1 (the same distribution). The demo's test uses it to check that a result
// has taken on its style's colours: the result's overlap with the style must be far above its
// content's.
func ColourOverlap(a, b *image.NRGBA) float64 {
	ha, hb := histogram(a), histogram(b)
	var s float64
	for i := range ha {
		s += min(ha[i], hb[i])
	}
	return s
}

func histogram(img *image.NRGBA) []float64 {
	h := make([]float64, 512)
	w, ht := img.Rect.Dx(), img.Rect.Dy()
	for y := range ht {
		row := img.Pix[img.PixOffset(img.Rect.Min.X, img.Rect.Min.Y+y):]
		for x := range w {
			p := row[4*x:]
			h[int(p[0]>>5)<<6|int(p[1]>>5)<<3|int(p[2]>>5)]++
		}
	}
	for i := range h {
		h[i] /= float64(w * ht)
	}
	return h
}

// MeanAbsDiff is the mean absolute difference of a's and b's RGB values, in levels (0..255),
// b resized to a's size first if it differs.
func MeanAbsDiff(a, b *image.NRGBA) float64 {
	w, h := a.Rect.Dx(), a.Rect.Dy()
	b = imaging.Resize(b, w, h)
	var s float64
	for y := range h {
		ra := a.Pix[a.PixOffset(a.Rect.Min.X, a.Rect.Min.Y+y):]
		rb := b.Pix[b.PixOffset(b.Rect.Min.X, b.Rect.Min.Y+y):]
		for x := range w {
			for c := range 3 {
				d := float64(ra[4*x+c]) - float64(rb[4*x+c])
				s += max(d, -d)
			}
		}
	}
	return s / float64(3*w*h)
}
