package manifests

import (
	"errors"
	"os"
	"strings"
	"testing"
	"testing/iotest"
)

// base is a minimal valid manifest; tests edit it with with and plus, keeping line numbers
// predictable: spec is line 5, output.url line 14, and plus appends from line 15.
const base = `apiVersion: nst/v1
kind: StyleBatch
metadata:
  name: demo
spec:
  model:
    weights: random
  inputs:
    contents:
      url: mem://in/contents/
    styles:
      url: mem://in/styles/
  output:
    url: mem://out/
`

// with returns base with the first old replaced by new; it fails the test if old is absent.
func with(t *testing.T, old, new string) string {
	t.Helper()
	if !strings.Contains(base, old) {
		t.Fatalf("base manifest has no %q", old)
	}
	return strings.Replace(base, old, new, 1)
}

// plus returns base with extra spec lines appended (starting at line 15).
func plus(extra string) string { return base + extra }

// problems returns the messages of err, which must be an *Error.
func messages(t *testing.T, err error) []string {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not an *Error", err, err)
	}
	out := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		out[i] = p.Error()
	}
	return out
}

// wantProblems checks that Parse(doc) fails with exactly want, in order.
func wantProblems(t *testing.T, doc string, want []string) {
	t.Helper()
	m, err := Parse([]byte(doc))
	if err == nil {
		t.Fatalf("Parse succeeded (%+v), want problems:\n%s", m, strings.Join(want, "\n"))
	}
	if m != nil {
		t.Errorf("Parse returned a manifest with an error")
	}
	got := messages(t, err)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestBaseIsValid(t *testing.T) {
	m, err := Load(strings.NewReader(base))
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Spec.Presets) != 1 || m.Spec.Presets[0].Name != DefaultPreset || m.Spec.Presets[0].Line != 0 {
		t.Errorf("presets = %+v, want the one implicit preset %q", m.Spec.Presets, DefaultPreset)
	}
	if (m.Spec.Presets[0].Options.Merge(Options{}).Size) != nil {
		t.Errorf("implicit preset has overrides: %+v", m.Spec.Presets[0].Options)
	}
	if m.Spec.Inputs.Pairing != PairingCross || m.Spec.Output.Format != FormatPNG {
		t.Errorf("defaults: pairing %q format %q, want cross and png", m.Spec.Inputs.Pairing, m.Spec.Output.Format)
	}
	if !m.Spec.Model.IsRandom() || m.HasPresetsFrom() {
		t.Errorf("IsRandom %v HasPresetsFrom %v, want true false", m.Spec.Model.IsRandom(), m.HasPresetsFrom())
	}
}

func TestImplicitDefaultPreset(t *testing.T) {
	for _, tc := range []struct {
		name  string
		doc   string
		names []string
	}{
		{"none", base, []string{"default"}},
		{"empty list", plus("  presets: []\n"), []string{"default"}},
		{"given", plus("  presets: [{name: a}, {name: b}]\n"), []string{"a", "b"}},
		{"only presetsFrom", plus("  presetsFrom: mem://cfg/presets.yaml\n"), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Parse([]byte(tc.doc))
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, p := range m.Spec.Presets {
				names = append(names, p.Name)
			}
			if strings.Join(names, ",") != strings.Join(tc.names, ",") {
				t.Errorf("presets %v, want %v", names, tc.names)
			}
		})
	}
}

func TestLoadFull(t *testing.T) {
	f, err := os.Open("testdata/full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := Load(f)
	if err != nil {
		t.Fatal(err)
	}
	s := m.Spec
	for _, c := range []struct{ name, got, want string }{
		{"metadata.name", m.Metadata.Name, "catalogue-2026-11"},
		{"label", m.Metadata.Labels["cost-centre"], "42"},
		{"sha256 lower-cased", s.Model.SHA256, "dcbb9e9d0c7c6e4e1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d"},
		{"contents url made a directory, query kept", s.Inputs.Contents.URL, "s3://photos/catalogue/?region=eu-west-1"},
		{"styles url", s.Inputs.Styles.URL, "gs://art/styles/"},
		{"styles keys", strings.Join(s.Inputs.Styles.Keys, ","), "wave.jpg,starry-night.jpg"},
		{"output url made a directory", s.Output.URL, "s3://photos/stylized/"},
		{"jpg is jpeg", s.Output.Format, FormatJPEG},
		{"presetsFrom", s.PresetsFrom, "s3://config/weights-2026-11.yaml"},
		{"optimizer", *s.Params.Optimizer, "lbfgs"},
		{"contentLayer", *s.Params.ContentLayer, "conv4_2"},
	} {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
		}
	}
	if *s.Params.Size != 512 || *s.Params.Steps != 300 || *s.Params.Tolerance != 1e-9 || *s.Params.Seed != 0 ||
		*s.Params.PreserveColors || *s.Output.JPEGQuality != 92 || len(s.Params.StyleBlend) != 2 {
		t.Errorf("params decoded wrong: %+v", s.Params)
	}
	// StyleLayers keep the YAML's order, not sorted.
	var layers []string
	for _, l := range s.Params.StyleLayers {
		layers = append(layers, l.Layer)
	}
	if got := strings.Join(layers, ","); got != "conv5_1,conv1_1,conv3_1" {
		t.Errorf("style layers in order %s, want conv5_1,conv1_1,conv3_1", got)
	}
	if l := s.Params.StyleLayers[1]; l.Weight != 1 || l.Line != 38 {
		t.Errorf("styleLayers[1] = %+v, want weight 1 at line 38", l)
	}
	// Lines of options and presets, for the pipeline's own messages.
	for _, c := range []struct {
		name      string
		got, want int
	}{
		{"params.size", s.Params.LineOf("size"), 23},
		{"params.contentLayer", s.Params.LineOf("contentLayer"), 35},
		{"params.contentWeight (unset)", s.Params.LineOf("contentWeight"), 0},
		{"presets[0]", s.Presets[0].Line, 42},
		{"presets[1]", s.Presets[1].Line, 43},
		{"presets[1].styleWeight", s.Presets[1].LineOf("styleWeight"), 44},
		{"presets[2].lr", s.Presets[2].LineOf("lr"), 48},
	} {
		if c.got != c.want {
			t.Errorf("line of %s = %d, want %d", c.name, c.got, c.want)
		}
	}
	if got := []string{s.Presets[0].Name, s.Presets[1].Name, s.Presets[2].Name}; strings.Join(got, ",") != "default,bold,quick.adam" {
		t.Errorf("presets %v", got)
	}
	if *s.Presets[1].StyleWeight != 1e7 || s.Presets[1].StyleLayers[1].Layer != "conv2_1" {
		t.Errorf("preset bold = %+v", s.Presets[1].Options)
	}
}

func TestLoadReadError(t *testing.T) {
	boom := errors.New("boom")
	_, err := Load(iotest.ErrReader(boom))
	if !errors.Is(err, boom) {
		t.Fatalf("Load error %v, want it to wrap %v", err, boom)
	}
	var e *Error
	if errors.As(err, &e) {
		t.Errorf("a read error is reported as a manifest problem: %v", err)
	}
}

func TestStrictDecoding(t *testing.T) {
	for _, tc := range []struct {
		name string
		doc  string
		want []string
	}{
		{"unknown top-level field", "apiVerison: nst/v1\n" + base[len("apiVersion: nst/v1\n"):],
			[]string{"line 1: apiVerison: unknown field", "line 1: apiVersion: is required (want nst/v1)"}},
		{"unknown spec field", with(t, "  inputs:\n", "  inputz: {}\n  inputs:\n"),
			[]string{"line 8: spec.inputz: unknown field"}},
		{"unknown nested field", with(t, "      url: mem://in/styles/\n", "      url: mem://in/styles/\n      urls: [x]\n"),
			[]string{"line 13: spec.inputs.styles.urls: unknown field"}},
		{"unknown preset field", plus("  presets:\n    - name: a\n      styleWieght: 3\n"),
			[]string{"line 17: spec.presets[0].styleWieght: unknown field"}},
		{"Go field names are not YAML names", plus("  params: {Size: 3}\n"),
			[]string{"line 15: spec.params.Size: unknown field"}},
		{"yaml:\"-\" fields are not fields", plus("  presets: [{name: a, line: 3}]\n"),
			[]string{"line 15: spec.presets[0].line: unknown field"}},
		{"integer wanted", plus("  params:\n    size: big\n"),
			[]string{`line 16: spec.params.size: want an integer, found "big"`}},
		{"fraction for an integer", plus("  params:\n    steps: 1.5\n"),
			[]string{`line 16: spec.params.steps: want an integer, found "1.5"`}},
		{"number wanted", plus("  params:\n    lr: fast\n"),
			[]string{`line 16: spec.params.lr: want a number, found "fast"`}},
		{"bool wanted", plus("  params:\n    preserveColors: 2\n"),
			[]string{`line 16: spec.params.preserveColors: want true or false, found "2"`}},
		{"list wanted", with(t, "      url: mem://in/styles/\n", "      url: mem://in/styles/\n      include: '*.jpg'\n"),
			[]string{`line 13: spec.inputs.styles.include: want a list, found "*.jpg"`}},
		{"mapping wanted", with(t, "  model:\n    weights: random\n", "  model: random\n"),
			[]string{`line 6: spec.model: want a mapping, found "random"`}},
		{"string wanted", with(t, "    weights: random\n", "    weights: [random]\n"),
			[]string{`line 7: spec.model.weights: want a string, found a list`}},
		{"style layers want a mapping", plus("  params:\n    styleLayers: [conv1_1]\n"),
			[]string{`line 16: spec.params.styleLayers: want a mapping of layer names to weights, found a list`}},
		{"style layer weight null", plus("  params:\n    styleLayers: {conv1_1: ~}\n"),
			[]string{`line 16: spec.params.styleLayers.conv1_1: want a number, found null`}},
		{"duplicate key", with(t, "    weights: random\n", "    weights: random\n    weights: random\n"),
			[]string{"line 8: spec.model.weights: duplicate key (first at line 7)"}},
		{"duplicate style layer", plus("  params:\n    styleLayers:\n      conv1_1: 1\n      conv1_1: 2\n"),
			[]string{"line 18: spec.params.styleLayers.conv1_1: duplicate key (first at line 17)"}},
		{"duplicate label", with(t, "  name: demo\n", "  name: demo\n  labels: {a: x, a: y}\n"),
			[]string{"line 5: metadata.labels.a: duplicate key (first at line 5)"}},
		{"non-string key", plus("  params: {[a]: 1}\n"),
			[]string{"line 15: spec.params: mapping keys must be strings, found a list"}},
		{"syntax error", "apiVersion: nst/v1\nkind: [\n",
			[]string{"line 2: invalid YAML: did not find expected node content"}},
		{"two documents", base + "---\napiVersion: nst/v1\n",
			[]string{"line 15: the manifest must be one YAML document, found another"}},
		{"empty", "", []string{"the manifest is empty"}},
		{"comment only", "# nothing\n", []string{"the manifest is empty"}},
		{"not a mapping", "- a\n- b\n", []string{"line 1: want a mapping, found a list"}},
	} {
		t.Run(tc.name, func(t *testing.T) { wantProblems(t, tc.doc, tc.want) })
	}
}

func TestAliasesAndMerges(t *testing.T) {
	doc := plus(`  params: &p
    size: 256
    styleLayers: &sl {conv3_1: 1, conv1_1: 2}
  presets:
    - &base {name: a, styleWeight: 5, lr: 2}
    - <<: *base
      name: b
      lr: 3
      styleLayers: *sl
`)
	m, err := Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	b := m.Spec.Presets[1]
	if b.Name != "b" || *b.StyleWeight != 5 || *b.LR != 3 || len(b.StyleLayers) != 2 || b.StyleLayers[0].Layer != "conv3_1" {
		t.Errorf("merged preset = %+v", b)
	}
	if b.Line != 20 || b.LineOf("lr") != 22 || b.LineOf("styleWeight") != 19 {
		t.Errorf("lines: preset %d, lr %d, styleWeight %d; want 20, 22, 19 (where the anchor set it)", b.Line, b.LineOf("lr"), b.LineOf("styleWeight"))
	}
}

func TestAliasBomb(t *testing.T) {
	// Each level merges the previous one ten times: a million mappings if expanded.
	doc := "x: [&a {size: 1}"
	prev := "a"
	for _, name := range []string{"b", "c", "d", "e", "f"} {
		doc += ", &" + name + " {<<: [" + strings.Repeat("*"+prev+", ", 9) + "*" + prev + "]}"
		prev = name
	}
	doc += "]\nspec: {params: {<<: *f}}\n"
	_, err := Parse([]byte(doc))
	if err == nil || !strings.Contains(err.Error(), "line 1: spec.params: the document is too large, or uses aliases too much (over 100000 values)") {
		t.Errorf("error %v, want the alias budget to stop decoding", err)
	}
}

func TestNullListItems(t *testing.T) {
	// yaml.v3 drops null items from lists of values; a manifest treats them as mistakes.
	wantProblems(t, plus("  presets:\n    -\n    - {name: a}\n"),
		[]string{"line 16: spec.presets[0]: want a mapping, found null"})
	wantProblems(t, with(t, "      url: mem://in/styles/\n", "      url: mem://in/styles/\n      include: ['*.jpg', ~]\n"),
		[]string{"line 13: spec.inputs.styles.include[1]: want a string, found null"})
}
