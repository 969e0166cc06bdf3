package imaging

import (
	"image"
	"image/color"
	"math"
	"testing"
)

func TestYIQInverse(t *testing.T) {
	for _, c := range [][3]float64{{0, 0, 0}, {255, 255, 255}, {255, 0, 0}, {12, 200, 77}, {1, 2, 254}} {
		y, i, q := rgbToYIQ(c[0], c[1], c[2])
		r, g, b := yiqToRGB(y, i, q)
		if math.Abs(r-c[0]) > 1e-9 || math.Abs(g-c[1]) > 1e-9 || math.Abs(b-c[2]) > 1e-9 {
			t.Errorf("%v -> %v,%v,%v", c, r, g, b)
		}
	}
}

func TestLuminance(t *testing.T) {
	img := image.NewNRGBA(image.Rect(3, 3, 7, 4)) // non-zero origin
	for i, c := range []color.NRGBA{{255, 0, 0, 255}, {0, 255, 0, 255}, {0, 0, 255, 255}, {255, 255, 255, 77}} {
		img.SetNRGBA(3+i, 3, c)
	}
	got := Luminance(img)
	if got.Rect != image.Rect(0, 0, 4, 1) {
		t.Fatalf("bounds %v", got.Rect)
	}
	for i, want := range []uint8{76, 150, 29, 255} { // 0.299, 0.587, 0.114 of 255, rounded
		p := got.Pix[4*i : 4*i+4]
		if p[0] != want || p[1] != want || p[2] != want || p[3] != 255 {
			t.Errorf("pixel %d = %v, want grey %d opaque", i, p, want)
		}
	}
}

func TestCombineLuminanceRoundTrip(t *testing.T) {
	for _, img := range []*image.NRGBA{pattern(31, 17), quadrants(8, 8)} {
		got := CombineLuminance(Luminance(img), img)
		worst := 0
		for i := range got.Pix {
			d := int(got.Pix[i]) - int(img.Pix[i])
			worst = max(worst, d, -d)
		}
		if worst > 2 {
			t.Errorf("round trip differs by up to %d levels", worst)
		}
	}
}

func TestCombineLuminanceTakesLuminanceAndColour(t *testing.T) {
	content := image.NewNRGBA(image.Rect(0, 0, 2, 1))
	content.SetNRGBA(0, 0, color.NRGBA{200, 60, 40, 255}) // a reddish colour
	content.SetNRGBA(1, 0, color.NRGBA{40, 60, 200, 255}) // a bluish colour
	result := image.NewNRGBA(content.Rect)
	result.SetNRGBA(0, 0, color.NRGBA{120, 120, 120, 255}) // brighter than content
	result.SetNRGBA(1, 0, color.NRGBA{30, 30, 30, 255})    // darker
	got := CombineLuminance(result, content)
	for x, wantY := range []float64{120, 30} {
		p := got.NRGBAAt(x, 0)
		y, i, q := rgbToYIQ(float64(p.R), float64(p.G), float64(p.B))
		c := content.NRGBAAt(x, 0)
		_, ci, cq := rgbToYIQ(float64(c.R), float64(c.G), float64(c.B))
		if math.Abs(y-wantY) > 1 || math.Abs(i-ci) > 1.5 || math.Abs(q-cq) > 1.5 || p.A != 255 {
			t.Errorf("pixel %d = %v: YIQ %.1f %.1f %.1f, want Y %.0f I %.1f Q %.1f", x, p, y, i, q, wantY, ci, cq)
		}
	}
	// Out-of-gamut combinations are clamped, not wrapped.
	white := image.NewNRGBA(content.Rect)
	for i := range white.Pix {
		white.Pix[i] = 255
	}
	if p := CombineLuminance(white, content).NRGBAAt(0, 0); p.R != 255 {
		t.Errorf("bright red clamped to %v", p)
	}
	// A content of another size is resized to the result's.
	if got := CombineLuminance(pattern(10, 6), pattern(20, 12)); got.Rect != image.Rect(0, 0, 10, 6) {
		t.Errorf("bounds %v", got.Rect)
	}
}

func TestMatchLuminance(t *testing.T) {
	// Style: dark, low contrast. Content: bright, high contrast.
	style := image.NewNRGBA(image.Rect(0, 0, 16, 16))
	content := image.NewNRGBA(image.Rect(0, 0, 8, 8))
	for i := 0; i < len(style.Pix); i += 4 {
		v := uint8(20 + (i/4)%16)
		copy(style.Pix[i:], []uint8{v, v / 2, v, 255})
	}
	for i := 0; i < len(content.Pix); i += 4 {
		v := uint8(60 + 3*((i/4)%64))
		copy(content.Pix[i:], []uint8{v, v, 255 - v, 255})
	}
	mc, sc := MeanStd(content)
	got := MatchLuminance(style, content)
	if got.Rect != style.Rect {
		t.Fatalf("bounds %v, want the style's %v", got.Rect, style.Rect)
	}
	mg, sg := MeanStd(got)
	if math.Abs(mg-mc) > 0.6 || math.Abs(sg-sc) > 0.6 {
		t.Errorf("matched mean %.2f std %.2f, want %.2f %.2f", mg, sg, mc, sc)
	}
	for i := 0; i < len(got.Pix); i += 4 {
		if got.Pix[i] != got.Pix[i+1] || got.Pix[i] != got.Pix[i+2] || got.Pix[i+3] != 255 {
			t.Fatalf("pixel %d = %v, want opaque grey", i/4, got.Pix[i:i+4])
		}
	}
	// Order is kept: brighter style pixels stay brighter.
	ls := luma(style)
	lg := luma(got)
	for k := 1; k < len(ls); k++ {
		if (ls[k] > ls[k-1]) != (lg[k] >= lg[k-1]) && ls[k] != ls[k-1] {
			t.Fatalf("order changed at %d", k)
		}
	}

	flat := image.NewNRGBA(image.Rect(0, 0, 3, 3))
	for i := range flat.Pix {
		flat.Pix[i] = 10
	}
	if p := MatchLuminance(flat, content).Pix[0]; math.Abs(float64(p)-mc) > 0.5 {
		t.Errorf("flat style became %d, want the content mean %.1f", p, mc)
	}
}
