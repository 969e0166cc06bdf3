// Package demo makes the demo's input images (synthetic, so the demo needs no download) and
// its before / style / after strips. examples/gen writes the images for `make setup`;
// examples/strip draws a strip from the demo's outputs.
package demo

import (
	"image"
	"image/color"
	"math"
	"math/rand/v2"
)

// Images returns the demo's input images by path under the data directory: three contents,
// simple scenes, and two styles, bold, with palettes far from the contents' (a blue and yellow
// swirl, a red, orange and black mosaic), so that what the demo carries over shows. They are
// the same every time.
func Images() map[string]*image.NRGBA {
	return map[string]*image.NRGBA{
		"contents/hills.png":  draw(128, 96, hills),
		"contents/city.png":   draw(128, 96, city),
		"contents/flower.png": draw(112, 112, flower),
		"styles/swirls.png":   swirls(128, 128),
		"styles/mosaic.png":   mosaic(128, 128),
	}
}

func draw(w, h int, f func(x, y, w, h float64) color.NRGBA) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.SetNRGBA(x, y, f(float64(x), float64(y), float64(w), float64(h)))
		}
	}
	return img
}

func c(r, g, b float64) color.NRGBA {
	cl := func(v float64) uint8 { return uint8(math.Max(0, math.Min(255, v))) }
	return color.NRGBA{cl(r), cl(g), cl(b), 255}
}

func mix(a, b color.NRGBA, t float64) color.NRGBA {
	t = math.Max(0, math.Min(1, t))
	return c(float64(a.R)+(float64(b.R)-float64(a.R))*t, float64(a.G)+(float64(b.G)-float64(a.G))*t, float64(a.B)+(float64(b.B)-float64(a.B))*t)
}

// hills: a pale sky with a sun over two rows of green hills and a path.
func hills(x, y, w, h float64) color.NRGBA {
	if d := math.Hypot(x-0.75*w, y-0.25*h); d < 0.09*w {
		return c(255, 236, 170)
	}
	far := h*0.5 + 7*math.Sin(x/13) + 4*math.Sin(x/5+1)
	near := h*0.68 + 9*math.Sin(x/17+2)
	switch {
	case y < far:
		return c(150+y*0.6, 190+y*0.4, 235)
	case y < near:
		return c(70+x/6, 140+(y-far)*1.5, 80)
	default:
		if math.Abs(x-w/2-(y-near)*0.8) < 3+(y-near)*0.2 {
			return c(215, 200, 160)
		}
		return c(40+x/5, 110+(y-near)*1.2, 45)
	}
}

// city: a dusk skyline of blocks with lit windows.
func city(x, y, w, h float64) color.NRGBA {
	heights := []float64{0.45, 0.3, 0.6, 0.38, 0.52, 0.25, 0.48, 0.35}
	col := int(x / w * float64(len(heights)))
	top := h * heights[col]
	if y < top {
		return mix(c(250, 170, 120), c(90, 110, 170), y/top)
	}
	xi, yi := int(x)%16, int(y-top)%12
	if xi > 4 && xi < 11 && yi > 3 && yi < 9 && (int(x)/16+int(y)/12)%3 != 0 {
		return c(255, 220, 120)
	}
	shade := 60 + float64(col%3)*15
	return c(shade, shade+5, shade+20)
}

// flower: a yellow-centred pink flower on a green field.
func flower(x, y, w, h float64) color.NRGBA {
	dx, dy := x-w/2, y-h/2
	r, a := math.Hypot(dx, dy), math.Atan2(dy, dx)
	switch petal := w * (0.28 + 0.1*math.Cos(6*a)); {
	case r < w*0.1:
		return c(250, 200, 40)
	case r < petal:
		return mix(c(250, 130, 170), c(200, 60, 120), r/petal)
	default:
		return c(60+y/3, 140+x/6, 70)
	}
}

// swirls: deep blue with swirling strokes of yellow and white, Starry Night's palette.
func swirls(w, h int) *image.NRGBA {
	img := draw(w, h, func(x, y, w, h float64) color.NRGBA {
		return mix(c(15, 30, 90), c(40, 70, 150), 0.5+0.5*math.Sin(x/9+2*math.Sin(y/11)))
	})
	rng := rand.New(rand.NewPCG(1, 2))
	palette := []color.NRGBA{c(250, 220, 60), c(255, 250, 210), c(110, 160, 230), c(240, 180, 30)}
	for range 260 {
		x, y := rng.Float64()*float64(w), rng.Float64()*float64(h)
		col := palette[rng.IntN(len(palette))]
		for range 14 { // a stroke follows the swirling flow
			a := math.Sin(x/14)*2 + math.Cos(y/12)*2
			for dy := -1; dy <= 1; dy++ {
				for dx := -1; dx <= 1; dx++ {
					px, py := int(x)+dx, int(y)+dy
					if px >= 0 && py >= 0 && px < w && py < h {
						img.SetNRGBA(px, py, col)
					}
				}
			}
			x, y = x+1.6*math.Cos(a), y+1.6*math.Sin(a)
		}
	}
	return img
}

// mosaic: stained glass of red, orange and magenta cells with thick black leading.
func mosaic(w, h int) *image.NRGBA {
	rng := rand.New(rand.NewPCG(3, 4))
	type site struct {
		x, y float64
		col  color.NRGBA
	}
	palette := []color.NRGBA{c(230, 40, 30), c(250, 140, 20), c(200, 20, 110), c(250, 210, 40), c(150, 15, 20)}
	sites := make([]site, 40)
	for i := range sites {
		sites[i] = site{rng.Float64() * float64(w), rng.Float64() * float64(h), palette[rng.IntN(len(palette))]}
	}
	return draw(w, h, func(x, y, _, _ float64) color.NRGBA {
		d1, d2, best := math.Inf(1), math.Inf(1), 0
		for i, s := range sites {
			d := math.Hypot(x-s.x, y-s.y)
			if d < d1 {
				d1, d2, best = d, d1, i
			} else if d < d2 {
				d2 = d
			}
		}
		if d2-d1 < 2.5 {
			return c(10, 10, 10)
		}
		return sites[best].col
	})
}
