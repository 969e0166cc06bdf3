package imaging

import (
	"bytes"
	"errors"
	"image"
	"image/color"
	"image/color/palette"
	"image/gif"
	"io"
	"os"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"

	"golang.org/x/image/bmp"
	"golang.org/x/image/tiff"

	"github.com/nst-project/nst/transfer/imaging/imagingtest"
)

func TestDecodeFormatsAndColourModels(t *testing.T) {
	pat := pattern(19, 11)

	alpha := pattern(9, 7) // straight alpha, including fully transparent pixels with colour
	for i := 3; i < len(alpha.Pix); i += 4 {
		alpha.Pix[i] = uint8(i * 7)
	}
	alpha.Pix[3] = 0

	n64 := image.NewNRGBA64(image.Rect(0, 0, 5, 4))
	rgba64 := image.NewRGBA64(image.Rect(0, 0, 5, 4))
	want16 := image.NewNRGBA(image.Rect(0, 0, 5, 4))
	for y := range 4 {
		for x := range 5 {
			hi := color.NRGBA{uint8(40 * x), uint8(60 * y), uint8(200 - 10*x), 255}
			want16.SetNRGBA(x, y, hi)
			// low bytes that must not round the high byte up
			n64.SetNRGBA64(x, y, color.NRGBA64{uint16(hi.R)<<8 | 0xfe, uint16(hi.G)<<8 | 0x80, uint16(hi.B) << 8, uint16(x * 10000)})
			rgba64.SetRGBA64(x, y, color.RGBA64{uint16(hi.R)<<8 | 0xfe, uint16(hi.G)<<8 | 0x80, uint16(hi.B) << 8, 0xffff})
		}
	}

	gray := image.NewGray(image.Rect(0, 0, 6, 3))
	gray16 := image.NewGray16(image.Rect(0, 0, 6, 3))
	wantGray := image.NewNRGBA(gray.Rect)
	for i := range gray.Pix {
		gray.Pix[i] = uint8(i * 14)
		gray16.SetGray16(i%6, i/6, color.Gray16{uint16(i*14)<<8 | 0xff})
		v := uint8(i * 14)
		wantGray.SetNRGBA(i%6, i/6, color.NRGBA{v, v, v, 255})
	}

	pal := image.NewPaletted(image.Rect(0, 0, 4, 2), color.Palette{
		color.NRGBA{10, 20, 30, 255}, color.NRGBA{1, 2, 3, 0}, color.NRGBA{200, 100, 50, 128},
	})
	copy(pal.Pix, []uint8{0, 1, 2, 0, 2, 1, 0, 1})
	wantPal := image.NewNRGBA(pal.Rect)
	for i, ix := range pal.Pix {
		c := pal.Palette[ix].(color.NRGBA)
		wantPal.SetNRGBA(i%4, i/4, color.NRGBA{c.R, c.G, c.B, 255})
	}

	gifPal := image.NewPaletted(image.Rect(0, 0, 8, 5), palette.Plan9)
	for i := range gifPal.Pix {
		gifPal.Pix[i] = uint8(i * 5)
	}
	var gifBuf bytes.Buffer
	if err := gif.Encode(&gifBuf, gifPal, nil); err != nil {
		t.Fatal(err)
	}
	red := image.NewPaletted(image.Rect(0, 0, 6, 4), color.Palette{color.RGBA{255, 0, 0, 255}, color.RGBA{0, 0, 255, 255}})
	blue := image.NewPaletted(red.Rect, red.Palette)
	for i := range blue.Pix {
		blue.Pix[i] = 1
	}
	var anim bytes.Buffer
	if err := gif.EncodeAll(&anim, &gif.GIF{Image: []*image.Paletted{red, blue}, Delay: []int{10, 10}}); err != nil {
		t.Fatal(err)
	}

	var bmpBuf, tiffBuf bytes.Buffer
	if err := bmp.Encode(&bmpBuf, pat); err != nil {
		t.Fatal(err)
	}
	if err := tiff.Encode(&tiffBuf, pat, &tiff.Options{Compression: tiff.Deflate}); err != nil {
		t.Fatal(err)
	}

	quad := quadrants(32, 16)
	grayQuad := image.NewGray(quad.Rect)
	for y := range 16 {
		for x := range 32 {
			grayQuad.SetGray(x, y, color.Gray{uint8(x * 8)})
		}
	}
	wantGrayQuad := ToNRGBA(grayQuad)
	wantRed := image.NewNRGBA(image.Rect(0, 0, 8, 8))
	for i := 0; i < len(wantRed.Pix); i += 4 {
		copy(wantRed.Pix[i:], []uint8{255, 0, 0, 255})
	}
	wantCMYK := image.NewNRGBA(wantRed.Rect)
	r, g, b := color.CMYKToRGB(30, 200, 90, 40)
	for i := 0; i < len(wantCMYK.Pix); i += 4 {
		copy(wantCMYK.Pix[i:], []uint8{r, g, b, 255})
	}

	webpPNG := func(name string) *image.NRGBA {
		t.Helper()
		f, err := os.Open("testdata/" + name)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		img, _, err := Decode(f, Limits{})
		if err != nil {
			t.Fatal(err)
		}
		return img
	}
	readFile := func(name string) []byte {
		t.Helper()
		b, err := os.ReadFile("testdata/" + name)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}

	tests := []struct {
		name   string
		data   []byte
		format string
		want   *image.NRGBA
		tol    int
		// inner compares only pixels at least this far from a colour edge (JPEG chroma).
		skip func(x, y int) bool
	}{
		{name: "png rgb", data: encodePNG(t, pat), format: "png", want: pat},
		{name: "png straight alpha keeps colour", data: encodePNG(t, alpha), format: "png", want: ToNRGBA(alpha)}, // RGB as stored, alpha 255
		{name: "png 16-bit rgb", data: encodePNG(t, rgba64), format: "png", want: want16},
		{name: "png 16-bit alpha", data: encodePNG(t, n64), format: "png", want: want16},
		{name: "png gray", data: encodePNG(t, gray), format: "png", want: wantGray},
		{name: "png gray16", data: encodePNG(t, gray16), format: "png", want: wantGray},
		{name: "png paletted with transparency", data: encodePNG(t, pal), format: "png", want: wantPal},
		{name: "png 1x1", data: encodePNG(t, pattern(1, 1)), format: "png", want: pattern(1, 1)},
		{name: "gif", data: gifBuf.Bytes(), format: "gif", want: ToNRGBA(gifPal)},
		{name: "gif animated gives first frame", data: anim.Bytes(), format: "gif", want: ToNRGBA(red)},
		{name: "bmp", data: bmpBuf.Bytes(), format: "bmp", want: pat},
		{name: "tiff", data: tiffBuf.Bytes(), format: "tiff", want: pat},
		{name: "jpeg ycbcr", data: encodeJPEG(t, quad), format: "jpeg", want: quad, tol: 6,
			skip: func(x, y int) bool { return x%16 < 3 || x%16 > 12 || y%8 < 2 || y%8 > 5 }},
		{name: "jpeg gray", data: encodeJPEG(t, grayQuad), format: "jpeg", want: wantGrayQuad, tol: 2},
		{name: "jpeg cmyk (adobe)", data: imagingtest.CMYKJPEG(8, 0, 255, 255, 0), format: "jpeg", want: wantRed, tol: 2},
		{name: "jpeg cmyk mixed ink", data: imagingtest.CMYKJPEG(8, 30, 200, 90, 40), format: "jpeg", want: wantCMYK, tol: 2},
		{name: "webp lossless", data: readFile("gopher-doc.1bpp.lossless.webp"), format: "webp", want: webpPNG("gopher-doc.1bpp.png")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, info, err := Decode(bytes.NewReader(tt.data), DefaultLimits())
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if info.Format != tt.format || info.Orientation != 1 {
				t.Errorf("info = %+v, want format %s, orientation 1", info, tt.format)
			}
			if got.Rect != tt.want.Rect || info.Width != tt.want.Rect.Dx() || info.Height != tt.want.Rect.Dy() {
				t.Fatalf("bounds %v, info %dx%d, want %v", got.Rect, info.Width, info.Height, tt.want.Rect)
			}
			bad := 0
			for y := range got.Rect.Dy() {
				for x := range got.Rect.Dx() {
					if tt.skip != nil && tt.skip(x, y) {
						continue
					}
					g, w := got.NRGBAAt(x, y), tt.want.NRGBAAt(x, y)
					if g.A != 255 || !near(g.R, w.R, tt.tol) || !near(g.G, w.G, tt.tol) || !near(g.B, w.B, tt.tol) {
						if bad++; bad <= 3 {
							t.Errorf("pixel (%d,%d) = %v, want %v (±%d, opaque)", x, y, g, w, tt.tol)
						}
					}
				}
			}
		})
	}
}

func TestDecodeWebP(t *testing.T) {
	for _, tt := range []struct{ name, ref string }{
		{"gopher-doc.with-alpha.lossless.webp", "gopher-doc.with-alpha.png"},
		{"blue-purple-pink.lossy.webp", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			data, err := os.ReadFile("testdata/" + tt.name)
			if err != nil {
				t.Fatal(err)
			}
			got, info, err := Decode(bytes.NewReader(data), Limits{})
			if err != nil {
				t.Fatal(err)
			}
			if info.Format != "webp" || info.Width != got.Rect.Dx() || info.Width < 8 {
				t.Fatalf("info %+v, bounds %v", info, got.Rect)
			}
			for i := 3; i < len(got.Pix); i += 4 {
				if got.Pix[i] != 255 {
					t.Fatalf("alpha %d at byte %d, want opaque", got.Pix[i], i)
				}
			}
			if tt.ref == "" {
				return
			}
			// Where the reference is fully opaque the colours must agree exactly.
			ref, err := os.ReadFile("testdata/" + tt.ref)
			if err != nil {
				t.Fatal(err)
			}
			raw, _, err := image.Decode(bytes.NewReader(ref))
			if err != nil {
				t.Fatal(err)
			}
			compared := 0
			for y := range got.Rect.Dy() {
				for x := range got.Rect.Dx() {
					rr, rg, rb, ra := raw.At(x, y).RGBA()
					if ra != 0xffff {
						continue
					}
					compared++
					if g := got.NRGBAAt(x, y); g.R != uint8(rr>>8) || g.G != uint8(rg>>8) || g.B != uint8(rb>>8) {
						t.Fatalf("pixel (%d,%d) = %v, want %d,%d,%d", x, y, g, rr>>8, rg>>8, rb>>8)
					}
				}
			}
			if compared == 0 || compared == got.Rect.Dx()*got.Rect.Dy() {
				t.Fatalf("compared %d pixels: want some, but not all, opaque", compared)
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	pngData := encodePNG(t, pattern(40, 30))
	jpgData := encodeJPEG(t, pattern(40, 30))
	twelveBit := append([]byte{}, jpgData...)
	if i := bytes.Index(twelveBit, []byte{0xff, 0xc0}); i < 0 {
		t.Fatal("no SOF0 in Go's JPEG")
	} else {
		twelveBit[i+4] = 12 // sample precision
	}
	tests := []struct {
		name    string
		data    []byte
		lim     Limits
		want    error
		message string
	}{
		{"zero bytes", nil, Limits{}, ErrCorrupt, "empty"},
		{"text", []byte("<html>not an image</html>"), Limits{}, ErrUnsupported, "unknown format"},
		{"png signature only", []byte("\x89PNG\r\n\x1a\n"), Limits{}, ErrCorrupt, "png header"},
		{"truncated png", pngData[:len(pngData)/2], Limits{}, ErrCorrupt, "png pixels"},
		{"png garbage after header", imagingtest.PNGHeader(10, 10, bytes.Repeat([]byte{0x5a}, 100)), Limits{}, ErrCorrupt, "png"},
		{"truncated jpeg", jpgData[:len(jpgData)/2], Limits{}, ErrCorrupt, "jpeg pixels"},
		{"jpeg header cut", jpgData[:20], Limits{}, ErrCorrupt, "jpeg header"},
		{"12-bit jpeg", twelveBit, Limits{}, ErrUnsupported, "precision"},
		{"huge header", imagingtest.PNGHeader(50000, 50000, nil), Limits{}, ErrTooLarge, "image is 50000x50000 pixels, over the limit of 80000000"},
		{"side over MaxSide", encodePNG(t, pattern(40, 3)), Limits{MaxSide: 39}, ErrTooLarge, "a side over the limit of 39"},
		{"pixels over MaxPixels", pngData, Limits{MaxPixels: 1199}, ErrTooLarge, "40x30 pixels, over the limit of 1199"},
		{"side under MinSide", encodePNG(t, pattern(40, 3)), Limits{MinSide: 4}, ErrTooSmall, "under the minimum of 4"},
		{"bytes over MaxBytes", pngData, Limits{MaxBytes: int64(len(pngData) - 1)}, ErrTooLarge, "bytes"},
		{"trailing bytes over MaxBytes", append(append([]byte{}, pngData...), make([]byte, 100)...), Limits{MaxBytes: int64(len(pngData) + 50)}, ErrTooLarge, "bytes"},
		{"cmyk jpeg without adobe segment", bytes.Replace(imagingtest.CMYKJPEG(8, 1, 2, 3, 4), []byte("Adobe"), []byte("Xdobe"), 1), Limits{}, ErrUnsupported, "4-component"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img, _, err := Decode(bytes.NewReader(tt.data), tt.lim)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Decode = %v, want %v", err, tt.want)
			}
			if img != nil {
				t.Errorf("image %v returned with error", img.Rect)
			}
			if !strings.Contains(err.Error(), tt.message) {
				t.Errorf("error %q does not say %q", err, tt.message)
			}
		})
	}
}

func TestDecodeExactlyMaxBytes(t *testing.T) {
	data := encodePNG(t, pattern(4, 4))
	if _, _, err := Decode(bytes.NewReader(data), Limits{MaxBytes: int64(len(data))}); err != nil {
		t.Fatalf("input of exactly MaxBytes: %v", err)
	}
}

func TestDecodeReadError(t *testing.T) {
	boom := errors.New("connection reset")
	data := encodePNG(t, pattern(40, 30))
	for _, n := range []int{0, 30, len(data) - 10} {
		r := io.MultiReader(bytes.NewReader(data[:n]), iotest.ErrReader(boom))
		if _, _, err := Decode(r, Limits{}); !errors.Is(err, boom) && !errors.Is(err, ErrCorrupt) {
			t.Errorf("after %d bytes: %v, want the reader's error", n, err)
		}
	}
	// Before anything is read the reader's own error is reported, not "empty".
	if _, _, err := Decode(iotest.ErrReader(boom), Limits{}); !errors.Is(err, boom) {
		t.Errorf("got %v, want %v", err, boom)
	}
}

// A small file claiming 50000x50000 pixels fails from its header alone, reading and
// allocating next to nothing, even when more (garbage) follows.
func TestDecodeHugeHeaderFailsFast(t *testing.T) {
	data := imagingtest.PNGHeader(50000, 50000, bytes.Repeat([]byte{0}, 1<<20))
	r := &countingReader{r: bytes.NewReader(data)}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, _, err := Decode(r, Limits{MaxPixels: 40_000_000})
	runtime.ReadMemStats(&after)
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "image is 50000x50000 pixels, over the limit of 40000000") {
		t.Fatalf("Decode = %v", err)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 1<<20 {
		t.Errorf("allocated %d bytes for a refused header", alloc)
	}
	if r.n > 64<<10 {
		t.Errorf("read %d bytes to refuse a header", r.n)
	}
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// Decoding is correct however the reader splits its bytes.
func TestDecodeOneByteReader(t *testing.T) {
	want := pattern(10, 7)
	got, _, err := Decode(iotest.OneByteReader(bytes.NewReader(encodePNG(t, want))), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Pix, want.Pix) {
		t.Error("pixels differ")
	}
	jpg := imagingtest.WithExif(encodeJPEG(t, quadrants(16, 8)), "MM", 6)
	_, info, err := Decode(iotest.HalfReader(bytes.NewReader(jpg)), Limits{})
	if err != nil || info.Orientation != 6 || info.Width != 8 {
		t.Fatalf("info %+v, err %v", info, err)
	}
}

func TestToNRGBAPremultiplied(t *testing.T) {
	src := image.NewRGBA(image.Rect(5, 5, 8, 6)) // non-zero origin
	src.SetRGBA(5, 5, color.RGBA{100, 50, 0, 200})
	src.SetRGBA(6, 5, color.RGBA{0, 0, 0, 0})
	src.SetRGBA(7, 5, color.RGBA{10, 20, 30, 255})
	rgba64 := image.NewRGBA64(image.Rect(0, 0, 1, 1))
	rgba64.SetRGBA64(0, 0, color.RGBA64{0x4000, 0x2000, 0, 0x8000})
	cmyk := image.NewCMYK(image.Rect(0, 0, 1, 1))
	cmyk.SetCMYK(0, 0, color.CMYK{0, 255, 255, 0})
	ycc := image.NewYCbCr(image.Rect(0, 0, 2, 2), image.YCbCrSubsampleRatio420)
	ycc.Y[0], ycc.Cb[0], ycc.Cr[0] = 76, 85, 255 // about red
	tests := []struct {
		name string
		img  image.Image
		want []uint8
	}{
		{"rgba unpremultiplied", src, []uint8{127, 63, 0, 255, 0, 0, 0, 255, 10, 20, 30, 255}},
		{"rgba64 unpremultiplied", rgba64, []uint8{127, 63, 0, 255}},
		{"cmyk", cmyk, []uint8{255, 0, 0, 255}},
		{"ycbcr", image.Image(ycc.SubImage(image.Rect(0, 0, 1, 1))), []uint8{254, 0, 0, 255}},
		{"uniform (generic path)", image.NewUniform(color.NRGBA{9, 8, 7, 1}), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.want == nil {
				// image.Uniform is unbounded; use a bounded view instead.
				got := ToNRGBA(&bounded{tt.img, image.Rect(0, 0, 2, 1)})
				// color.NRGBA keeps its stored colour even at alpha 1.
				if want := []uint8{9, 8, 7, 255, 9, 8, 7, 255}; !bytes.Equal(got.Pix, want) {
					t.Errorf("got %v, want %v", got.Pix, want)
				}
				return
			}
			got := ToNRGBA(tt.img)
			if got.Rect.Min != (image.Point{}) {
				t.Errorf("origin %v", got.Rect.Min)
			}
			for i := range tt.want {
				if !near(got.Pix[i], tt.want[i], 1) {
					t.Fatalf("got %v, want %v", got.Pix, tt.want)
				}
			}
		})
	}
}

type bounded struct {
	image.Image
	r image.Rectangle
}

func (b *bounded) Bounds() image.Rectangle { return b.r }
