package torch

import (
	"context"
	"errors"
	"image"
	"testing"

	"github.com/nst-project/nst/transfer"
)

// BenchmarkBatch compares stepping 4 pairs as one batch with 4 single runs (64 px, narrow VGG).
func BenchmarkBatch(b *testing.B) {
	e := narrowEngine(b, "vgg19-narrow.pth")
	p := transfer.DefaultParams()
	p.Size, p.Steps = 64, 20
	reqs := make([]transfer.Request, 4)
	for i := range reqs {
		reqs[i] = transfer.Request{Content: loadPNG(b, "content.png"), Styles: []image.Image{loadPNG(b, "style.png")}, Params: p}
	}
	b.Run("batched", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if _, errs := e.StylizeBatch(context.Background(), reqs); errors.Join(errs...) != nil {
				b.Fatal(errs)
			}
		}
	})
	b.Run("one-by-one", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			for _, r := range reqs {
				if _, err := e.Stylize(context.Background(), r); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}
