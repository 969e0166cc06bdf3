package main

import (
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/nst-project/nst/transfer"
)

// stylizeParams parses args and env as nst stylize's engine parameters.
func stylizeParams(t *testing.T, args []string, env map[string]string) (transfer.Params, error) {
	t.Helper()
	fs := pflag.NewFlagSet("nst stylize", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var pf paramFlags
	pf.register(fs)
	if err := fs.Parse(args); err != nil {
		return transfer.Params{}, err
	}
	if _, err := applyEnv(fs, func(k string) string { return env[k] }); err != nil {
		return transfer.Params{}, err
	}
	return pf.params(fs)
}

// TestParamFlags: one flag per engine parameter, named after it, with its default; the
// schedule's settings under those given (as flags or NST_ variables); bad values name the flag.
func TestParamFlags(t *testing.T) {
	fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
	var pf paramFlags
	pf.register(fs)
	for _, d := range transfer.ParamTable() {
		if fs.Lookup(d.Flag()) == nil {
			t.Errorf("no flag --%s for parameter %s", d.Flag(), d.Name)
		}
	}
	if p, err := stylizeParams(t, nil, nil); err != nil || !reflect.DeepEqual(p, transfer.DefaultParams()) {
		t.Errorf("no flags: %+v, %v; want the defaults", p, err)
	}
	fast, _ := transfer.LookupSchedule("fast")
	want := transfer.DefaultParams()
	fast.Apply(&want)
	want.Steps, want.StopWindow = 9, 3
	want.StyleLayers = []transfer.LayerWeight{{Layer: "conv1_1", Weight: 1}, {Layer: "conv2_1", Weight: 0.5}}
	p, err := stylizeParams(t, []string{"--steps", "9", "--schedule", "fast", "--style-layers", "conv1_1,conv2_1:0.5"},
		map[string]string{"NST_STOP_WINDOW": "3", "NST_STEPS": "4"})
	if err != nil || !reflect.DeepEqual(p, want) {
		t.Errorf("fast with overrides: %+v, %v\nwant %+v", p, err, want)
	}
	if p, err := stylizeParams(t, []string{"--optimizer", "lbfgs"}, nil); err != nil || p.LR != 1 {
		t.Errorf("lbfgs without --lr: lr %v, %v", p.LR, err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--schedule", "turbo"}, `--schedule: "turbo" is not one of seed, fast`},
		{[]string{"--stop-tolerance", "0.1"}, "--stop-window: 0: a stopTolerance needs a window"},
		{[]string{"--scales", "3", "--scale-steps", "5,0"}, "--scale-steps: element 1: 0 is outside 1..1000000"},
		{[]string{"--style-layers", "conv9_1"}, `style layer "conv9_1": unknown layer`},
	} {
		if _, err := stylizeParams(t, c.args, nil); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: err %v, want %q", c.args, err, c.want)
		}
	}
}
