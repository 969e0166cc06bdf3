package manifests

import (
	"errors"
	"strings"
	"testing"
	"testing/iotest"
)

func TestLoadPresets(t *testing.T) {
	f := "presets:\n  - {name: soft, styleWeight: 1e5}\n  - name: loud\n    styleLayers:\n      conv4_1: 1\n      conv1_1: 2\n"
	ps, err := LoadPresets(strings.NewReader(f))
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 2 || ps[0].Name != "soft" || *ps[0].StyleWeight != 1e5 || ps[1].StyleLayers[0].Layer != "conv4_1" {
		t.Fatalf("presets = %+v", ps)
	}
	if !ps[0].FromFile || ps[1].Line != 3 || ps[1].LineOf("styleLayers") != 4 || ps[1].StyleLayers[1].Line != 6 {
		t.Errorf("FromFile %v, lines %d %d %d; want true 3 4 6", ps[0].FromFile, ps[1].Line, ps[1].LineOf("styleLayers"), ps[1].StyleLayers[1].Line)
	}
}

func TestLoadPresetsProblems(t *testing.T) {
	for _, tc := range []struct {
		name string
		doc  string
		want []string
	}{
		{"unknown field", "presets: [{name: a, stylWeight: 1}]\n", []string{"line 1: presets[0].stylWeight: unknown field"}},
		{"unknown top-level field", "presets: [{name: a}]\nspec: {}\n", []string{"line 2: spec: unknown field"}},
		{"wrong type", "presets:\n  - name: a\n    steps: many\n", []string{`line 3: presets[0].steps: want an integer, found "many"`}},
		{"duplicate key", "presets:\n  - name: a\n    name: b\n", []string{"line 3: presets[0].name: duplicate key (first at line 2)"}},
		{"validated", "presets:\n  - {name: a}\n  - {name: a, styleWeight: -3, contentLayer: conv9_9}\n", []string{
			`line 3: presets[1].name: "a" is already used by presets[0] (line 2)`,
			`line 3: presets[1].styleWeight: -3 must be >= 0`,
			`line 3: presets[1].contentLayer: "conv9_9" is not a VGG19 conv layer name (conv1_1, conv1_2, conv2_1, conv2_2, conv3_1..conv5_4)`,
		}},
		{"missing", "{}\n", []string{"line 1: presets: is required"}},
		{"empty list", "presets: []\n", []string{"line 1: presets: at least one preset is needed"}},
		{"empty file", "", []string{"the presets file is empty"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ps, err := LoadPresets(strings.NewReader(tc.doc))
			if err == nil {
				t.Fatalf("LoadPresets = %+v, want an error", ps)
			}
			if got := messages(t, err); strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
	boom := errors.New("boom")
	if _, err := LoadPresets(iotest.ErrReader(boom)); !errors.Is(err, boom) {
		t.Errorf("read error %v, want it wrapped", err)
	}
}

func TestMergePresets(t *testing.T) {
	m, err := Parse([]byte(plus("  presets:\n    - {name: default, styleWeight: 1e6}\n    - {name: bold, styleWeight: 1e7}\n  presetsFrom: mem://cfg/p.yaml\n")))
	if err != nil {
		t.Fatal(err)
	}
	if !m.HasPresetsFrom() {
		t.Fatal("HasPresetsFrom = false")
	}
	file, err := LoadPresets(strings.NewReader("presets:\n  - {name: soft, styleWeight: 1e5}\n  - {name: loud, styleWeight: 1e8}\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name           string
		manifest, file []Preset
		want           string // names in order
	}{
		{"manifest then file", m.Spec.Presets, file, "default,bold,soft,loud"},
		{"file only", nil, file, "soft,loud"},
		{"manifest only", m.Spec.Presets, nil, "default,bold"},
		{"neither: implicit default", nil, nil, "default"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := MergePresets(tc.manifest, tc.file)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, p := range got {
				names = append(names, p.Name)
			}
			if strings.Join(names, ",") != tc.want {
				t.Errorf("names %v, want %s", names, tc.want)
			}
		})
	}

	got, _ := MergePresets(m.Spec.Presets, file)
	*got[0].StyleWeight = 0
	if *m.Spec.Presets[0].StyleWeight != 1e6 {
		t.Error("MergePresets result shares memory with its input")
	}
	if got[2].FromFile != true || got[2].Line != 2 || got[0].FromFile || got[0].Line != 16 {
		t.Errorf("sources lost: %+v", got)
	}

	dup, err := LoadPresets(strings.NewReader("presets:\n  - {name: soft}\n  - {name: bold, styleWeight: 1}\n"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = MergePresets(m.Spec.Presets, dup)
	want := []string{`line 3: presets[1].name: preset "bold" is also defined in the manifest (line 17)`}
	if got := messages(t, err); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("duplicate across files: %q, want %q", got, want)
	}
}
