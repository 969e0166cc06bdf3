package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReportRefusesOverlap: nst report writes only under {output}/_report/, so it can write
// over an input only if the output overlaps an input directory, and over a pair's outputs
// only if a preset could be named "_report". Both are refused with exit 2, naming the fields,
// before anything is written. (Other spellings of one directory, such as a link, are issue
// 17's defect 2, judged in manifests.)
func TestReportRefusesOverlap(t *testing.T) {
	for _, c := range []struct {
		name, output, presets string
		want                  []string
	}{
		{"output is the contents", "file://./data/contents/", "", []string{"spec.output.url", "same directory as spec.inputs.contents.url"}},
		{"output inside the styles", "file://./data/styles/sheet/?create_dir=true", "", []string{"spec.output.url", "inside spec.inputs.styles.url"}},
		{"output holds the inputs", "file://./data/", "", []string{"spec.output.url", "holds spec.inputs.contents.url"}},
		{"preset named like the sheet's directory", "file://./out/?create_dir=true", "  presets: [{name: _report}]\n", []string{"spec.presets[0].name", `"_report"`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			man := demoManifest(t)
			dir := filepath.Dir(man)
			b, err := os.ReadFile(man)
			if err != nil {
				t.Fatal(err)
			}
			m := strings.Replace(string(b), "file://./out/?create_dir=true", c.output, 1) + c.presets
			if err := os.WriteFile(man, []byte(m), 0o644); err != nil {
				t.Fatal(err)
			}
			before := snapshot(t, dir)
			code, stdout, stderr := runArgs(t, nil, "report", "--manifest", man)
			if code != exitUsage {
				t.Errorf("exit %d, want %d\nstdout %s\nstderr %s", code, exitUsage, stdout, stderr)
			}
			for _, w := range c.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr does not say %q: %s", w, stderr)
				}
			}
			if after := snapshot(t, dir); !mapsEqual(before, after) {
				t.Errorf("nst report changed the directory:\nbefore %v\nafter  %v", before, after)
			}
		})
	}
}
