package imaging

import (
	"image"
	"image/color"
)

// ToNRGBA returns a new opaque 8-bit copy of img with its origin at (0, 0), dropping alpha as
// Decode documents: straight (non-premultiplied) colour is kept as stored, premultiplied
// colour is unpremultiplied, and every pixel gets alpha 255. 16-bit samples keep their high
// byte. It never returns img itself.
func ToNRGBA(img image.Image) *image.NRGBA {
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	dst := image.NewNRGBA(image.Rect(0, 0, w, h))
	set := func(x, y int, r, g, bl uint8) {
		i := y*dst.Stride + 4*x
		p := dst.Pix[i : i+4 : i+4]
		p[0], p[1], p[2], p[3] = r, g, bl, 0xff
	}
	switch src := img.(type) {
	case *image.NRGBA:
		for y := range h {
			row := src.Pix[src.PixOffset(b.Min.X, b.Min.Y+y):]
			for x := range w {
				set(x, y, row[4*x], row[4*x+1], row[4*x+2])
			}
		}
	case *image.NRGBA64:
		for y := range h {
			for x := range w {
				c := src.NRGBA64At(b.Min.X+x, b.Min.Y+y)
				set(x, y, uint8(c.R>>8), uint8(c.G>>8), uint8(c.B>>8))
			}
		}
	case *image.YCbCr:
		for y := range h {
			for x := range w {
				c := src.YCbCrAt(b.Min.X+x, b.Min.Y+y)
				r, g, bl := color.YCbCrToRGB(c.Y, c.Cb, c.Cr)
				set(x, y, r, g, bl)
			}
		}
	case *image.Gray:
		for y := range h {
			for x := range w {
				v := src.GrayAt(b.Min.X+x, b.Min.Y+y).Y
				set(x, y, v, v, v)
			}
		}
	case *image.Gray16:
		for y := range h {
			for x := range w {
				v := uint8(src.Gray16At(b.Min.X+x, b.Min.Y+y).Y >> 8)
				set(x, y, v, v, v)
			}
		}
	case *image.CMYK:
		for y := range h {
			for x := range w {
				c := src.CMYKAt(b.Min.X+x, b.Min.Y+y)
				r, g, bl := color.CMYKToRGB(c.C, c.M, c.Y, c.K)
				set(x, y, r, g, bl)
			}
		}
	case *image.Paletted:
		var pal [256][3]uint8
		for i, c := range src.Palette {
			if i < len(pal) {
				pal[i] = straight(c)
			}
		}
		// Indexes past the palette read as black, as image.Paletted.At does (zero colour).
		for y := range h {
			row := src.Pix[src.PixOffset(b.Min.X, b.Min.Y+y):]
			for x := range w {
				c := pal[row[x]]
				set(x, y, c[0], c[1], c[2])
			}
		}
	default:
		for y := range h {
			for x := range w {
				c := straight(src.At(b.Min.X+x, b.Min.Y+y))
				set(x, y, c[0], c[1], c[2])
			}
		}
	}
	return dst
}

// straight returns c's non-premultiplied 8-bit RGB.
func straight(c color.Color) [3]uint8 {
	switch c := c.(type) {
	case color.NRGBA:
		return [3]uint8{c.R, c.G, c.B}
	case color.NRGBA64:
		return [3]uint8{uint8(c.R >> 8), uint8(c.G >> 8), uint8(c.B >> 8)}
	}
	r, g, b, a := c.RGBA()
	switch a {
	case 0:
		return [3]uint8{}
	case 0xffff:
		return [3]uint8{uint8(r >> 8), uint8(g >> 8), uint8(b >> 8)}
	}
	un := func(v uint32) uint8 { return uint8(min(v*0xffff/a, 0xffff) >> 8) }
	return [3]uint8{un(r), un(g), un(b)}
}
