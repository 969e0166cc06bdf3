package imaging

import (
	"image"
	"math"

	"golang.org/x/image/draw"
)

// Fit returns img scaled down, keeping its aspect ratio, so that its longest side is longest
// pixels; the other side is rounded to the nearest pixel and is at least 1. If longest <= 0
// or img already fits, Fit returns img itself (the same pointer, not resampled). It never
// scales up. Resampling is Resize's.
func Fit(img *image.NRGBA, longest int) *image.NRGBA {
	w, h := img.Rect.Dx(), img.Rect.Dy()
	if longest <= 0 || max(w, h) <= longest {
		return img
	}
	w2, h2 := FitSize(w, h, longest)
	return Resize(img, w2, h2)
}

// FitSize returns the size Fit gives a w x h image for longest (w, h themselves when it
// fits or longest <= 0), without touching pixels.
func FitSize(w, h, longest int) (int, int) {
	if longest <= 0 || max(w, h) <= longest {
		return w, h
	}
	scale := func(a, b int) int { return max(1, int(math.Round(float64(a)*float64(longest)/float64(b)))) }
	if w >= h {
		return longest, scale(h, w)
	}
	return scale(w, h), longest
}

// Resize returns img resampled to w x h with the Catmull-Rom filter (golang.org/x/image/draw),
// which is sharp and alias-free when scaling down. It returns img itself if it already is
// w x h. A w or h below 1 is taken as 1. The result starts at (0, 0); alpha is kept
// (Catmull-Rom's overshoot is clamped).
func Resize(img *image.NRGBA, w, h int) *image.NRGBA {
	w, h = max(w, 1), max(h, 1)
	if img.Rect.Dx() == w && img.Rect.Dy() == h {
		return img
	}
	// Scale into *image.RGBA, for which x/image/draw has a fast path from *image.NRGBA, then
	// unpremultiply (a plain copy for opaque pixels).
	tmp := image.NewRGBA(image.Rect(0, 0, w, h))
	draw.CatmullRom.Scale(tmp, tmp.Rect, img, img.Rect, draw.Src, nil)
	dst := image.NewNRGBA(tmp.Rect)
	for i := 0; i < len(tmp.Pix); i += 4 {
		p := tmp.Pix[i : i+4 : i+4]
		q := dst.Pix[i : i+4 : i+4]
		switch a := uint32(p[3]); a {
		case 0xff:
			q[0], q[1], q[2], q[3] = p[0], p[1], p[2], 0xff
		case 0:
			q[0], q[1], q[2], q[3] = 0, 0, 0, 0
		default:
			un := func(v uint8) uint8 { return uint8(min(uint32(v)*0xff/a, 0xff)) }
			q[0], q[1], q[2], q[3] = un(p[0]), un(p[1]), un(p[2]), p[3]
		}
	}
	return dst
}
