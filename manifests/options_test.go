package manifests

import (
	"reflect"
	"testing"
)

func ptr[T any](v T) *T { return &v }

func TestMerge(t *testing.T) {
	layersA := StyleLayers{{Layer: "conv1_1", Weight: 1}, {Layer: "conv2_1", Weight: 0.8}}
	layersB := StyleLayers{{Layer: "conv5_1", Weight: 2}}
	for _, tc := range []struct {
		name       string
		base, over Options
		want       Options
	}{
		{"both empty", Options{}, Options{}, Options{}},
		{"base only", Options{Size: ptr(512), StyleLayers: layersA}, Options{}, Options{Size: ptr(512), StyleLayers: layersA}},
		{"over only", Options{}, Options{Steps: ptr(10), Init: ptr("noise")}, Options{Steps: ptr(10), Init: ptr("noise")}},
		{"over wins where set", Options{Size: ptr(512), StyleWeight: ptr(1e6), Optimizer: ptr("lbfgs")},
			Options{StyleWeight: ptr(1e7), LR: ptr(0.5)},
			Options{Size: ptr(512), StyleWeight: ptr(1e7), Optimizer: ptr("lbfgs"), LR: ptr(0.5)}},
		{"zero overrides non-zero", Options{TVWeight: ptr(1.0), PreserveColors: ptr(true), Seed: ptr(int64(9))},
			Options{TVWeight: ptr(0.0), PreserveColors: ptr(false), Seed: ptr(int64(0))},
			Options{TVWeight: ptr(0.0), PreserveColors: ptr(false), Seed: ptr(int64(0))}},
		{"style layers replaced whole", Options{StyleLayers: layersA}, Options{StyleLayers: layersB}, Options{StyleLayers: layersB}},
		{"style blend replaced whole", Options{StyleBlend: []float64{1, 2, 3}}, Options{StyleBlend: []float64{1}}, Options{StyleBlend: []float64{1}}},
		{"every field", Options{},
			Options{Size: ptr(1), Steps: ptr(2), Optimizer: ptr("adam"), LR: ptr(3.0), ContentWeight: ptr(4.0), StyleWeight: ptr(5.0),
				TVWeight: ptr(6.0), ContentLayer: ptr("conv4_2"), StyleLayers: layersA, Init: ptr("style"), Seed: ptr(int64(7)),
				Scales: ptr(2), StyleScale: ptr(0.5), PreserveColors: ptr(true), History: ptr(8), Tolerance: ptr(1e-5), StyleBlend: []float64{1}},
			Options{Size: ptr(1), Steps: ptr(2), Optimizer: ptr("adam"), LR: ptr(3.0), ContentWeight: ptr(4.0), StyleWeight: ptr(5.0),
				TVWeight: ptr(6.0), ContentLayer: ptr("conv4_2"), StyleLayers: layersA, Init: ptr("style"), Seed: ptr(int64(7)),
				Scales: ptr(2), StyleScale: ptr(0.5), PreserveColors: ptr(true), History: ptr(8), Tolerance: ptr(1e-5), StyleBlend: []float64{1}}},
		{"lines follow their fields", Options{Size: ptr(1), Steps: ptr(2), Lines: map[string]int{"size": 3, "steps": 4}},
			Options{Steps: ptr(5), Lines: map[string]int{"steps": 9}},
			Options{Size: ptr(1), Steps: ptr(5), Lines: map[string]int{"size": 3, "steps": 9}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.base.Merge(tc.over)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Merge = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestMergeCopies(t *testing.T) {
	base := Options{Size: ptr(1), StyleLayers: StyleLayers{{Layer: "conv1_1", Weight: 1}}, Lines: map[string]int{"size": 2}}
	over := Options{Steps: ptr(3), StyleBlend: []float64{1}}
	got := base.Merge(over)
	*got.Size, *got.Steps = 10, 30
	got.StyleLayers[0].Weight = 10
	got.StyleBlend[0] = 10
	got.Lines["size"] = 20
	if *base.Size != 1 || *over.Steps != 3 || base.StyleLayers[0].Weight != 1 || over.StyleBlend[0] != 1 || base.Lines["size"] != 2 {
		t.Errorf("changing the merge result changed its inputs: base %+v over %+v", base, over)
	}
}

func TestLineOf(t *testing.T) {
	if got := (Options{}).LineOf("size"); got != 0 {
		t.Errorf("LineOf on options without lines = %d, want 0", got)
	}
	m, err := Parse([]byte(plus("  params:\n    lr: 1\n    styleLayers: {conv1_1: 1}\n")))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		field string
		want  int
	}{{"lr", 16}, {"styleLayers", 17}, {"size", 0}, {"nonsense", 0}} {
		if got := m.Spec.Params.LineOf(tc.field); got != tc.want {
			t.Errorf("LineOf(%q) = %d, want %d", tc.field, got, tc.want)
		}
	}
}
