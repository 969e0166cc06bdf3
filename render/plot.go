package render

import (
	"fmt"
	"image/color"
	"image/png"
	"io"
	"math"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"

	"github.com/nst-project/nst/transfer"
)

// Series colours of the loss plot (Okabe-Ito, distinguishable with colour blindness). Tests
// look for them in the picture.
var (
	ColorContent = color.NRGBA{0, 114, 178, 255}   // blue
	ColorStyle   = color.NRGBA{213, 94, 0, 255}    // vermilion
	ColorTV      = color.NRGBA{0, 158, 115, 255}   // bluish green
	ColorTotal   = color.NRGBA{204, 121, 167, 255} // reddish purple
)

// PlotOptions sizes a loss plot; zero fields take the defaults.
type PlotOptions struct {
	Title         string // "" means "losses"
	Width, Height int    // pixels; 0 means 800 x 500
}

// LossPlot draws the content, style, total-variation and total losses of steps against the
// step number, on a logarithmic loss axis, and writes it to w as a PNG. Values that are zero,
// negative or not finite cannot be drawn on a log scale: they are left out, and the series'
// legend entry says how many were (a series with none left says "not drawn"). An empty steps
// draws empty axes. It does not close w.
func LossPlot(w io.Writer, steps []transfer.Step, opts PlotOptions) error {
	if opts.Width <= 0 {
		opts.Width = 800
	}
	if opts.Height <= 0 {
		opts.Height = 500
	}
	if opts.Title == "" {
		opts.Title = "losses"
	}
	p := plot.New()
	p.Title.Text = opts.Title
	p.X.Label.Text = "step"
	p.Y.Label.Text = "loss (log scale)"
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = plot.LogTicks{Prec: 1}
	p.Legend.Top = true
	p.Add(plotter.NewGrid())

	series := []struct {
		name string
		c    color.NRGBA
		v    func(transfer.Step) float64
	}{
		{"total", ColorTotal, func(s transfer.Step) float64 { return s.TotalLoss }},
		{"content", ColorContent, func(s transfer.Step) float64 { return s.ContentLoss }},
		{"style", ColorStyle, func(s transfer.Step) float64 { return s.StyleLoss }},
		{"tv", ColorTV, func(s transfer.Step) float64 { return s.TVLoss }},
	}
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, sr := range series {
		var xy plotter.XYs
		skipped := 0
		for _, s := range steps {
			v := sr.v(s)
			if v <= 0 || math.IsNaN(v) || math.IsInf(v, 0) {
				skipped++
				continue
			}
			xy = append(xy, plotter.XY{X: float64(s.Step), Y: v})
			lo, hi = min(lo, v), max(hi, v)
		}
		label := sr.name
		switch {
		case len(steps) > 0 && len(xy) == 0:
			label += " (all <= 0: not drawn)"
		case skipped > 0:
			label += fmt.Sprintf(" (%d values <= 0 left out)", skipped)
		}
		if len(xy) == 0 {
			// A legend entry only, so the reader knows the series exists.
			l := &plotter.Line{LineStyle: draw.LineStyle{Color: sr.c, Width: vg.Points(2)}}
			p.Legend.Add(label, l)
			continue
		}
		line, err := plotter.NewLine(xy)
		if err != nil {
			return fmt.Errorf("loss plot %s: %w", sr.name, err)
		}
		line.Color = sr.c
		line.Width = vg.Points(2)
		p.Add(line)
		p.Legend.Add(label, line)
	}
	if math.IsInf(lo, 1) { // nothing drawable: empty axes on a valid log range
		p.Y.Min, p.Y.Max = 1, 10
		p.X.Min, p.X.Max = 0, math.Max(1, float64(len(steps)))
	} else if lo == hi {
		p.Y.Min, p.Y.Max = lo/2, hi*2
	}
	// vgimg works in points at 72 dpi: one point per pixel.
	c := vgimg.NewWith(vgimg.UseWH(vg.Length(opts.Width), vg.Length(opts.Height)), vgimg.UseDPI(72))
	p.Draw(draw.New(c))
	// A line plot compresses well even at the fastest level, which is several times quicker
	// than the default (the plot is written for every pair).
	enc := png.Encoder{CompressionLevel: png.BestSpeed}
	if err := enc.Encode(w, c.Image()); err != nil {
		return fmt.Errorf("loss plot: %w", err)
	}
	return nil
}
