package transfer

import (
	"errors"
	"image"
	"strings"
	"testing"
)

// TestMinSide: the minimum side follows VGG19's pools before the deepest layer (conv5_1: 16,
// conv4_2: 8, conv1_2: 1).
func TestMinSide(t *testing.T) {
	p := DefaultParams()
	if got := MinSide(p); got != 16 {
		t.Errorf("defaults: %d, want 16", got)
	}
	p.StyleLayers = []LayerWeight{{Layer: "conv1_1", Weight: 1}}
	if got := MinSide(p); got != 8 { // content conv4_2
		t.Errorf("conv4_2: %d, want 8", got)
	}
	p.ContentLayer = "conv1_2"
	if got := MinSide(p); got != 1 {
		t.Errorf("conv1_2: %d, want 1", got)
	}
	p.StyleLayers = []LayerWeight{{Layer: "conv5_4", Weight: 1}}
	if got := MinSide(p); got != 16 {
		t.Errorf("conv5_4: %d, want 16", got)
	}
}

func solid(w, h int) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for i := range img.Pix {
		img.Pix[i] = uint8(i * 7)
	}
	return img
}

// TestPyramid: the sizes of each level, and what is refused (the engines' own refusals are
// transfertest's).
func TestPyramid(t *testing.T) {
	p := DefaultParams()
	p.Size = 64
	cases := []struct {
		name           string
		content, style *image.NRGBA
		scales         int
		styleScale     float64
		want           []image.Point // content size per level; nil: refused with wantErr
		wantStyle      image.Point   // the last level's style size
		wantErr        string
	}{
		{"fits", solid(200, 100), solid(30, 30), 1, 1, []image.Point{{64, 32}}, image.Pt(64, 32), ""},
		{"never scaled up", solid(20, 30), solid(30, 30), 1, 1, []image.Point{{20, 30}}, image.Pt(20, 30), ""},
		{"three levels", solid(64, 64), solid(30, 30), 3, 1, []image.Point{{16, 16}, {32, 32}, {64, 64}}, image.Pt(64, 64), ""},
		{"style scale keeps the style's aspect", solid(64, 64), solid(40, 20), 1, 0.5, []image.Point{{64, 64}}, image.Pt(32, 16), ""},
		{"1x1 content", solid(1, 1), solid(32, 32), 1, 1, nil, image.Point{}, "the content is 1x1 px at scale 1 of 1; conv5_1 needs at least 16 px per side"},
		{"thin content", solid(200, 10), solid(32, 32), 1, 1, nil, image.Point{}, "the content is 64x3 px"},
		{"pyramid too deep", solid(64, 64), solid(64, 64), 4, 1, nil, image.Point{}, "the content is 8x8 px at scale 1 of 4"},
		{"levels never vanish", solid(64, 64), solid(64, 64), 8, 1, nil, image.Point{}, "the content is 1x1 px at scale 1 of 8"},
		{"style too small", solid(64, 64), solid(40, 10), 1, 0.5, nil, image.Point{}, "a style is 32x8 px at scale 1 of 1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			q := p
			q.Scales, q.StyleScale = c.scales, c.styleScale
			levels, err := Pyramid(q, c.content, []*image.NRGBA{c.style})
			if c.want == nil {
				if !errors.Is(err, ErrBadInput) || !strings.Contains(err.Error(), c.wantErr) {
					t.Errorf("err = %v, want ErrBadInput with %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []image.Point
			for _, l := range levels {
				got = append(got, l.Size())
				if len(l.Styles) != 1 {
					t.Fatalf("%d styles at a level", len(l.Styles))
				}
			}
			if len(got) != len(c.want) || got[len(got)-1] != c.want[len(c.want)-1] || got[0] != c.want[0] {
				t.Errorf("levels %v, want %v", got, c.want)
			}
			if s := levels[len(levels)-1].Styles[0].Rect.Size(); s != c.wantStyle {
				t.Errorf("style %v, want %v", s, c.wantStyle)
			}
		})
	}
}
