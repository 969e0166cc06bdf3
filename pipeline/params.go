package pipeline

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/nst-project/nst/manifests"
	"github.com/nst-project/nst/transfer"
)

// PresetParams returns the effective engine parameters of a preset: spec (the manifest's
// spec.params) overridden by preset (Options.Merge), resolved as nst stylize resolves its
// flags (transfer.Resolve): the engine's defaults, then the named schedule's settings if one
// is given, then every option set, so that options beside a schedule override it, and lbfgs
// without an lr gets lr 1.
//
// Problems only the engine can find (transfer.Params.Validate: unknown layers and the like)
// come back in a *manifests.Error, each with the line and YAML path of the value at fault (in
// spec.params or in the preset), wrapping ErrInvalid. at is the preset's YAML path, such as
// "spec.presets[1]".
func PresetParams(spec manifests.Options, preset manifests.Preset, at string) (transfer.Params, error) {
	merged := spec.Merge(preset.Options)
	values := merged.Values()
	given := transfer.DefaultParams()
	var ps []*manifests.Problem
	for name, v := range values {
		d, ok := transfer.LookupParam(name)
		if !ok || !d.Set(&given, engineValue(v)) {
			// manifests.Options and transfer's table disagree: a test keeps them in step.
			ps = append(ps, &manifests.Problem{Path: name, Msg: fmt.Sprintf("is not an engine parameter of this type (%T)", v)})
		}
	}
	p := transfer.Resolve(given, func(name string) bool { _, ok := values[name]; return ok })
	if len(p.StyleBlend) > 1 {
		ps = append(ps, &manifests.Problem{Msg: fmt.Sprintf("has %d weights, but each pair has one style", len(p.StyleBlend)), Path: "styleBlend"})
	}
	for _, fe := range transfer.FieldErrors(p.Validate()) {
		path := fe.Field
		switch {
		case fe.Field == "styleLayers" && fe.Index >= 0 && fe.Index < len(p.StyleLayers):
			path += "." + p.StyleLayers[fe.Index].Layer
		case fe.Index >= 0:
			path += fmt.Sprintf("[%d]", fe.Index)
		}
		ps = append(ps, &manifests.Problem{Path: path, Msg: fe.Msg})
	}
	for _, pr := range ps {
		name, _, _ := strings.Cut(pr.Path, ".")
		name, _, _ = strings.Cut(name, "[")
		where, line := "spec.params", spec.LineOf(name)
		if l := preset.Options.LineOf(name); l != 0 || isSet(preset.Options, name) {
			where, line = at, l
		}
		if name == "styleLayers" && pr.Path != name {
			layer := strings.TrimPrefix(pr.Path, "styleLayers.")
			for _, l := range merged.StyleLayers {
				if l.Layer == layer && l.Line != 0 {
					line = l.Line
					break
				}
			}
		}
		if line == 0 && preset.Line != 0 {
			where, line = at, preset.Line
		}
		if line == 0 { // a field set nowhere, such as stopWindow missing beside a stopTolerance
			line = firstLine(spec.Lines)
		}
		pr.Path, pr.Line = where+"."+pr.Path, line
	}
	if len(ps) > 0 {
		return p, mergeProblems([]error{&manifests.Error{Problems: ps}})
	}
	return p, nil
}

// firstLine is the first of lines, 0 if there are none.
func firstLine(lines map[string]int) int {
	first := 0
	for _, l := range lines {
		if first == 0 || l < first {
			first = l
		}
	}
	return first
}

// isSet reports whether o sets the option with YAML name field, for Options built in code.
func isSet(o manifests.Options, field string) bool {
	_, ok := o.Values()[field]
	return ok
}

// engineValue converts an option's value (manifests.Options.Values) to the type of its
// engine parameter where the two differ.
func engineValue(v any) any {
	if ls, ok := v.(manifests.StyleLayers); ok {
		out := make([]transfer.LayerWeight, len(ls))
		for i, l := range ls {
			out[i] = transfer.LayerWeight{Layer: l.Layer, Weight: l.Weight}
		}
		return out
	}
	return v
}

// mergeProblems joins several *manifests.Error (and other errors) into one error wrapping
// ErrInvalid, problems sorted by line (lineless last) and repeats dropped.
func mergeProblems(errs []error) error {
	var ps []*manifests.Problem
	seen := map[string]bool{}
	var other []error
	for _, err := range errs {
		var me *manifests.Error
		if !errors.As(err, &me) {
			other = append(other, err)
			continue
		}
		for _, p := range me.Problems {
			if k := p.Error(); !seen[k] {
				seen[k] = true
				ps = append(ps, p)
			}
		}
	}
	slices.SortStableFunc(ps, func(a, b *manifests.Problem) int {
		la, lb := a.Line, b.Line
		if la == 0 {
			la = 1 << 30
		}
		if lb == 0 {
			lb = 1 << 30
		}
		return cmp.Compare(la, lb)
	})
	var all []error
	if len(ps) > 0 {
		all = append(all, &manifests.Error{Problems: ps})
	}
	all = append(all, other...)
	if len(all) == 0 {
		return nil
	}
	return invalidError{errors.Join(all...)}
}
