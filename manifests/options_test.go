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

// everyOption returns Options with every field set to a distinct non-zero value of its type.
func everyOption(t *testing.T) Options {
	var o Options
	ov := reflect.ValueOf(&o).Elem()
	for i := range ov.NumField() {
		f := ov.Field(i)
		switch {
		case ov.Type().Field(i).Name == "Lines":
		case f.Kind() == reflect.Pointer:
			f.Set(reflect.New(f.Type().Elem()))
			switch e := f.Elem(); e.Kind() {
			case reflect.Int, reflect.Int64:
				e.SetInt(int64(i + 1))
			case reflect.Float64:
				e.SetFloat(float64(i) + 0.5)
			case reflect.String:
				e.SetString(ov.Type().Field(i).Name)
			case reflect.Bool:
				e.SetBool(true)
			default:
				t.Fatalf("option %s: type %s", ov.Type().Field(i).Name, f.Type())
			}
		case f.Type() == reflect.TypeFor[StyleLayers]():
			f.Set(reflect.ValueOf(StyleLayers{{Layer: "conv3_1", Weight: 0.5}}))
		case f.Kind() == reflect.Slice:
			f.Set(reflect.MakeSlice(f.Type(), 2, 2))
			f.Index(1).Set(reflect.ValueOf(i).Convert(f.Type().Elem()))
		default:
			t.Fatalf("option %s: type %s", ov.Type().Field(i).Name, f.Type())
		}
	}
	return o
}

// TestMergeEveryField: Merge takes every field set in over, keeps every field set only in base,
// and copies each.
func TestMergeEveryField(t *testing.T) {
	all := everyOption(t)
	if got := (Options{}).Merge(all); !reflect.DeepEqual(got, all) {
		t.Errorf("Merge over empty:\n got %+v\nwant %+v", got, all)
	}
	if got := all.Merge(Options{}); !reflect.DeepEqual(got, all) {
		t.Errorf("Merge of empty:\n got %+v\nwant %+v", got, all)
	}
	got := (Options{}).Merge(all)
	gv, av := reflect.ValueOf(got), reflect.ValueOf(all)
	for i := range gv.NumField() {
		if f := gv.Field(i); f.Kind() == reflect.Pointer && f.Pointer() == av.Field(i).Pointer() ||
			f.Kind() == reflect.Slice && f.Len() > 0 && f.Pointer() == av.Field(i).Pointer() {
			t.Errorf("Merge shares %s", gv.Type().Field(i).Name)
		}
	}
}

// TestValues: Values holds each option set, by YAML name, as a plain value.
func TestValues(t *testing.T) {
	if v := (Options{}).Values(); len(v) != 0 {
		t.Errorf("Values of empty options: %v", v)
	}
	o := Options{Size: ptr(7), Schedule: ptr("fast"), ScaleSteps: []int{3, 4}, StopTolerance: ptr(0.01),
		StyleLayers: StyleLayers{{Layer: "conv1_1", Weight: 1}}}
	want := map[string]any{"size": 7, "schedule": "fast", "scaleSteps": []int{3, 4}, "stopTolerance": 0.01,
		"styleLayers": StyleLayers{{Layer: "conv1_1", Weight: 1}}}
	if got := o.Values(); !reflect.DeepEqual(got, want) {
		t.Errorf("Values = %v, want %v", got, want)
	}
	all := everyOption(t)
	if n, fields := len(all.Values()), reflect.TypeFor[Options]().NumField()-1; n != fields {
		t.Errorf("Values of every option: %d, want %d", n, fields)
	}
	// The manifest's new options decode.
	m, err := Parse([]byte(plus("  params:\n    schedule: fast\n    scaleSteps: [3, 4]\n    stopTolerance: 0.01\n    stopWindow: 5\n")))
	if err != nil {
		t.Fatal(err)
	}
	if p := m.Spec.Params; *p.Schedule != "fast" || !reflect.DeepEqual(p.ScaleSteps, []int{3, 4}) || *p.StopTolerance != 0.01 || *p.StopWindow != 5 || p.LineOf("stopWindow") == 0 {
		t.Errorf("params %+v", p)
	}
}
