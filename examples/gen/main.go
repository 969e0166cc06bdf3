// Command gen writes the demo's input images (examples/demo.Images) under examples/data (or
// the directory given): contents/*.png and styles/*.png, removing other PNGs there (an earlier
// demo's). `make setup` runs it; run it again with `go run ./examples/gen` (it overwrites; the
// images are the same every time).
package main

import (
	"fmt"
	"image/png"
	"os"
	"path/filepath"

	"github.com/nst-project/nst/examples/demo"
)

func main() {
	dir := "examples/data"
	if len(os.Args) > 1 {
		dir = os.Args[1]
	}
	if err := generate(dir); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

// generate writes the demo's images under dir, and removes PNGs of earlier versions of the
// demo from its contents/ and styles/ (the demo stylises every PNG there).
func generate(dir string) error {
	images := demo.Images()
	for _, sub := range []string{"contents", "styles"} {
		old, _ := filepath.Glob(filepath.Join(dir, sub, "*.png"))
		for _, p := range old {
			if _, ok := images[sub+"/"+filepath.Base(p)]; !ok {
				if err := os.Remove(p); err != nil {
					return err
				}
			}
		}
	}
	for name, img := range images {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		f, err := os.Create(p)
		if err != nil {
			return err
		}
		if err := png.Encode(f, img); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
	}
	fmt.Printf("gen: wrote %d images under %s\n", len(images), dir)
	return nil
}
