package imaging

import (
	"image"
	"image/color"
	"testing"
)

func TestFit(t *testing.T) {
	tests := []struct {
		name          string
		w, h, longest int
		wantW, wantH  int
		same          bool
	}{
		{"within: same pointer", 100, 50, 256, 100, 50, true},
		{"exactly longest: same pointer", 256, 100, 256, 256, 100, true},
		{"zero longest: same pointer", 300, 200, 0, 300, 200, true},
		{"landscape", 400, 300, 200, 200, 150, false},
		{"portrait", 300, 400, 200, 150, 200, false},
		{"rounds to nearest", 1000, 333, 100, 100, 33, false},
		{"rounds up", 1000, 335, 100, 100, 34, false},
		{"thin side at least 1", 1000, 1, 10, 10, 1, false},
		{"square", 64, 64, 32, 32, 32, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img := pattern(tt.w, tt.h)
			got := Fit(img, tt.longest)
			if (got == img) != tt.same {
				t.Errorf("returned the same image: %v, want %v", got == img, tt.same)
			}
			if got.Rect != image.Rect(0, 0, tt.wantW, tt.wantH) {
				t.Errorf("bounds %v, want %dx%d", got.Rect, tt.wantW, tt.wantH)
			}
			if w, h := FitSize(tt.w, tt.h, tt.longest); w != tt.wantW || h != tt.wantH {
				t.Errorf("FitSize = %dx%d, want %dx%d", w, h, tt.wantW, tt.wantH)
			}
		})
	}
}

func TestResize(t *testing.T) {
	img := pattern(20, 10)
	if Resize(img, 20, 10) != img {
		t.Error("same size must return the image itself")
	}
	if got := Resize(img, 0, -3); got.Rect != image.Rect(0, 0, 1, 1) {
		t.Errorf("sides below 1: %v", got.Rect)
	}

	// A flat colour stays exactly that colour and opaque, down and up.
	flat := image.NewNRGBA(image.Rect(0, 0, 37, 23))
	for i := 0; i < len(flat.Pix); i += 4 {
		copy(flat.Pix[i:], []uint8{200, 30, 90, 255})
	}
	for _, sz := range []image.Point{{9, 5}, {80, 50}, {1, 1}} {
		got := Resize(flat, sz.X, sz.Y)
		for i := 0; i < len(got.Pix); i += 4 {
			if p := got.Pix[i : i+4]; p[0] != 200 || p[1] != 30 || p[2] != 90 || p[3] != 255 {
				t.Fatalf("%v: pixel %v", sz, p)
			}
		}
	}

	// Downscaling a sharp two-colour split keeps each half's colour away from the edge, and
	// Catmull-Rom's overshoot at the edge is clamped, not wrapped.
	split := image.NewNRGBA(image.Rect(0, 0, 64, 8))
	for y := range 8 {
		for x := range 64 {
			c := color.NRGBA{0, 0, 0, 255}
			if x >= 32 {
				c = color.NRGBA{255, 255, 255, 255}
			}
			split.SetNRGBA(x, y, c)
		}
	}
	got := Resize(split, 16, 2)
	if l, r := got.NRGBAAt(2, 0), got.NRGBAAt(13, 1); l.R != 0 || r.R != 255 {
		t.Errorf("halves became %v and %v", l, r)
	}

	// Non-zero origin sources are read from their own bounds.
	sub := pattern(40, 40).SubImage(image.Rect(10, 10, 30, 20)).(*image.NRGBA)
	if got := Resize(sub, 10, 5); got.Rect != image.Rect(0, 0, 10, 5) {
		t.Errorf("bounds %v", got.Rect)
	}

	// Translucent pixels are unpremultiplied back.
	tr := image.NewNRGBA(image.Rect(0, 0, 4, 4))
	for i := 0; i < len(tr.Pix); i += 4 {
		copy(tr.Pix[i:], []uint8{200, 100, 50, 128})
	}
	if p := Resize(tr, 2, 2).NRGBAAt(1, 1); !near(p.R, 200, 2) || !near(p.G, 100, 2) || p.A != 128 {
		t.Errorf("translucent pixel %v", p)
	}
}
