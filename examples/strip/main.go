// Command strip draws before / style / after strips from the demo's images (examples/demo.Strip):
//
//	go run ./examples/strip -o strip.png CONTENT STYLE RESULT [CONTENT STYLE RESULT ...]
//
// Each triple is one row, every image scaled to -height pixels high. The README's strip is
// made this way from `nst run --manifest examples/demo.yaml`'s outputs (see the README).
package main

import (
	"flag"
	"fmt"
	"image"
	"os"

	"github.com/nst-project/nst/examples/demo"
	"github.com/nst-project/nst/transfer/imaging"
)

func main() {
	out := flag.String("o", "strip.png", "output PNG")
	height := flag.Int("height", 128, "height of each image in pixels")
	flag.Parse()
	if err := run(*out, *height, flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "strip:", err)
		os.Exit(2)
	}
}

func run(out string, height int, paths []string) error {
	if len(paths) == 0 || len(paths)%3 != 0 {
		return fmt.Errorf("want CONTENT STYLE RESULT triples, got %d paths", len(paths))
	}
	var rows [][]*image.NRGBA
	for i := 0; i < len(paths); i += 3 {
		var row []*image.NRGBA
		for _, p := range paths[i : i+3] {
			img, err := load(p)
			if err != nil {
				return err
			}
			row = append(row, img)
		}
		rows = append(rows, row)
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	if err := imaging.Encode(f, demo.Strip(rows, height, 4), "png", 0); err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", out, err)
	}
	return f.Close()
}

func load(path string) (*image.NRGBA, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	img, _, err := imaging.Decode(f, imaging.DefaultLimits())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return img, nil
}
