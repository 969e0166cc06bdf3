package pipeline

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/nst-project/nst/manifests"
	"github.com/nst-project/nst/transfer"
)

// PresetParams returns the effective engine parameters of a preset: transfer.DefaultParams,
// overridden by spec (the manifest's spec.params), overridden by preset (Options.Merge). As in
// nst stylize, choosing lbfgs without a learning rate sets lr to 1.
//
// Problems only the engine can find (transfer.Params.Validate: unknown layers and the like)
// come back in a *manifests.Error, each with the line and YAML path of the value at fault (in
// spec.params or in the preset), wrapping ErrInvalid. at is the preset's YAML path, such as
// "spec.presets[1]".
func PresetParams(spec manifests.Options, preset manifests.Preset, at string) (transfer.Params, error) {
	merged := spec.Merge(preset.Options)
	p := optionsToParams(merged)
	var ps []*manifests.Problem
	if len(p.StyleBlend) > 1 {
		ps = append(ps, &manifests.Problem{Msg: fmt.Sprintf("has %d weights, but each pair has one style", len(p.StyleBlend)), Path: "styleBlend"})
	}
	if err := p.Validate(); err != nil {
		for _, e := range splitErrors(err) {
			field, msg, ok := strings.Cut(e.Error(), ": ")
			if !ok {
				field, msg = "", e.Error()
			}
			ps = append(ps, &manifests.Problem{Path: field, Msg: msg})
		}
	}
	for _, pr := range ps {
		field := pr.Path
		name, idx := field, -1
		if i := strings.IndexAny(field, "[ "); i >= 0 {
			name = field[:i]
			if j := strings.Index(field, "]"); field[i] == '[' && j > i {
				idx, _ = strconv.Atoi(field[i+1 : j])
			}
		}
		where, line := "spec.params", spec.LineOf(name)
		if l := preset.Options.LineOf(name); l != 0 || isSet(preset.Options, name) {
			where, line = at, l
		}
		if idx >= 0 && idx < len(merged.StyleLayers) && merged.StyleLayers[idx].Line != 0 {
			line = merged.StyleLayers[idx].Line
		}
		if line == 0 {
			where, line = at, preset.Line
		}
		if field == "" {
			pr.Path = where
		} else {
			pr.Path = where + "." + field
		}
		pr.Line = line
	}
	if len(ps) > 0 {
		return p, mergeProblems([]error{&manifests.Error{Problems: ps}})
	}
	return p, nil
}

// isSet reports whether o sets the option with YAML name field, for Options built in code.
func isSet(o manifests.Options, field string) bool {
	switch field {
	case "size":
		return o.Size != nil
	case "steps":
		return o.Steps != nil
	case "optimizer":
		return o.Optimizer != nil
	case "lr":
		return o.LR != nil
	case "contentWeight":
		return o.ContentWeight != nil
	case "styleWeight":
		return o.StyleWeight != nil
	case "tvWeight":
		return o.TVWeight != nil
	case "contentLayer":
		return o.ContentLayer != nil
	case "styleLayers":
		return o.StyleLayers != nil
	case "init":
		return o.Init != nil
	case "seed":
		return o.Seed != nil
	case "scales":
		return o.Scales != nil
	case "styleScale":
		return o.StyleScale != nil
	case "preserveColors":
		return o.PreserveColors != nil
	case "history":
		return o.History != nil
	case "tolerance":
		return o.Tolerance != nil
	case "styleBlend":
		return o.StyleBlend != nil
	case "precision":
		return o.Precision != nil
	}
	return false
}

func optionsToParams(o manifests.Options) transfer.Params {
	p := transfer.DefaultParams()
	set := func(dst *int, v *int) {
		if v != nil {
			*dst = *v
		}
	}
	setF := func(dst *float64, v *float64) {
		if v != nil {
			*dst = *v
		}
	}
	set(&p.Size, o.Size)
	set(&p.Steps, o.Steps)
	if o.Optimizer != nil {
		p.Optimizer = *o.Optimizer
		if p.Optimizer == transfer.LBFGS && o.LR == nil {
			p.LR = 1
		}
	}
	setF(&p.LR, o.LR)
	setF(&p.ContentWeight, o.ContentWeight)
	setF(&p.StyleWeight, o.StyleWeight)
	setF(&p.TVWeight, o.TVWeight)
	if o.ContentLayer != nil {
		p.ContentLayer = *o.ContentLayer
	}
	if o.StyleLayers != nil {
		p.StyleLayers = make([]transfer.LayerWeight, len(o.StyleLayers))
		for i, l := range o.StyleLayers {
			p.StyleLayers[i] = transfer.LayerWeight{Layer: l.Layer, Weight: l.Weight}
		}
	}
	if o.Init != nil {
		p.Init = *o.Init
	}
	if o.Seed != nil {
		p.Seed = *o.Seed
	}
	set(&p.Scales, o.Scales)
	setF(&p.StyleScale, o.StyleScale)
	if o.Precision != nil {
		p.Precision = *o.Precision
	}
	if o.PreserveColors != nil {
		p.PreserveColors = *o.PreserveColors
	}
	set(&p.History, o.History)
	setF(&p.Tolerance, o.Tolerance)
	if o.StyleBlend != nil {
		p.StyleBlend = slices.Clone(o.StyleBlend)
	}
	return p
}

func splitErrors(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
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
