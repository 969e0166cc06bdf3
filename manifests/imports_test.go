package manifests

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestImportsNothingOfOurs keeps manifests a leaf: the pipeline turns the schema into the
// engine's parameters, so the schema and the engine change apart, and no cgo comes in.
func TestImportsNothingOfOurs(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, name := range files {
		f, err := parser.ParseFile(fset, name, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if p == "C" || strings.HasPrefix(p, "github.com/nst-project/nst/") || strings.HasPrefix(p, "github.com/sugarme/") {
				t.Errorf("%s imports %s", name, p)
			}
		}
	}
}
