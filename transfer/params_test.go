package transfer

import (
	"encoding/json"
	"math"
	"reflect"
	"strings"
	"testing"
)

func TestDefaultParamsAreTheSeeds(t *testing.T) {
	p := DefaultParams()
	if err := p.Validate(); err != nil {
		t.Fatalf("DefaultParams invalid: %v", err)
	}
	if p.Optimizer != Adam || p.LR != 0.003 || p.ContentWeight != 1 || p.StyleWeight != 1e6 ||
		p.TVWeight != 0 || p.ContentLayer != "conv4_2" || p.Init != InitContent {
		t.Errorf("DefaultParams = %+v, want the seed's Adam, lr 0.003, alpha 1, beta 1e6, conv4_2, content init", p)
	}
	want := []LayerWeight{{"conv1_1", 1}, {"conv2_1", 0.8}, {"conv3_1", 0.5}, {"conv4_1", 0.3}, {"conv5_1", 0.1}}
	if !reflect.DeepEqual(p.StyleLayers, want) {
		t.Errorf("StyleLayers = %v, want %v", p.StyleLayers, want)
	}
	p.StyleLayers[0].Weight = 9
	if DefaultParams().StyleLayers[0].Weight != 1 {
		t.Error("DefaultParams shares its StyleLayers slice")
	}
}

func TestLayerNames(t *testing.T) {
	names := LayerNames()
	if len(names) != 16 || names[0] != "conv1_1" || names[15] != "conv5_4" {
		t.Fatalf("LayerNames = %v", names)
	}
	names[0] = "x"
	if LayerNames()[0] != "conv1_1" {
		t.Error("LayerNames shares its slice")
	}
	for name, want := range map[string]int{"conv1_1": 0, "conv4_2": 9, "conv5_4": 15, "conv6_1": -1, "": -1, "CONV1_1": -1} {
		if got := LayerIndex(name); got != want {
			t.Errorf("LayerIndex(%q) = %d, want %d", name, got, want)
		}
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Params)
		want []string // each must appear; nil means valid
	}{
		{"defaults", func(*Params) {}, nil},
		{"size 0 keeps content size", func(p *Params) { p.Size = 0 }, nil},
		{"lbfgs", func(p *Params) { p.Optimizer = LBFGS; p.LR = 1 }, nil},
		{"noise init", func(p *Params) { p.Init = InitNoise }, nil},
		{"blend", func(p *Params) { p.StyleBlend = []float64{1, 0} }, nil},
		{"size", func(p *Params) { p.Size = MaxSize + 1 }, []string{"size: 8193 is outside 0..8192"}},
		{"steps", func(p *Params) { p.Steps = 0 }, []string{"steps: 0 is outside 1..1000000"}},
		{"optimizer", func(p *Params) { p.Optimizer = "sgd" }, []string{`optimizer: "sgd" is not adam or lbfgs`}},
		{"lr NaN", func(p *Params) { p.LR = math.NaN() }, []string{"lr: NaN must be a positive number"}},
		{"lr 0", func(p *Params) { p.LR = 0 }, []string{"lr: 0"}},
		{"negative weight", func(p *Params) { p.TVWeight = -1 }, []string{"tvWeight: -1 must be a finite number >= 0"}},
		{"infinite weight", func(p *Params) { p.StyleWeight = math.Inf(1) }, []string{"styleWeight: +Inf"}},
		{"content layer", func(p *Params) { p.ContentLayer = "conv9_9" }, []string{`contentLayer: unknown layer "conv9_9"`}},
		{"no style layers", func(p *Params) { p.StyleLayers = nil }, []string{"styleLayers: at least one layer is needed"}},
		{"style layer twice and unknown", func(p *Params) {
			p.StyleLayers = []LayerWeight{{"conv1_1", 1}, {"conv1_1", 1}, {"pool1", 1}, {"conv2_1", -2}}
		}, []string{`styleLayers[1]: layer "conv1_1" listed twice`, `styleLayers[2]: unknown layer "pool1"`, "styleLayers[3]: conv2_1's weight -2"}},
		{"init", func(p *Params) { p.Init = "random" }, []string{`init: "random" is not content, noise or style`}},
		{"blend negative", func(p *Params) { p.StyleBlend = []float64{2, -1} }, []string{"styleBlend[1]: -1"}},
		{"blend zero", func(p *Params) { p.StyleBlend = []float64{0, 0} }, []string{"styleBlend: the weights add up to 0"}},
		{"style scale", func(p *Params) { p.StyleScale = 9 }, []string{"styleScale: 9 is outside 0..8"}},
		{"scales", func(p *Params) { p.Scales = 9 }, []string{"scales: 9 is outside 0..8"}},
		{"lbfgs history and tolerance", func(p *Params) { p.Optimizer = LBFGS; p.History = 0; p.Tolerance = -1 },
			[]string{"history: 0 is outside 1..1000", "tolerance: -1"}},
		{"adam ignores lbfgs settings", func(p *Params) { p.History = 0; p.Tolerance = -1 }, nil},
		{"scale steps", func(p *Params) { p.Scales, p.ScaleSteps = 3, []int{50, 20} }, nil},
		{"scale steps, one too many", func(p *Params) { p.Scales, p.ScaleSteps = 2, []int{50, 20} },
			[]string{"scaleSteps: 2 values for 2 scales"}},
		{"scale steps without scales", func(p *Params) { p.ScaleSteps = []int{5} }, []string{"scaleSteps: 1 values for 1 scales"}},
		{"scale steps out of range", func(p *Params) { p.Scales, p.ScaleSteps = 3, []int{0, MaxSteps + 1} },
			[]string{"scaleSteps[0]: 0 is outside 1..1000000", "scaleSteps[1]: 1000001"}},
		{"stop", func(p *Params) { p.StopTolerance, p.StopWindow = 1e-3, 10 }, nil},
		{"stop tolerance", func(p *Params) { p.StopTolerance, p.StopWindow = 1, 5 }, []string{"stopTolerance: 1 is outside [0, 1)"}},
		{"stop tolerance NaN", func(p *Params) { p.StopTolerance, p.StopWindow = math.NaN(), 5 }, []string{"stopTolerance: NaN"}},
		{"stop without window", func(p *Params) { p.StopTolerance = 1e-3 }, []string{"stopWindow: 0: a stopTolerance needs a window"}},
		{"stop window", func(p *Params) { p.StopWindow = -1 }, []string{"stopWindow: -1 is outside 0..1000000"}},
		{"schedule", func(p *Params) { p.Schedule = "fast" }, nil},
		{"unknown schedule", func(p *Params) { p.Schedule = "turbo" }, []string{`schedule: "turbo" is not one of seed, fast`}},
		{"every problem at once", func(p *Params) {
			p.Size, p.Steps, p.Optimizer, p.LR, p.ContentLayer, p.Init = -1, -1, "", -1, "", ""
		}, []string{"size:", "steps:", "optimizer:", "lr:", "contentLayer:", "init:"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := DefaultParams()
			tt.edit(&p)
			err := p.Validate()
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Validate = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Validate = nil")
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tt.want) {
				t.Errorf("%d problems reported, want %d:\n%v", len(lines), len(tt.want), err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not say %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestParseStyleLayers(t *testing.T) {
	tests := []struct {
		in      string
		want    []LayerWeight
		wantErr string
	}{
		{"conv1_1:1,conv2_1:0.8", []LayerWeight{{"conv1_1", 1}, {"conv2_1", 0.8}}, ""},
		{" conv3_1 , conv4_1:2e-1 ,", []LayerWeight{{"conv3_1", 1}, {"conv4_1", 0.2}}, ""},
		{"conv5_1: 0.1", []LayerWeight{{"conv5_1", 0.1}}, ""},
		{"", nil, "no style layers given"},
		{" , ", nil, "no style layers given"},
		{"conv1_1:heavy", nil, `weight "heavy" is not a number`},
		{"relu1_1", nil, `style layer "relu1_1": unknown layer`},
	}
	for _, tt := range tests {
		got, err := ParseStyleLayers(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseStyleLayers(%q) = %v, %v; want error %q", tt.in, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseStyleLayers(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}

func TestDigest(t *testing.T) {
	p := DefaultParams()
	// Digests key stored outputs: a change here orphans every finished result. Change this
	// constant only on purpose.
	const golden = "9194007b12105513bc193009d6e85ad03a68a7c4d214c7e7d11ff396b3defcd4"
	if got := p.Digest(); got != golden {
		t.Errorf("DefaultParams().Digest() = %s, want %s", got, golden)
	}
	if q := DefaultParams(); q.Digest() != p.Digest() {
		t.Error("equal params, different digests")
	}
	// Every field, through the table, so that a new parameter is checked too; and the order
	// and weights of the style layers.
	edits := map[string]func(*Params){
		"layer weight": func(p *Params) { p.StyleLayers[4].Weight = 0.2 },
		"layer order":  func(p *Params) { p.StyleLayers[0], p.StyleLayers[1] = p.StyleLayers[1], p.StyleLayers[0] },
	}
	for _, d := range ParamTable() {
		edits[d.Name] = func(p *Params) {
			switch v := d.Field(p).(type) {
			case *int:
				*v++
			case *int64:
				*v++
			case *float64:
				*v = *v*1.0000001 + 1e-12
			case *bool:
				*v = !*v
			case *string:
				*v += "x"
			case *[]int:
				*v = append(*v, 1)
			case *[]float64:
				*v = append(*v, 1)
			case *[]LayerWeight:
				*v = append(*v, LayerWeight{"conv5_2", 1})
			default:
				t.Fatalf("parameter %s: no edit for %T", d.Name, v)
			}
		}
	}
	seen := map[string]string{p.Digest(): "defaults"}
	for name, edit := range edits {
		q := DefaultParams()
		edit(&q)
		d := q.Digest()
		if other, dup := seen[d]; dup {
			t.Errorf("changing %s gives the digest of %s", name, other)
		}
		seen[d] = name
	}
	if n := reflect.TypeOf(Params{}).NumField(); n != len(edits)-2 {
		t.Errorf("Params has %d fields but %d are checked for digest sensitivity", n, len(edits)-2)
	}
}

func TestLevelSteps(t *testing.T) {
	p := DefaultParams()
	p.Steps = 7
	if p.LevelSteps(0) != 7 || p.TotalSteps() != 7 {
		t.Errorf("one scale: LevelSteps(0) = %d, TotalSteps = %d, want 7", p.LevelSteps(0), p.TotalSteps())
	}
	p.Scales = 3
	if got := []int{p.LevelSteps(0), p.LevelSteps(1), p.LevelSteps(2), p.TotalSteps()}; !reflect.DeepEqual(got, []int{7, 7, 7, 21}) {
		t.Errorf("3 scales without ScaleSteps: %v, want [7 7 7 21]", got)
	}
	p.ScaleSteps = []int{40, 10}
	if got := []int{p.LevelSteps(0), p.LevelSteps(1), p.LevelSteps(2), p.TotalSteps()}; !reflect.DeepEqual(got, []int{40, 10, 7, 57}) {
		t.Errorf("3 scales, ScaleSteps [40 10]: %v, want [40 10 7 57]", got)
	}
}

func TestSchedules(t *testing.T) {
	if got := ScheduleNames(); !reflect.DeepEqual(got, []string{"seed", "fast"}) {
		t.Fatalf("ScheduleNames = %v", got)
	}
	// The seed's schedule gives back the default maths, whatever another schedule set before.
	seed, _ := LookupSchedule("seed")
	fast, ok := LookupSchedule("fast")
	if !ok {
		t.Fatal("no fast schedule")
	}
	p := DefaultParams()
	fast.Apply(&p)
	if err := p.Validate(); err != nil {
		t.Errorf("fast: %v", err)
	}
	if p.Schedule != "fast" || p.Optimizer != LBFGS || p.Scales < 2 || p.StopTolerance <= 0 {
		t.Errorf("fast gave %+v", p)
	}
	seed.Apply(&p)
	want := DefaultParams()
	want.Schedule = "seed"
	if !reflect.DeepEqual(p, want) {
		t.Errorf("seed after fast = %+v, want the defaults %+v", p, want)
	}
	// Every field a schedule sets is one it declares (so explicit settings can override it).
	for _, s := range Schedules() {
		q := DefaultParams()
		q.Optimizer, q.LR, q.History, q.Steps, q.Scales, q.ScaleSteps, q.StopTolerance, q.StopWindow = "x", -1, -1, -1, -1, []int{-1}, -1, -1
		before := q
		s.Apply(&q)
		changed := map[string]bool{}
		bj, _ := json.Marshal(before)
		aj, _ := json.Marshal(q)
		var bm, am map[string]any
		_ = json.Unmarshal(bj, &bm)
		_ = json.Unmarshal(aj, &am)
		for k := range am {
			if !reflect.DeepEqual(am[k], bm[k]) {
				changed[k] = true
			}
		}
		for k := range bm {
			if _, ok := am[k]; !ok {
				changed[k] = true
			}
		}
		delete(changed, "schedule")
		for _, f := range s.Fields() {
			delete(changed, f)
		}
		if len(changed) > 0 {
			t.Errorf("schedule %s sets %v, which it does not declare in Fields", s.Name, changed)
		}
	}
}

func TestBlendWeights(t *testing.T) {
	tests := []struct {
		blend   []float64
		n       int
		want    []float64
		wantErr bool
	}{
		{nil, 1, []float64{1}, false},
		{nil, 4, []float64{0.25, 0.25, 0.25, 0.25}, false},
		{[]float64{1, 3}, 2, []float64{0.25, 0.75}, false},
		{[]float64{2, 0, 2}, 3, []float64{0.5, 0, 0.5}, false},
		{[]float64{1, 3}, 3, nil, true},
		{[]float64{1}, 0, nil, true},
	}
	for _, tt := range tests {
		p := DefaultParams()
		p.StyleBlend = tt.blend
		got, err := p.BlendWeights(tt.n)
		if (err != nil) != tt.wantErr || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("BlendWeights(%v, %d) = %v, %v; want %v", tt.blend, tt.n, got, err, tt.want)
		}
	}
}
