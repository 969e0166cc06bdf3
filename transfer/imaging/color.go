package imaging

import (
	"image"
	"math"
)

// Colour preservation by luminance-only transfer (Gatys, Bethge, Hertzmann, Shechtman 2016,
// "Preserving colour in neural artistic style transfer", section 3): style transfer runs on
// luminance images, the style's luminance first matched to the content's mean and standard
// deviation, and the result's luminance is then combined with the content's colour channels.
// The colour space is YIQ (NTSC), as in the paper. All arithmetic is float64 per pixel;
// results are rounded and clamped to 0..255 and opaque.

// rgbToYIQ converts 0..255 RGB.
func rgbToYIQ(r, g, b float64) (y, i, q float64) {
	y = 0.299*r + 0.587*g + 0.114*b
	i = 0.595716*r - 0.274453*g - 0.321263*b
	q = 0.211456*r - 0.522591*g + 0.311135*b
	return y, i, q
}

// yiqToRGB is rgbToYIQ's exact inverse.
func yiqToRGB(y, i, q float64) (r, g, b float64) {
	r = y + 0.9562957197589483*i + 0.6210244164652612*q
	g = y - 0.2721220993185105*i - 0.6473805968256952*q
	b = y - 1.1069890167364904*i + 1.7046149983646484*q
	return r, g, b
}

func clamp8(v float64) uint8 {
	switch {
	case math.IsNaN(v) || v <= 0:
		return 0
	case v >= 255:
		return 255
	}
	return uint8(math.Round(v))
}

// luma returns each pixel's Y (0..255) of img, row by row from (Min.X, Min.Y).
func luma(img *image.NRGBA) []float64 {
	w, h := img.Rect.Dx(), img.Rect.Dy()
	out := make([]float64, 0, w*h)
	for y := range h {
		row := img.Pix[img.PixOffset(img.Rect.Min.X, img.Rect.Min.Y+y):]
		for x := range w {
			p := row[4*x:]
			l, _, _ := rgbToYIQ(float64(p[0]), float64(p[1]), float64(p[2]))
			out = append(out, l)
		}
	}
	return out
}

// grey returns a w x h opaque image with R=G=B=v[i] for pixel i.
func grey(w, h int, v []float64) *image.NRGBA {
	dst := image.NewNRGBA(image.Rect(0, 0, w, h))
	for k, l := range v {
		c := clamp8(l)
		p := dst.Pix[4*k : 4*k+4 : 4*k+4]
		p[0], p[1], p[2], p[3] = c, c, c, 0xff
	}
	return dst
}

// Luminance returns img's luminance (Y of YIQ) as a new opaque grey image, Y replicated to
// R, G and B, with its origin at (0, 0).
func Luminance(img *image.NRGBA) *image.NRGBA {
	return grey(img.Rect.Dx(), img.Rect.Dy(), luma(img))
}

// MeanStd returns the mean and (population) standard deviation of img's luminance.
func MeanStd(img *image.NRGBA) (mean, std float64) {
	return meanStd(luma(img))
}

func meanStd(v []float64) (mean, std float64) {
	if len(v) == 0 {
		return 0, 0
	}
	for _, x := range v {
		mean += x
	}
	mean /= float64(len(v))
	for _, x := range v {
		std += (x - mean) * (x - mean)
	}
	return mean, math.Sqrt(std / float64(len(v)))
}

// MatchLuminance returns style's luminance as a grey image (as Luminance) after the paper's
// linear map L' = σc/σs (L − μs) + μc, which gives it content's luminance mean μc and standard
// deviation σc (up to rounding and clamping to 0..255). A flat style (σs = 0) becomes flat μc.
// The result has style's size.
func MatchLuminance(style, content *image.NRGBA) *image.NRGBA {
	ls := luma(style)
	ms, ss := meanStd(ls)
	mc, sc := meanStd(luma(content))
	for k, l := range ls {
		if ss == 0 {
			ls[k] = mc
		} else {
			ls[k] = sc/ss*(l-ms) + mc
		}
	}
	return grey(style.Rect.Dx(), style.Rect.Dy(), ls)
}

// CombineLuminance returns a new image with result's luminance (Y) and content's colour (I and
// Q of YIQ), converted back to RGB and clamped: the last step of luminance-only transfer. If
// content's size differs from result's it is first resized to it (Resize). The result has
// result's size and is opaque.
func CombineLuminance(result, content *image.NRGBA) *image.NRGBA {
	w, h := result.Rect.Dx(), result.Rect.Dy()
	content = Resize(content, w, h)
	dst := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		rr := result.Pix[result.PixOffset(result.Rect.Min.X, result.Rect.Min.Y+y):]
		cr := content.Pix[content.PixOffset(content.Rect.Min.X, content.Rect.Min.Y+y):]
		dr := dst.Pix[dst.PixOffset(0, y):]
		for x := range w {
			p, c := rr[4*x:], cr[4*x:]
			l, _, _ := rgbToYIQ(float64(p[0]), float64(p[1]), float64(p[2]))
			_, i, q := rgbToYIQ(float64(c[0]), float64(c[1]), float64(c[2]))
			r, g, b := yiqToRGB(l, i, q)
			d := dr[4*x : 4*x+4 : 4*x+4]
			d[0], d[1], d[2], d[3] = clamp8(r), clamp8(g), clamp8(b), 0xff
		}
	}
	return dst
}
