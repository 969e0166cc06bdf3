package render

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"math"
	"testing"

	"github.com/nst-project/nst/transfer"
)

func decaying(n int) []transfer.Step {
	var s []transfer.Step
	for i := 1; i <= n; i++ {
		f := math.Exp(-float64(i) / 10)
		s = append(s, transfer.Step{Step: i, ContentLoss: 5 + 50*f, StyleLoss: 1e4 * f, TVLoss: 0.5 * f, TotalLoss: 5 + 50*f + 1e4*f + 0.5*f})
	}
	return s
}

// countNear counts the pixels within tol (per channel) of c.
func countNear(img image.Image, c color.NRGBA, tol int) int {
	n := 0
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			p := color.NRGBAModel.Convert(img.At(x, y)).(color.NRGBA)
			if abs(int(p.R)-int(c.R)) <= tol && abs(int(p.G)-int(c.G)) <= tol && abs(int(p.B)-int(c.B)) <= tol && p.A > 200 {
				n++
			}
		}
	}
	return n
}

func abs(v int) int { return max(v, -v) }

func render(t *testing.T, steps []transfer.Step, opts PlotOptions) image.Image {
	t.Helper()
	var buf bytes.Buffer
	if err := LossPlot(&buf, steps, opts); err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(&buf)
	if err != nil {
		t.Fatalf("not a PNG: %v", err)
	}
	return img
}

// TestLossPlot: the PNG has the asked size, is not blank, and every series' colour is drawn
// as a line (many pixels: more than its legend swatch alone).
func TestLossPlot(t *testing.T) {
	img := render(t, decaying(100), PlotOptions{Title: "a__b", Width: 640, Height: 400})
	if b := img.Bounds(); b.Dx() != 640 || b.Dy() != 400 {
		t.Fatalf("size %v, want 640x400", b)
	}
	white := countNear(img, color.NRGBA{255, 255, 255, 255}, 0)
	if white > 640*400*98/100 || white < 640*400/2 {
		t.Errorf("%d white pixels of %d: blank or not a plot", white, 640*400)
	}
	for name, c := range map[string]color.NRGBA{"content": ColorContent, "style": ColorStyle, "tv": ColorTV, "total": ColorTotal} {
		if n := countNear(img, c, 8); n < 200 {
			t.Errorf("%s: %d pixels of %v, want a drawn line", name, n, c)
		}
	}
}

// TestLossPlotNonPositive: zero losses (a TV weight of 0) cannot go on a log axis: that series
// is not drawn (legend only) and the plot still renders; all-zero and empty logs render too.
func TestLossPlotNonPositive(t *testing.T) {
	steps := decaying(50)
	for i := range steps {
		steps[i].TVLoss = 0
	}
	steps[3].ContentLoss = math.NaN()
	img := render(t, steps, PlotOptions{})
	if b := img.Bounds(); b.Dx() != 800 || b.Dy() != 500 {
		t.Fatalf("default size %v", b)
	}
	if n := countNear(img, ColorTV, 8); n > 150 {
		t.Errorf("tv drawn with %d pixels although every value is 0", n)
	}
	if n := countNear(img, ColorStyle, 8); n < 200 {
		t.Errorf("style: %d pixels", n)
	}
	render(t, []transfer.Step{{Step: 1}, {Step: 2}}, PlotOptions{})
	render(t, nil, PlotOptions{})
	render(t, []transfer.Step{{Step: 1, TotalLoss: 3, ContentLoss: 3, StyleLoss: 3, TVLoss: 3}}, PlotOptions{})
}
