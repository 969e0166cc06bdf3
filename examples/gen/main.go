// Command gen writes the demo's input images, examples/data/contents/*.png and
// examples/data/styles/*.png: small synthetic pictures, so the demo needs no download.
// `make setup` runs it; run it again with `go run ./examples/gen` (it overwrites).
package main

import (
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"path/filepath"
)

func main() {
	dir := "examples/data"
	if len(os.Args) > 1 {
		dir = os.Args[1]
	}
	if err := generate(dir); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

// generate writes three contents and two styles under dir.
func generate(dir string) error {
	images := map[string]*image.NRGBA{
		"contents/hills.png":  draw(96, 64, hills),
		"contents/sun.png":    draw(64, 64, sun),
		"contents/bricks.png": draw(80, 64, bricks),
		"styles/waves.png":    draw(64, 64, waves),
		"styles/checks.png":   draw(64, 64, checks),
	}
	for name, img := range images {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		f, err := os.Create(p)
		if err != nil {
			return err
		}
		if err := png.Encode(f, img); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
	}
	fmt.Printf("gen: wrote %d images under %s\n", len(images), dir)
	return nil
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

func hills(x, y, w, h float64) color.NRGBA {
	ridge := h*0.55 + 8*math.Sin(x/9) + 5*math.Sin(x/4+1)
	if y < ridge {
		return c(120+y, 170+y/2, 235)
	}
	return c(40+x/3, 120+(y-ridge)*2, 50)
}

func sun(x, y, w, h float64) color.NRGBA {
	d := math.Hypot(x-w/2, y-h/2)
	if d < w/4 {
		return c(255, 210, 60)
	}
	return c(30+d*2, 60+d, 140)
}

func bricks(x, y, w, h float64) color.NRGBA {
	row := int(y / 8)
	off := float64(row%2) * 8
	if int(y)%8 == 0 || int(x+off)%16 == 0 {
		return c(200, 200, 190)
	}
	return c(160+float64(row*5), 60, 40)
}

func waves(x, y, w, h float64) color.NRGBA {
	v := math.Sin(x/5+3*math.Sin(y/9)) * 0.5
	return c(20+60*v, 80+80*v, 170+70*v)
}

func checks(x, y, w, h float64) color.NRGBA {
	if (int(x/8)+int(y/8))%2 == 0 {
		return c(240, 200, 40)
	}
	return c(30, 30, 30)
}
