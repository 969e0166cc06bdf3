package transfer

import (
	"errors"
	"image"
	"strings"
	"testing"
)

// TestMinSide: the minimum side follows VGG19's pools before the deepest layer, as the torch
// engine's check does (conv5_1: 16, conv4_2: 8, conv1_1: 1).
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

// TestFakeEnforceMinSide: with EnforceMinSide, Fake refuses what the torch engine refuses.
func TestFakeEnforceMinSide(t *testing.T) {
	solid := func(w, h int) *image.NRGBA {
		img := image.NewNRGBA(image.Rect(0, 0, w, h))
		for i := range img.Pix {
			img.Pix[i] = uint8(i * 7)
		}
		return img
	}
	p := DefaultParams()
	p.Size, p.Steps = 64, 1
	cases := []struct {
		name           string
		content, style image.Image
		scales         int
		want           string // "" means success
	}{
		{"1x1 content", solid(1, 1), solid(32, 32), 1, "the content is 1x1 px at scale 1 of 1; conv5_1 needs at least 16 px per side"},
		{"thin content", solid(200, 10), solid(32, 32), 1, "the content is 64x3 px"},
		{"16x16", solid(16, 16), solid(4, 4), 1, ""}, // styles are resized to the content
		{"pyramid too deep", solid(64, 64), solid(64, 64), 3, "the content is 8x8 px at scale 1 of 3"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			q := p
			q.Scales = c.scales
			if c.scales == 3 {
				q.Size = 32 // scale 1 is 8x8
			}
			_, err := Fake{EnforceMinSide: true}.Stylize(t.Context(), Request{Content: c.content, Styles: []image.Image{c.style}, Params: q})
			if c.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrBadInput) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("err = %v, want ErrBadInput with %q", err, c.want)
			}
			if _, err := (Fake{}).Stylize(t.Context(), Request{Content: c.content, Styles: []image.Image{c.style}, Params: q}); err != nil {
				t.Errorf("without EnforceMinSide: %v", err)
			}
		})
	}
}
