package pipeline

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/nst-project/nst/manifests"
	"github.com/nst-project/nst/transfer"
)

// TestOptionsAreTheParamTable: every engine parameter (transfer.ParamTable) is a manifest
// option of the same name whose value (manifests.Options.Values) its Set takes, and every
// option is a parameter; so a parameter added to both works in manifests without more code.
func TestOptionsAreTheParamTable(t *testing.T) {
	o := manifests.Options{}
	ov := reflect.ValueOf(&o).Elem()
	for i := range ov.NumField() { // set every option to a value of its type
		f := ov.Field(i)
		switch f.Kind() {
		case reflect.Pointer:
			f.Set(reflect.New(f.Type().Elem()))
		case reflect.Slice:
			f.Set(reflect.MakeSlice(f.Type(), 1, 1))
		}
	}
	values := o.Values()
	for name, v := range values {
		d, ok := transfer.LookupParam(name)
		p := transfer.DefaultParams()
		if !ok || !d.Set(&p, engineValue(v)) {
			t.Errorf("option %s (%T) is not an engine parameter of its type", name, v)
		}
	}
	for _, d := range transfer.ParamTable() {
		if _, ok := values[d.Name]; !ok {
			t.Errorf("engine parameter %s is not a manifest option", d.Name)
		}
	}
}

// TestManifestDocParams: docs/manifest.md's table of spec.params lists every engine
// parameter, in ParamTable's order.
func TestManifestDocParams(t *testing.T) {
	doc, err := os.ReadFile("../docs/manifest.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, _ := strings.Cut(string(doc), "## spec.params and presets")
	section, _, _ = strings.Cut(section, "\n## ")
	var rows []string
	for _, m := range regexp.MustCompile("(?m)^\\| `([A-Za-z]+)` \\|").FindAllStringSubmatch(section, -1) {
		rows = append(rows, m[1])
	}
	var want []string
	for _, d := range transfer.ParamTable() {
		want = append(want, d.Name)
	}
	if !slices.Equal(rows, want) {
		t.Errorf("docs/manifest.md lists %v\nParamTable has        %v", rows, want)
	}
}

// TestManifestSchedule: spec.params.schedule: fast runs end to end on the fake engine, with
// the schedule's settings, those set beside it winning (a preset's too), and provenance
// records the schedule and the stop criterion.
func TestManifestSchedule(t *testing.T) {
	e := memEnv()
	in := e.bucket(t, e.in)
	standardInputs(t, in, "contents/", "styles/")
	man := writeManifest(t, fmt.Sprintf(`apiVersion: nst/v1
kind: StyleBatch
metadata: {name: sched}
spec:
  model: {weights: random}
  inputs:
    contents: {url: %q}
    styles: {url: %q}
  params: {size: 16, schedule: fast, steps: 6, scaleSteps: [3]}
  presets:
    - {name: fast}
    - {name: window, stopWindow: 2, stopTolerance: 0.5}
  output: {url: %q}
`, e.dir(e.in, "contents/"), e.dir(e.in, "styles/"), e.dir(e.out, "")))
	fast, _ := transfer.LookupSchedule("fast")
	want := transfer.DefaultParams()
	fast.Apply(&want)
	want.Size, want.Steps, want.ScaleSteps = 16, 6, []int{3}
	window := want
	window.StopWindow, window.StopTolerance = 2, 0.5

	rep, res, err := runResults(t.Context(), e.config(man))
	if err != nil || rep.Done != 12 || len(res) != 12 {
		t.Fatalf("run: %v, %+v", err, rep)
	}
	out := e.bucket(t, e.out)
	for _, r := range res {
		data, err := out.ReadAll(t.Context(), r.Outputs.Provenance)
		if err != nil {
			t.Fatal(err)
		}
		var raw struct {
			Params map[string]any `json:"params"`
		}
		var p Provenance
		if err := json.Unmarshal(data, &p); err != nil || json.Unmarshal(data, &raw) != nil {
			t.Fatalf("%s: %v", r.Outputs.Provenance, err)
		}
		w := want
		if r.Preset == "window" {
			w = window
		}
		if !reflect.DeepEqual(p.Params, w) || p.ParamsHash != w.Digest() {
			t.Errorf("%s: params %+v\nwant %+v", r.Outputs.Provenance, p.Params, w)
		}
		if raw.Params["schedule"] != "fast" || raw.Params["stopTolerance"] != w.StopTolerance || raw.Params["stopWindow"] != float64(w.StopWindow) {
			t.Errorf("%s: provenance params %v: want the schedule and the stop criterion", r.Outputs.Provenance, raw.Params)
		}
		if p.Steps < 1 || p.Steps > w.TotalSteps() {
			t.Errorf("%s: %d steps, want 1..%d", r.Outputs.Provenance, p.Steps, w.TotalSteps())
		}
	}
}

// TestManifestParamErrors: a bad value of a parameter is a problem naming its manifest field
// and line (in spec.params or the preset that sets it).
func TestManifestParamErrors(t *testing.T) {
	for _, c := range []struct {
		name, params, presets string
		want                  []string
	}{
		{"unknown schedule", "schedule: turbo", "", []string{`line 9: spec.params.schedule: "turbo" is not one of seed, fast`}},
		{"stop tolerance", "stopTolerance: 2, stopWindow: 5", "", []string{"line 9: spec.params.stopTolerance: 2 is outside [0, 1)"}},
		{"stop window", "stopTolerance: 0.1", "", []string{"line 9: spec.params.stopWindow: 0: a stopTolerance needs a window"}},
		{"scale steps", "scales: 3, scaleSteps: [5, 0]", "", []string{"line 9: spec.params.scaleSteps[1]: 0 is outside 1..1000000"}},
		{"scale steps count", "scaleSteps: [5]", "", []string{"line 9: spec.params.scaleSteps: 1 values for 1 scales"}},
		{"in a preset", "size: 16", "\n  presets:\n    - name: p\n      stopWindow: -1\n",
			[]string{"line 13: spec.presets[0].stopWindow: -1 is outside 0..1000000"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			man := writeManifest(t, `apiVersion: nst/v1
kind: StyleBatch
metadata: {name: bad}
spec:
  model: {weights: random}
  inputs:
    contents: {url: "mem://in/contents/"}
    styles: {url: "mem://in/styles/"}
  params: {`+c.params+`}
  output: {url: "mem://out/"}`+c.presets)
			cfg, err := Config{ManifestURL: man}.withDefaults(false)
			if err != nil {
				t.Fatal(err)
			}
			_, err = expand(t.Context(), cfg)
			var me *manifests.Error
			if !errors.Is(err, ErrInvalid) || !errors.As(err, &me) {
				t.Fatalf("err = %v, want a *manifests.Error", err)
			}
			var got []string
			for _, p := range me.Problems {
				got = append(got, p.Error())
			}
			if len(got) != len(c.want) {
				t.Errorf("problems %q, want %q", got, c.want)
			}
			for i := range min(len(got), len(c.want)) {
				if !strings.HasPrefix(got[i], c.want[i]) {
					t.Errorf("problem %q, want %q", got[i], c.want[i])
				}
			}
		})
	}
}
