package transfer

import (
	"fmt"
	"image"
	"math"

	"github.com/nst-project/nst/transfer/imaging"
)

// Level is one level of the coarse-to-fine pyramid: the content and each style scaled for it.
type Level struct {
	Content *image.NRGBA
	Styles  []*image.NRGBA
}

// Size is the level's image size, the size of the image optimised at this level.
func (l Level) Size() image.Point { return l.Content.Rect.Size() }

// Pyramid scales content and styles for each level of p's pyramid, as every engine must, so
// that they agree on sizes and on what they refuse:
//   - the content is fitted to p.Size (never scaled up; 0 keeps it), and with Scales = n > 1
//     level i of n has longest side longest/2^(n-1-i), the last level the fitted content;
//   - each style is resized to the level content's shape (StyleScale 0 or 1, as the seed
//     does) or to StyleScale times its longest side, keeping the style's aspect ratio;
//   - an image with a side under MinSide(p) at any level is refused with an error wrapping
//     ErrBadInput that names its size, the level and the layer that needs more.
//
// content and styles must not be nil (Request.Validate). Images that need no scaling are
// returned as they are, not copied.
func Pyramid(p Params, content *image.NRGBA, styles []*image.NRGBA) ([]Level, error) {
	full := imaging.Fit(content, p.Size)
	longest := max(full.Rect.Dx(), full.Rect.Dy())
	n := max(p.Scales, 1)
	need := MinSide(p)
	layer := vggLayers[deepestLayer(p)]
	levels := make([]Level, n)
	for i := range levels {
		c := full
		if k := n - 1 - i; k > 0 {
			c = imaging.Fit(full, max(longest>>k, 1))
		}
		cw, ch := c.Rect.Dx(), c.Rect.Dy()
		if cw < need || ch < need {
			return nil, fmt.Errorf("%w: the content is %dx%d px at scale %d of %d; %s needs at least %d px per side",
				ErrBadInput, cw, ch, i+1, n, layer, need)
		}
		levels[i].Content = c
		for _, s := range styles {
			var sc *image.NRGBA
			if p.StyleScale == 0 || p.StyleScale == 1 {
				sc = imaging.Resize(s, cw, ch)
			} else {
				ratio := p.StyleScale * float64(max(cw, ch)) / float64(max(s.Rect.Dx(), s.Rect.Dy()))
				sc = imaging.Resize(s, int(math.Round(float64(s.Rect.Dx())*ratio)), int(math.Round(float64(s.Rect.Dy())*ratio)))
			}
			if sc.Rect.Dx() < need || sc.Rect.Dy() < need {
				return nil, fmt.Errorf("%w: a style is %dx%d px at scale %d of %d; %s needs at least %d px per side",
					ErrBadInput, sc.Rect.Dx(), sc.Rect.Dy(), i+1, n, layer, need)
			}
			levels[i].Styles = append(levels[i].Styles, sc)
		}
	}
	return levels, nil
}

// deepestLayer is the position in LayerNames of p's deepest layer, content or style (0 if
// none is known).
func deepestLayer(p Params) int {
	d := max(LayerIndex(p.ContentLayer), 0)
	for _, l := range p.StyleLayers {
		d = max(d, LayerIndex(l.Layer))
	}
	return d
}
