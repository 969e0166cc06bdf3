package transfer

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// TestParamTableCoversParams: each field of Params is one Param of the table, named as in its
// JSON tag, whose Field points at that field and whose Default is DefaultParams'.
func TestParamTableCoversParams(t *testing.T) {
	var p Params
	pv := reflect.ValueOf(&p).Elem()
	table := ParamTable()
	seen := map[string]bool{}
	for _, d := range table {
		if seen[d.Name] {
			t.Errorf("parameter %s listed twice", d.Name)
		}
		seen[d.Name] = true
		if d.Usage == "" {
			t.Errorf("parameter %s has no usage", d.Name)
		}
	}
	for i := range pv.NumField() {
		f := pv.Type().Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		d, ok := LookupParam(name)
		if !ok {
			t.Errorf("Params.%s (%s) is not in ParamTable", f.Name, name)
			continue
		}
		ptr := reflect.ValueOf(d.Field(&p))
		if ptr.Pointer() != pv.Field(i).Addr().Pointer() || ptr.Type().Elem() != f.Type {
			t.Errorf("parameter %s: Field is not Params.%s", name, f.Name)
		}
		def := reflect.ValueOf(DefaultParams()).Field(i).Interface()
		if !reflect.DeepEqual(d.Default(), def) {
			t.Errorf("parameter %s: Default %v, DefaultParams has %v", name, d.Default(), def)
		}
	}
	if len(table) != pv.NumField() {
		t.Errorf("ParamTable has %d parameters, Params %d fields", len(table), pv.NumField())
	}
	for name, flag := range map[string]string{"lr": "lr", "styleWeight": "style-weight", "tvWeight": "tv-weight", "stopTolerance": "stop-tolerance"} {
		if d, _ := LookupParam(name); d.Flag() != flag {
			t.Errorf("%s: flag %q, want %q", name, d.Flag(), flag)
		}
	}
	// Set takes the field's type only.
	d, _ := LookupParam("steps")
	if q := DefaultParams(); !d.Set(&q, 7) || q.Steps != 7 || d.Set(&q, 7.0) || d.Set(&q, "7") || q.Steps != 7 {
		t.Errorf("Set: steps %d", q.Steps)
	}
}

// TestFieldErrors: Validate's problems are *FieldError values naming the parameter and, in a
// list, the element.
func TestFieldErrors(t *testing.T) {
	p := DefaultParams()
	p.Steps, p.Schedule = 0, "turbo"
	p.StyleLayers = append(p.StyleLayers, LayerWeight{"conv1_1", 1}, LayerWeight{"pool1", -1})
	p.Scales, p.ScaleSteps = 3, []int{5, 0}
	err := p.Validate()
	got := FieldErrors(err)
	type fe struct {
		field string
		index int
	}
	var fields []fe
	for _, e := range got {
		fields = append(fields, fe{e.Field, e.Index})
	}
	want := []fe{{"steps", -1}, {"styleLayers", 5}, {"styleLayers", 6}, {"styleLayers", 6}, {"scaleSteps", 1}, {"schedule", -1}}
	if !slices.Equal(fields, want) {
		t.Errorf("field errors %v, want %v\n%v", fields, want, err)
	}
	var one *FieldError
	if !errors.As(err, &one) || one.Field != "steps" || one.Error() != "steps: 0 is outside 1..1000000" {
		t.Errorf("errors.As: %v", one)
	}
	if FieldErrors(DefaultParams().Validate()) != nil {
		t.Error("field errors for the defaults")
	}
}

// TestResolve: the defaults, then the schedule's settings, then the settings given; lbfgs
// chosen without an lr gets lr 1.
func TestResolve(t *testing.T) {
	fast, _ := LookupSchedule("fast")
	withFast := DefaultParams()
	fast.Apply(&withFast)
	set := func(names ...string) func(string) bool {
		return func(n string) bool { return slices.Contains(names, n) }
	}
	given := DefaultParams()
	given.Schedule, given.Steps, given.StopWindow, given.Size = "fast", 33, 4, 99
	for _, c := range []struct {
		name  string
		given Params
		set   func(string) bool
		want  func(*Params)
	}{
		{"nothing set", given, set(), func(*Params) {}},
		{"size only", given, set("size"), func(p *Params) { p.Size = 99 }},
		{"schedule", given, set("schedule"), func(p *Params) { *p = withFast }},
		{"schedule and overrides", given, set("schedule", "steps", "stopWindow"), func(p *Params) {
			*p = withFast
			p.Steps, p.StopWindow = 33, 4
		}},
		{"lbfgs gets lr 1", Params{Optimizer: LBFGS}, set("optimizer"), func(p *Params) { p.Optimizer, p.LR = LBFGS, 1 }},
		{"lbfgs keeps its lr", Params{Optimizer: LBFGS, LR: 0.5}, set("optimizer", "lr"), func(p *Params) { p.Optimizer, p.LR = LBFGS, 0.5 }},
		{"seed schedule, then lbfgs", Params{Schedule: "seed", Optimizer: LBFGS}, set("schedule", "optimizer"), func(p *Params) {
			p.Schedule, p.Optimizer, p.LR = "seed", LBFGS, 1
		}},
		{"unknown schedule", Params{Schedule: "turbo"}, set("schedule"), func(p *Params) { p.Schedule = "turbo" }},
	} {
		t.Run(c.name, func(t *testing.T) {
			want := DefaultParams()
			c.want(&want)
			if got := Resolve(c.given, c.set); !reflect.DeepEqual(got, want) {
				t.Errorf("Resolve = %+v\nwant      %+v", got, want)
			}
		})
	}
}
