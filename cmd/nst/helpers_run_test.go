package main

import (
	"image"
	"image/color"
	"image/png"
	"os"
	"testing"
)

func writePNG(t *testing.T, path string, w, h, seed int) {
	t.Helper()
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.SetNRGBA(x, y, color.NRGBA{uint8(x*5 + seed*50), uint8(y*7 + seed*20), uint8(seed * 60), 255})
		}
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := png.Encode(f, img); err != nil {
		t.Fatal(err)
	}
}
