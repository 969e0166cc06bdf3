package manifests

import (
	"strings"
	"testing"
)

func TestValidationProblems(t *testing.T) {
	const schemeMsg = `scheme "ftp" is not supported (want s3, gs, file, mem, azblob)`
	const layerSyntax = `is not a VGG19 conv layer name (conv1_1, conv1_2, conv2_1, conv2_2, conv3_1..conv5_4)`
	real := "    weights: s3://models/vgg19.pth\n"
	for _, tc := range []struct {
		name string
		doc  string
		want []string
	}{
		// Header.
		{"apiVersion", with(t, "apiVersion: nst/v1", "apiVersion: nst/v2"),
			[]string{`line 1: apiVersion: "nst/v2" is not supported (want nst/v1)`}},
		{"kind", with(t, "kind: StyleBatch", "kind: Job"),
			[]string{`line 2: kind: "Job" is not supported (want StyleBatch)`}},
		{"kind missing", with(t, "kind: StyleBatch\n", ""),
			[]string{`line 1: kind: is required (want StyleBatch)`}},
		{"name missing", with(t, "  name: demo\n", "  labels: {a: b}\n"),
			[]string{`line 3: metadata.name: is required`}},
		{"name not a DNS label", with(t, "name: demo", "name: Demo_1"),
			[]string{`line 4: metadata.name: "Demo_1" must be 1..63 lower-case letters, digits and '-', starting and ending with a letter or digit`}},
		{"name too long", with(t, "name: demo", "name: "+strings.Repeat("a", 64)),
			[]string{`line 4: metadata.name: "` + strings.Repeat("a", 64) + `" must be 1..63 lower-case letters, digits and '-', starting and ending with a letter or digit`}},
		{"label key", with(t, "  name: demo\n", "  name: demo\n  labels:\n    -x: y\n"),
			[]string{`line 6: metadata.labels.-x: label key must be 1..63 letters, digits, '.', '_', '-' and '/', starting and ending with a letter or digit`}},

		// Model.
		{"weights missing", with(t, "  model:\n    weights: random\n", "  model: {}\n"),
			[]string{`line 6: spec.model.weights: is required (a URL, or "random")`}},
		{"weights scheme", with(t, "weights: random", "weights: ftp://models/vgg.pth"),
			[]string{`line 7: spec.model.weights: ` + schemeMsg}},
		{"weights a directory", with(t, "weights: random", "weights: s3://models/"),
			[]string{`line 7: spec.model.weights: names no object (it ends in / or has no path)`}},
		{"sha256 not hex", with(t, "    weights: random\n", real+"    sha256: abc\n"),
			[]string{`line 8: spec.model.sha256: must be 64 hex digits, found 3 characters`}},
		{"sha256 with random", with(t, "    weights: random\n", "    weights: random\n    sha256: \""+strings.Repeat("ab", 32)+"\"\n"),
			[]string{`line 8: spec.model.sha256: is not allowed with weights: random`}},
		{"randomSeed with a URL", with(t, "    weights: random\n", real+"    randomSeed: 3\n"),
			[]string{`line 8: spec.model.randomSeed: is only allowed with weights: random`}},

		// Input URLs.
		{"contents scheme", with(t, "url: mem://in/contents/", "url: ftp://in/contents/"),
			[]string{`line 10: spec.inputs.contents.url: ` + schemeMsg}},
		{"contents no scheme", with(t, "url: mem://in/contents/", "url: photos/"),
			[]string{`line 10: spec.inputs.contents.url: has no scheme (want s3, gs, file, mem, azblob, such as s3://bucket/prefix/)`}},
		{"s3 without bucket", with(t, "url: mem://in/contents/", "url: s3:///photos/"),
			[]string{`line 10: spec.inputs.contents.url: names no bucket (want s3://bucket/prefix)`}},
		{"file with a host", with(t, "url: mem://in/contents/", "url: file://data/in/"),
			[]string{`line 10: spec.inputs.contents.url: file URL has host "data"; write file:///absolute/path or file://./relative/path`}},
		{"dot-dot in URL", with(t, "url: mem://in/contents/", "url: s3://b/a/../c/"),
			[]string{`line 10: spec.inputs.contents.url: path must not contain ".." segments`}},
		{"credentials in URL", with(t, "url: mem://in/contents/", "url: s3://key:secret@b/c/"),
			[]string{`line 10: spec.inputs.contents.url: must not hold user information (credentials belong in the environment)`}},
		{"styles url missing", with(t, "    styles:\n      url: mem://in/styles/\n", "    styles: {}\n"),
			[]string{`line 11: spec.inputs.styles.url: is required`}},

		// Filters and keys.
		{"bad include", with(t, "      url: mem://in/contents/\n", "      url: mem://in/contents/\n      include: ['*.jpg', '[a-']\n"),
			[]string{`line 11: spec.inputs.contents.include[1]: bad pattern "[a-": syntax error in pattern`}},
		{"bad exclude", with(t, "      url: mem://in/contents/\n", "      url: mem://in/contents/\n      exclude:\n        - 'a\\'\n"),
			[]string{`line 12: spec.inputs.contents.exclude[0]: bad pattern "a\\": syntax error in pattern`}},
		{"include with keys", with(t, "      url: mem://in/contents/\n", "      url: mem://in/contents/\n      keys: [a.jpg]\n      include: ['*.jpg']\n"),
			[]string{`line 12: spec.inputs.contents.include: is not allowed with keys`}},
		{"empty keys", with(t, "      url: mem://in/contents/\n", "      url: mem://in/contents/\n      keys: []\n"),
			[]string{`line 11: spec.inputs.contents.keys: is empty (leave it out to list the URL)`}},
		{"bad keys", with(t, "      url: mem://in/styles/\n", "      url: mem://in/styles/\n      keys:\n"+
			"        - ''\n        - /abs.jpg\n        - a/../b.jpg\n        - 'a\\b.jpg'\n        - ./a.jpg\n        - a//b.jpg\n        - dir/\n        - ..\n        - ok.jpg\n        - ok.jpg\n"),
			[]string{
				`line 14: spec.inputs.styles.keys[0]: is required`,
				`line 15: spec.inputs.styles.keys[1]: "/abs.jpg" must be relative (no leading /)`,
				`line 16: spec.inputs.styles.keys[2]: "a/../b.jpg" must not contain ..`,
				`line 17: spec.inputs.styles.keys[3]: "a\\b.jpg" must not contain a backslash`,
				`line 18: spec.inputs.styles.keys[4]: "./a.jpg" is not a clean key (want "a.jpg")`,
				`line 19: spec.inputs.styles.keys[5]: "a//b.jpg" is not a clean key (want "a/b.jpg")`,
				`line 20: spec.inputs.styles.keys[6]: "dir/" is not a clean key (want "dir")`,
				`line 21: spec.inputs.styles.keys[7]: ".." must not contain ..`,
				`line 23: spec.inputs.styles.keys[9]: duplicate of keys[8]`,
			}},

		// Pairing.
		{"pairing unknown", with(t, "  output:\n", "    pairing: all\n  output:\n"),
			[]string{`line 13: spec.inputs.pairing: "all" is not supported (want cross, zip or list)`}},
		{"pairs without list", with(t, "  output:\n", "    pairs: [{content: a.jpg, style: b.jpg}]\n  output:\n"),
			[]string{`line 13: spec.inputs.pairs: is only allowed with pairing: list`}},
		{"list without pairs", with(t, "  output:\n", "    pairing: list\n  output:\n"),
			[]string{`line 8: spec.inputs.pairs: pairing: list needs at least one pair`}},
		{"list with filters", with(t, "  output:\n", "    pairing: list\n    pairs: [{content: a.jpg, style: b.jpg}]\n  output:\n"),
			nil}, // replaced below
		{"pairs checked", with(t, "  output:\n", "    pairing: list\n    pairs:\n      - {content: a.jpg, style: b.jpg}\n"+
			"      - {content: a.jpg}\n      - {content: /a.jpg, style: ../b.jpg}\n      - {content: a.jpg, style: b.jpg}\n  output:\n"),
			[]string{
				`line 16: spec.inputs.pairs[1].style: is required`,
				`line 17: spec.inputs.pairs[2].content: "/a.jpg" must be relative (no leading /)`,
				`line 17: spec.inputs.pairs[2].style: "../b.jpg" must not contain ..`,
				`line 18: spec.inputs.pairs[3]: duplicate of spec.inputs.pairs[0] (line 15)`,
			}},
		{"zip with unequal keys", with(t, "  output:\n", "    pairing: zip\n  output:\n") + "", nil}, // replaced below

		// Output.
		{"output missing", with(t, "  output:\n    url: mem://out/\n", ""),
			[]string{`line 5: spec.output.url: is required`}},
		{"output scheme", with(t, "url: mem://out/", "url: ftp://out/"),
			[]string{`line 14: spec.output.url: ` + schemeMsg}},
		{"output format", plus("    format: gif\n"),
			[]string{`line 15: spec.output.format: "gif" is not supported (want png or jpeg)`}},
		{"jpegQuality with png", plus("    jpegQuality: 90\n"),
			[]string{`line 15: spec.output.jpegQuality: is only allowed with format: jpeg`}},
		{"jpegQuality range", plus("    format: jpeg\n    jpegQuality: 0\n"),
			[]string{`line 16: spec.output.jpegQuality: 0 is outside 1..100`}},
		{"output equals contents", with(t, "url: mem://out/", "url: mem://in/contents"),
			[]string{`line 14: spec.output.url: is the same directory as spec.inputs.contents.url (mem://in/contents/)`}},
		{"output inside styles", with(t, "url: mem://out/", "url: mem://in/styles/out/?nomd5=1"),
			[]string{`line 14: spec.output.url: is inside spec.inputs.styles.url (mem://in/styles/); results would be read back as inputs`}},
		{"output holds both inputs", with(t, "url: mem://out/", "url: mem://in"),
			[]string{
				`line 14: spec.output.url: holds spec.inputs.contents.url (mem://in/contents/); results would be read back as inputs`,
				`line 14: spec.output.url: holds spec.inputs.styles.url (mem://in/styles/); results would be read back as inputs`,
			}},
		{"output bucket root holds inputs", with(t, "url: mem://out/", "url: mem://in?nomd5"),
			[]string{
				`line 14: spec.output.url: holds spec.inputs.contents.url (mem://in/contents/); results would be read back as inputs`,
				`line 14: spec.output.url: holds spec.inputs.styles.url (mem://in/styles/); results would be read back as inputs`,
			}},
		{"file output inside file input", edit(with(t, "url: mem://in/contents/", "url: file:///data/in"),
			"url: mem://out/", "url: file:///data/in/out"),
			[]string{`line 14: spec.output.url: is inside spec.inputs.contents.url (file:///data/in/); results would be read back as inputs`}},

		// presetsFrom.
		{"presetsFrom a directory", plus("  presetsFrom: s3://config/\n"),
			[]string{`line 15: spec.presetsFrom: names no object (it ends in / or has no path)`}},

		// Options, in spec.params.
		{"option ranges", plus("  params:\n    size: 9000\n    steps: 0\n    optimizer: sgd\n    lr: 0\n    contentWeight: -1\n" +
			"    styleWeight: .nan\n    tvWeight: -.inf\n    contentLayer: conv2_3\n    init: random\n    scales: 9\n    styleScale: 8.5\n" +
			"    history: 0\n    tolerance: -1e-9\n    styleBlend: [1, -2]\n    precision: fp16\n"),
			[]string{
				`line 16: spec.params.size: 9000 is outside 0..8192`,
				`line 17: spec.params.steps: 0 is outside 1..1000000`,
				`line 18: spec.params.optimizer: "sgd" is not supported (want adam or lbfgs)`,
				`line 19: spec.params.lr: 0 must be a finite number > 0`,
				`line 20: spec.params.contentWeight: -1 must be >= 0`,
				`line 21: spec.params.styleWeight: NaN must be a finite number`,
				`line 22: spec.params.tvWeight: -Inf must be a finite number`,
				`line 23: spec.params.contentLayer: "conv2_3" ` + layerSyntax,
				`line 24: spec.params.init: "random" is not supported (want content or noise or style)`,
				`line 25: spec.params.scales: 9 is outside 0..8`,
				`line 26: spec.params.styleScale: 8.5 is outside 0..8`,
				`line 27: spec.params.history: 0 is outside 1..1000`,
				`line 28: spec.params.tolerance: -1e-09 must be >= 0`,
				`line 29: spec.params.styleBlend[1]: -2 must be >= 0`,
				`line 30: spec.params.precision: "fp16" is not supported (want fp32 or bf16)`,
			}},
		{"option upper bounds", plus("  params: {size: -1, steps: 1000001, lr: .inf, history: 1001, scales: -1, styleScale: -1}\n"),
			[]string{
				`line 15: spec.params.size: -1 is outside 0..8192`,
				`line 15: spec.params.steps: 1000001 is outside 1..1000000`,
				`line 15: spec.params.lr: +Inf must be a finite number > 0`,
				`line 15: spec.params.scales: -1 is outside 0..8`,
				`line 15: spec.params.styleScale: -1 is outside 0..8`,
				`line 15: spec.params.history: 1001 is outside 1..1000`,
			}},
		{"style layers", plus("  params:\n    styleLayers:\n      conv1_3: 1\n      conv6_1: 1\n      relu1_1: 1\n      conv5_4: -1\n"),
			[]string{
				`line 17: spec.params.styleLayers.conv1_3: "conv1_3" ` + layerSyntax,
				`line 18: spec.params.styleLayers.conv6_1: "conv6_1" ` + layerSyntax,
				`line 19: spec.params.styleLayers.relu1_1: "relu1_1" ` + layerSyntax,
				`line 20: spec.params.styleLayers.conv5_4: weight -1 must be >= 0`,
			}},
		{"style layers empty", plus("  params:\n    styleLayers: {}\n"),
			[]string{`line 16: spec.params.styleLayers: at least one layer is needed`}},
		{"style blend adds up to 0", plus("  params:\n    styleBlend: [0, 0]\n"),
			[]string{`line 16: spec.params.styleBlend: the weights add up to 0`}},
		{"style blend empty", plus("  params:\n    styleBlend: []\n"),
			[]string{`line 16: spec.params.styleBlend: the weights add up to 0`}},

		// Presets.
		{"preset weight", plus("  presets:\n    - {name: default, contentWeight: 1, styleWeight: 1e6}\n    - name: bold\n      styleWeight: -3\n"),
			[]string{`line 18: spec.presets[1].styleWeight: -3 must be >= 0`}},
		{"preset names", plus("  presets:\n    - {styleWeight: 1}\n    - {name: Bold}\n    - {name: .x}\n    - {name: a}\n    - {name: a}\n    - {name: " + strings.Repeat("b", 64) + "}\n"),
			[]string{
				`line 16: spec.presets[0].name: is required`,
				`line 17: spec.presets[1].name: "Bold" must be 1..63 lower-case letters, digits, '.', '_' and '-', starting with a letter or digit`,
				`line 18: spec.presets[2].name: ".x" must be 1..63 lower-case letters, digits, '.', '_' and '-', starting with a letter or digit`,
				`line 20: spec.presets[4].name: "a" is already used by spec.presets[3] (line 19)`,
				`line 21: spec.presets[5].name: "` + strings.Repeat("b", 64) + `" must be 1..63 lower-case letters, digits, '.', '_' and '-', starting with a letter or digit`,
			}},
		{"preset options", plus("  presets:\n    - name: a\n      optimizer: Adam\n      styleLayers: {conv3_5: 1}\n"),
			[]string{
				`line 17: spec.presets[0].optimizer: "Adam" is not supported (want adam or lbfgs)`,
				`line 18: spec.presets[0].styleLayers.conv3_5: "conv3_5" ` + layerSyntax,
			}},
	} {
		switch tc.name {
		case "list with filters":
			tc.doc = strings.Replace(tc.doc, "      url: mem://in/contents/\n", "      url: mem://in/contents/\n      include: ['*.jpg']\n      keys: [a.jpg]\n", 1)
			tc.want = []string{
				`line 11: spec.inputs.contents.include: is not allowed with keys`,
				`line 11: spec.inputs.contents.include: is not allowed with pairing: list`,
				`line 12: spec.inputs.contents.keys: is not allowed with pairing: list (list keys in spec.inputs.pairs)`,
			}
		case "zip with unequal keys":
			tc.doc = strings.Replace(tc.doc, "      url: mem://in/contents/\n", "      url: mem://in/contents/\n      keys: [a.jpg, b.jpg]\n", 1)
			tc.doc = strings.Replace(tc.doc, "      url: mem://in/styles/\n", "      url: mem://in/styles/\n      keys: [s.jpg]\n", 1)
			tc.want = []string{`line 15: spec.inputs.pairing: zip needs as many styles as contents (2 contents keys, 1 styles keys)`}
		}
		t.Run(tc.name, func(t *testing.T) { wantProblems(t, tc.doc, tc.want) })
	}
}

// edit replaces the first old in s with new.
func edit(s, old, new string) string { return strings.Replace(s, old, new, 1) }

func TestValidVariants(t *testing.T) {
	for _, tc := range []struct {
		name  string
		doc   string
		check func(t *testing.T, m *Manifest)
	}{
		{"output in another bucket with the same prefix", with(t, "url: mem://out/", "url: mem://other/contents/"), nil},
		{"sibling directory with a shared name prefix", with(t, "url: mem://out/", "url: mem://in/contents-out/"), nil},
		{"file directories side by side", edit(with(t, "url: mem://in/contents/", "url: file:///data/in"), "url: mem://out/", "url: file:///data/out"), nil},
		{"url weights and sha256", with(t, "    weights: random\n", "    weights: file:///models/vgg19.pth\n    sha256: "+strings.Repeat("0a", 32)+"\n"), nil},
		{"random with seed", with(t, "    weights: random\n", "    weights: random\n    randomSeed: -7\n"),
			func(t *testing.T, m *Manifest) {
				if *m.Spec.Model.RandomSeed != -7 {
					t.Errorf("randomSeed %d", *m.Spec.Model.RandomSeed)
				}
			}},
		{"zip with equal keys", edit(with(t, "  output:\n", "    pairing: zip\n  output:\n"),
			"      url: mem://in/contents/\n", "      url: mem://in/contents/\n      keys: [b.jpg, a.jpg]\n"), nil},
		{"list", with(t, "  output:\n", "    pairing: list\n    pairs:\n      - {content: a.jpg, style: x/s.jpg}\n      - {content: a.jpg, style: y/s.jpg}\n  output:\n"),
			func(t *testing.T, m *Manifest) {
				p := m.Spec.Inputs.Pairs
				if len(p) != 2 || p[1] != (Pair{Content: "a.jpg", Style: "y/s.jpg", Line: 16}) {
					t.Errorf("pairs %+v", p)
				}
			}},
		{"jpeg quality", plus("    format: jpeg\n    jpegQuality: 100\n"), nil},
		{"layer names", plus("  params:\n    contentLayer: conv5_4\n    styleLayers: {conv1_2: 0, conv2_2: 1, conv3_4: 1, conv4_1: 1e-3}\n"), nil},
		{"size 0 keeps the content's size", plus("  params: {size: 0, scales: 0, styleScale: 0, tvWeight: 0}\n"),
			func(t *testing.T, m *Manifest) {
				if p := m.Spec.Params; p.Size == nil || *p.Size != 0 || p.Steps != nil {
					t.Errorf("size %v steps %v, want set to 0 and unset", p.Size, p.Steps)
				}
			}},
		{"null leaves unset", plus("  params:\n    size: ~\n    lr:\n"),
			func(t *testing.T, m *Manifest) {
				if p := m.Spec.Params; p.Size != nil || p.LR != nil {
					t.Errorf("size %v lr %v, want unset", p.Size, p.LR)
				}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Parse([]byte(tc.doc))
			if err != nil {
				t.Fatal(err)
			}
			if tc.check != nil {
				tc.check(t, m)
			}
		})
	}
}

func TestEveryProblemAtOnce(t *testing.T) {
	doc := edit(with(t, "apiVersion: nst/v1", "apiVersion: v1"), "  inputs:\n", "  inputz: {}\n  inputs:\n")
	doc = doc + "  params: {styleWeight: -3}\n"
	wantProblems(t, doc, []string{
		`line 1: apiVersion: "v1" is not supported (want nst/v1)`,
		`line 8: spec.inputz: unknown field`,
		`line 16: spec.params.styleWeight: -3 must be >= 0`,
	})
}

func TestDecodeErrorsHideFollowOnProblems(t *testing.T) {
	// metadata failed to decode; "metadata.name: is required" would only be noise.
	wantProblems(t, with(t, "metadata:\n  name: demo\n", "metadata: demo\n"),
		[]string{`line 3: metadata: want a mapping, found "demo"`})
}
