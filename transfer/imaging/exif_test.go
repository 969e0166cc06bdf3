package imaging

import (
	"bytes"
	"image/color"
	"testing"

	"github.com/nst-project/nst/transfer/imaging/imagingtest"
)

// The stored image is 48x32 with quadrants red (top left), green (top right), blue (bottom
// left) and white (bottom right); each orientation must put them where a viewer shows them.
func TestDecodeExifOrientation(t *testing.T) {
	var (
		R = color.NRGBA{255, 0, 0, 255}
		G = color.NRGBA{0, 255, 0, 255}
		B = color.NRGBA{0, 0, 255, 255}
		W = color.NRGBA{255, 255, 255, 255}
	)
	tests := []struct {
		o              uint16
		w, h           int
		tl, tr, bl, br color.NRGBA // corners as displayed
	}{
		{1, 48, 32, R, G, B, W},
		{2, 48, 32, G, R, W, B}, // mirrored left-right
		{3, 48, 32, W, B, G, R}, // rotated 180°
		{4, 48, 32, B, W, R, G}, // mirrored top-bottom
		{5, 32, 48, R, B, G, W}, // transposed
		{6, 32, 48, B, R, W, G}, // rotated 90° clockwise
		{7, 32, 48, W, G, B, R}, // transversed
		{8, 32, 48, G, W, R, B}, // rotated 90° anticlockwise
		{0, 48, 32, R, G, B, W}, // out of range: ignored
		{9, 48, 32, R, G, B, W},
	}
	stored := encodeJPEG(t, quadrants(48, 32))
	for _, order := range []string{"II", "MM"} {
		for _, tt := range tests {
			data := imagingtest.WithExif(stored, order, tt.o)
			got, info, err := Decode(bytes.NewReader(data), Limits{})
			if err != nil {
				t.Fatalf("%s orientation %d: %v", order, tt.o, err)
			}
			wantO := int(tt.o)
			if wantO < 1 || wantO > 8 {
				wantO = 1
			}
			if info.Orientation != wantO || info.Width != tt.w || info.Height != tt.h || got.Rect.Dx() != tt.w || got.Rect.Dy() != tt.h {
				t.Errorf("%s orientation %d: info %+v, bounds %v, want %dx%d", order, tt.o, info, got.Rect, tt.w, tt.h)
				continue
			}
			for _, c := range []struct {
				name string
				x, y int
				want color.NRGBA
			}{
				{"top left", 4, 4, tt.tl}, {"top right", tt.w - 5, 4, tt.tr},
				{"bottom left", 4, tt.h - 5, tt.bl}, {"bottom right", tt.w - 5, tt.h - 5, tt.br},
			} {
				g := got.NRGBAAt(c.x, c.y)
				if !near(g.R, c.want.R, 8) || !near(g.G, c.want.G, 8) || !near(g.B, c.want.B, 8) {
					t.Errorf("%s orientation %d: %s is %v, want %v", order, tt.o, c.name, g, c.want)
				}
			}
		}
	}
}

func TestJPEGOrientationMalformed(t *testing.T) {
	good := imagingtest.WithExif(encodeJPEG(t, quadrants(8, 8)), "II", 6)
	app1 := bytes.Index(good, []byte("Exif"))
	tests := []struct {
		name string
		b    []byte
		want int
	}{
		{"valid", good, 6},
		{"not jpeg", []byte("GIF89a"), 1},
		{"no exif", encodeJPEG(t, quadrants(8, 8)), 1},
		{"segment length past end", good[:app1+10], 1},
		{"bad byte order", bytes.Replace(good, []byte("II*\x00"), []byte("XX*\x00"), 1), 1},
		{"bad magic", bytes.Replace(good, []byte("II*\x00"), []byte("II+\x00"), 1), 1},
		{"IFD offset past end", bytes.Replace(good, []byte("II*\x00\x08\x00\x00\x00"), []byte("II*\x00\xff\xff\xff\xff"), 1), 1},
		{"entry count past end, tag found first", bytes.Replace(good, []byte("II*\x00\x08\x00\x00\x00\x02\x00"), []byte("II*\x00\x08\x00\x00\x00\xff\xff"), 1), 6},
		{"entry count past end, no tag", bytes.Replace(bytes.Replace(good, []byte("II*\x00\x08\x00\x00\x00\x02\x00"), []byte("II*\x00\x08\x00\x00\x00\xff\xff"), 1), []byte("\x12\x01\x03\x00"), []byte("\x13\x01\x03\x00"), 1), 1},
		{"entry count hides the tag", bytes.Replace(good, []byte("II*\x00\x08\x00\x00\x00\x02\x00"), []byte("II*\x00\x08\x00\x00\x00\x01\x00"), 1), 1},
		{"orientation of type LONG", bytes.Replace(good, []byte("\x12\x01\x03\x00"), []byte("\x12\x01\x04\x00"), 1), 1},
		{"fill bytes before marker", append([]byte{0xff, 0xd8, 0xff}, good[2:]...), 6},
		{"only SOI", []byte{0xff, 0xd8}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := jpegOrientation(tt.b); got != tt.want {
				t.Errorf("jpegOrientation = %d, want %d", got, tt.want)
			}
		})
	}
}
