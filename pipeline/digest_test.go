package pipeline

import (
	"fmt"
	"testing"
)

// TestParamsDigestsStable: the effective parameters of each preset hash to the digests nst
// computed before the engine parameters moved into one table (transfer's ParamTable). Item
// IDs hash these digests, so a change here gives every existing output a new ID: outputs
// written by earlier versions would be redone or reported stale. Change a golden only on
// purpose.
func TestParamsDigestsStable(t *testing.T) {
	cases := []struct {
		name   string
		params string // spec.params and spec.presets, indented as in spec
		want   map[string]string
	}{
		{"defaults", "", map[string]string{
			"default": "9194007b12105513bc193009d6e85ad03a68a7c4d214c7e7d11ff396b3defcd4",
		}},
		{"the demo's", `  params:
    optimizer: lbfgs
    steps: 40
    size: 128
    contentLayer: conv3_1
    styleLayers: {conv1_1: 1, conv2_1: 0.8, conv3_1: 0.5}
    styleWeight: 1e6
`, map[string]string{"default": "ba1f0b39009f46b14f31de3c09f05bddbc97dbc8b8d1ff34913c315db9a10543"}},
		{"presets over spec", `  params: {size: 64, steps: 10, tvWeight: 1e-6}
  presets:
    - {name: soft, styleWeight: 10}
    - name: lbfgs
      optimizer: lbfgs
      history: 20
    - name: lbfgs-lr
      optimizer: lbfgs
      lr: 0.5
      tolerance: 1e-7
    - name: layers
      styleLayers: {conv5_1: 0.1, conv1_1: 1, conv3_1: 0.5}
      contentLayer: conv5_2
    - name: all
      init: noise
      seed: 7
      scales: 2
      styleScale: 0.5
      preserveColors: true
      precision: bf16
      styleBlend: [1]
      contentWeight: 2
    - {name: fp32, precision: fp32, preserveColors: false, scales: 1, styleScale: 1}
`, map[string]string{
			"soft":     "57f07760e1f989f4025783f4d3326c914c72e95b3097698f8005d0e5d63e3fff",
			"lbfgs":    "f67daa42dcb63e4a67ea14a7beb93a398d93cf024fca59e9168a9e2f33de77e0",
			"lbfgs-lr": "80d78aedc0f0c3cbcf13fc0fdda70e62c803c10f62891cf6addec04887c8a1ff",
			"layers":   "a1b14e38246cc1780680299f43657cea44277a93d14e7fe7a79d2d7a9f679114",
			"all":      "a55311fad167d1197ed0eb8ecd608f03d7c2508578504fd748095da88b7a59cf",
			"fp32":     "8a4dc89507e31f606c9b39cf210b9387c4bf4c6d72900ac12818ba7e40e6451c",
		}},
		{"every field in spec", `  params:
    size: 512
    steps: 300
    optimizer: lbfgs
    lr: 1
    contentWeight: 1
    styleWeight: 1e6
    tvWeight: 0
    contentLayer: conv4_2
    styleLayers: {conv5_1: 0.1, conv1_1: 1, conv3_1: 0.5}
    init: content
    seed: 0
    scales: 1
    styleScale: 1
    preserveColors: false
    history: 100
    tolerance: 1e-9
    precision: fp32
  presets:
    - {name: default, contentWeight: 1, styleWeight: 1e6}
    - {name: bold, styleWeight: 1e7, styleLayers: {conv1_1: 1, conv2_1: 1}}
    - {name: quick.adam, optimizer: adam, lr: 0.003, steps: 100}
`, map[string]string{
			"default":    "97ffe5085f3b17ae46667327ea5f19151f102e95263a717b5b7efd6042e37a6e",
			"bold":       "5e9a582ac23a950586fdb6b8811e5ce00830d1a97a21a3b3530db2415b13d6c0",
			"quick.adam": "f358f5ecb15b629cce990c21a65430abe7b07ee2c41a375dcb05264fbd16ddee",
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			man := writeManifest(t, fmt.Sprintf(`apiVersion: nst/v1
kind: StyleBatch
metadata: {name: digests}
spec:
  model: {weights: random}
  inputs:
    contents: {url: "mem://in/contents/"}
    styles: {url: "mem://in/styles/"}
%s  output: {url: "mem://out/"}
`, c.params))
			cfg, err := Config{ManifestURL: man}.withDefaults(false)
			if err != nil {
				t.Fatal(err)
			}
			cat, err := expand(t.Context(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer cat.buckets.close()
			if len(cat.presets) != len(c.want) {
				t.Fatalf("%d presets, want %d", len(cat.presets), len(c.want))
			}
			for i, p := range cat.presets {
				if got, want := cat.pdigest[i], c.want[p.Name]; got != want || got != cat.params[i].Digest() {
					t.Errorf("preset %s: digest %s, want %s (params %+v)", p.Name, got, want, cat.params[i])
				}
			}
		})
	}
}
