package demo

import (
	"image"
	"image/color"
	imgdraw "image/draw"

	"github.com/nst-project/nst/transfer/imaging"
)

// Strip lays out rows of images side by side: each row's images are scaled to height px
// high (keeping their aspect ratio), separated by gap px of white, rows gap px apart. It is
// how the README's before / style / after strip is drawn from the demo's outputs.
func Strip(rows [][]*image.NRGBA, height, gap int) *image.NRGBA {
	scaled := make([][]*image.NRGBA, len(rows))
	width := 0
	for i, row := range rows {
		w := 0
		for k, img := range row {
			iw := max(1, img.Rect.Dx()*height/max(1, img.Rect.Dy()))
			scaled[i] = append(scaled[i], imaging.Resize(img, iw, height))
			if k > 0 {
				w += gap
			}
			w += iw
		}
		width = max(width, w)
	}
	out := image.NewNRGBA(image.Rect(0, 0, width, len(rows)*height+max(0, len(rows)-1)*gap))
	imgdraw.Draw(out, out.Rect, image.NewUniform(color.White), image.Point{}, imgdraw.Src)
	y := 0
	for _, row := range scaled {
		x := 0
		for _, img := range row {
			imgdraw.Draw(out, img.Rect.Add(image.Pt(x, y)), img, image.Point{}, imgdraw.Src)
			x += img.Rect.Dx() + gap
		}
		y += height + gap
	}
	return out
}
