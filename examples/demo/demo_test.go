package demo

import (
	"bytes"
	"image"
	"image/color"
	"math"
	"strings"
	"testing"

	"github.com/nst-project/nst/transfer"
)

// TestImages: the demo's images are the same every time, fit the demo's 128 px without
// scaling, are large enough for VGG19, and the styles' colours are not the contents' (else
// the demo could not show them carried over).
func TestImages(t *testing.T) {
	a, b := Images(), Images()
	contents, styles := 0, 0
	for name, img := range a {
		if !bytes.Equal(img.Pix, b[name].Pix) {
			t.Errorf("%s differs between two calls", name)
		}
		w, h := img.Rect.Dx(), img.Rect.Dy()
		if min(w, h) < transfer.MinSide(transfer.DefaultParams()) || max(w, h) > 128 {
			t.Errorf("%s is %dx%d", name, w, h)
		}
		switch {
		case strings.HasPrefix(name, "contents/"):
			contents++
		case strings.HasPrefix(name, "styles/"):
			styles++
			for cn, c := range a {
				if strings.HasPrefix(cn, "contents/") {
					if o := ColourOverlap(c, img); o > 0.05 {
						t.Errorf("%s and %s share %.3f of their colours", cn, name, o)
					}
				}
			}
		}
	}
	if contents != 3 || styles != 2 {
		t.Errorf("%d contents and %d styles, want 3 and 2", contents, styles)
	}
}

func flat(w, h int, c color.NRGBA) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for i := 0; i < len(img.Pix); i += 4 {
		img.Pix[i], img.Pix[i+1], img.Pix[i+2], img.Pix[i+3] = c.R, c.G, c.B, c.A
	}
	return img
}

func TestColourOverlapAndDiff(t *testing.T) {
	red, blue := flat(8, 8, color.NRGBA{250, 10, 10, 255}), flat(4, 6, color.NRGBA{10, 10, 250, 255})
	half := flat(8, 8, color.NRGBA{250, 10, 10, 255})
	for i := 0; i < len(half.Pix)/2; i += 4 {
		half.Pix[i], half.Pix[i+2] = 10, 250
	}
	for _, c := range []struct {
		a, b *image.NRGBA
		want float64
	}{{red, red, 1}, {red, blue, 0}, {half, red, 0.5}, {half, blue, 0.5}} {
		if got := ColourOverlap(c.a, c.b); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("overlap %v, want %v", got, c.want)
		}
	}
	if got := MeanAbsDiff(red, blue); math.Abs(got-2*240.0/3) > 1e-9 {
		t.Errorf("red - blue: %v levels, want 160", got)
	}
	if got := MeanAbsDiff(half, red); math.Abs(got-80) > 1e-9 {
		t.Errorf("half - red: %v levels, want 80", got)
	}
}

// TestStrip: rows of images at one height, gap pixels of white between them.
func TestStrip(t *testing.T) {
	red := flat(20, 10, color.NRGBA{255, 0, 0, 255})
	square := flat(10, 10, color.NRGBA{0, 0, 255, 255})
	s := Strip([][]*image.NRGBA{{red, square, red}, {square}}, 20, 4)
	if want := image.Rect(0, 0, 40+4+20+4+40, 20+4+20); s.Rect != want {
		t.Fatalf("strip %v, want %v", s.Rect, want)
	}
	for _, p := range []struct {
		x, y int
		want color.NRGBA
	}{{5, 5, color.NRGBA{255, 0, 0, 255}}, {41, 5, color.NRGBA{255, 255, 255, 255}}, {50, 10, color.NRGBA{0, 0, 255, 255}},
		{10, 22, color.NRGBA{255, 255, 255, 255}}, {10, 30, color.NRGBA{0, 0, 255, 255}}, {60, 30, color.NRGBA{255, 255, 255, 255}}} {
		if got := s.NRGBAAt(p.x, p.y); got != p.want {
			t.Errorf("(%d, %d) = %v, want %v", p.x, p.y, got, p.want)
		}
	}
}
