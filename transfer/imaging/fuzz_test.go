package imaging

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"image"
	"image/color"
	"image/gif"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/image/bmp"
	"golang.org/x/image/tiff"

	"github.com/nst-project/nst/transfer/imaging/imagingtest"
)

var writeCorpus = flag.Bool("write-corpus", false, "rewrite testdata/fuzz/FuzzDecode from the generated seeds")

// fuzzSeeds are small valid and broken inputs of every format.
func fuzzSeeds(t testing.TB) map[string][]byte {
	pat := pattern(6, 4)
	png := encodePNG(t, pat)
	var g, b, tf bytes.Buffer
	pal := image.NewPaletted(image.Rect(0, 0, 3, 2), color.Palette{color.NRGBA{1, 2, 3, 255}, color.NRGBA{200, 100, 0, 255}})
	if err := gif.Encode(&g, pal, nil); err != nil {
		t.Fatal(err)
	}
	if err := bmp.Encode(&b, pat); err != nil {
		t.Fatal(err)
	}
	if err := tiff.Encode(&tf, pat, nil); err != nil {
		t.Fatal(err)
	}
	webp, err := os.ReadFile("testdata/gopher-doc.1bpp.lossless.webp")
	if err != nil {
		t.Fatal(err)
	}
	return map[string][]byte{
		"png":          png,
		"png-trunc":    png[:len(png)-9],
		"png-huge":     imagingtest.PNGHeader(50000, 50000, nil),
		"jpeg-exif":    imagingtest.WithExif(encodeJPEG(t, quadrants(8, 8)), "II", 6),
		"jpeg-cmyk":    imagingtest.CMYKJPEG(8, 10, 20, 30, 40),
		"gif":          g.Bytes(),
		"bmp":          b.Bytes(),
		"tiff":         tf.Bytes(),
		"webp":         webp,
		"not-an-image": []byte("hello"),
	}
}

// TestWriteFuzzCorpus regenerates the committed seed corpus with -write-corpus.
func TestWriteFuzzCorpus(t *testing.T) {
	if !*writeCorpus {
		t.Skip("run with -write-corpus to rewrite testdata/fuzz/FuzzDecode")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzDecode")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range fuzzSeeds(t) {
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", data)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// FuzzDecode: Decode never panics, and what it accepts respects the limits and its contract.
func FuzzDecode(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0xff, 0xd8, 0xff, 0xe1, 0x00, 0x08, 'E', 'x', 'i', 'f', 0, 0})
	lim := Limits{MaxBytes: 1 << 20, MaxPixels: 1 << 16, MaxSide: 1024, MinSide: 1}
	f.Fuzz(func(t *testing.T, data []byte) {
		img, info, err := Decode(bytes.NewReader(data), lim)
		if err != nil {
			if img != nil {
				t.Fatal("image with error")
			}
			for _, s := range []error{ErrTooLarge, ErrTooSmall, ErrUnsupported, ErrCorrupt} {
				if errors.Is(err, s) {
					return
				}
			}
			t.Fatalf("unclassified error %v", err)
		}
		w, h := img.Rect.Dx(), img.Rect.Dy()
		if img.Rect.Min != (image.Point{}) || w != info.Width || h != info.Height {
			t.Fatalf("bounds %v, info %+v", img.Rect, info)
		}
		if int64(w)*int64(h) > lim.MaxPixels || max(w, h) > lim.MaxSide || min(w, h) < 1 {
			t.Fatalf("%dx%d accepted over the limits", w, h)
		}
		if info.Orientation < 1 || info.Orientation > 8 {
			t.Fatalf("orientation %d", info.Orientation)
		}
		for i := 3; i < len(img.Pix); i += 4 {
			if img.Pix[i] != 255 {
				t.Fatalf("alpha %d", img.Pix[i])
			}
		}
	})
}
