package manifests

import (
	"maps"
	"reflect"

	"gopkg.in/yaml.v3"
)

// Options are engine options as a manifest states them: spec.params, and each preset's
// overrides. Every field is optional; nil (or a nil slice) means "not set here", which differs
// from a zero value. Options are values: Merge copies, and nothing here keeps a reference.
//
// The YAML names are the lower-camel-case field names shown in the tags, the names of the
// engine's parameters (transfer.ParamTable): each field holds the parameter's Go type, behind a
// pointer unless it is a list. Load checks what the schema can (enums, ranges, layer-name
// syntax); the pipeline converts Options to the engine's parameters and checks the rest, such
// as whether a layer exists in the engine or a schedule is known, reporting the line from
// LineOf. Adding a field here is all this package needs for a new parameter: Merge and Values
// work on every field.
type Options struct {
	Size           *int        `yaml:"size"`           // longest side in pixels, 0..8192; 0 keeps the content's size
	Steps          *int        `yaml:"steps"`          // optimiser steps, 1..1000000
	Optimizer      *string     `yaml:"optimizer"`      // adam or lbfgs
	LR             *float64    `yaml:"lr"`             // learning rate, > 0
	ContentWeight  *float64    `yaml:"contentWeight"`  // alpha, finite >= 0
	StyleWeight    *float64    `yaml:"styleWeight"`    // beta, finite >= 0
	TVWeight       *float64    `yaml:"tvWeight"`       // total-variation weight, finite >= 0
	ContentLayer   *string     `yaml:"contentLayer"`   // such as conv4_2
	StyleLayers    StyleLayers `yaml:"styleLayers"`    // a mapping layer: weight, order kept
	Init           *string     `yaml:"init"`           // content, noise or style
	Seed           *int64      `yaml:"seed"`           // random seed
	Scales         *int        `yaml:"scales"`         // pyramid levels, 0..8
	StyleScale     *float64    `yaml:"styleScale"`     // style size relative to the content, 0..8
	PreserveColors *bool       `yaml:"preserveColors"` // keep the content's colours
	History        *int        `yaml:"history"`        // L-BFGS history, 1..1000
	Tolerance      *float64    `yaml:"tolerance"`      // L-BFGS tolerance, finite >= 0
	FirstStep      *string     `yaml:"firstStep"`      // L-BFGS first step: torch or norm
	StyleBlend     []float64   `yaml:"styleBlend"`     // weight of each style image, finite >= 0
	Precision      *string     `yaml:"precision"`      // fp32 or bf16 (bfloat16 VGG19)
	ScaleSteps     []int       `yaml:"scaleSteps"`     // steps of each coarser scale, coarsest first
	StopTolerance  *float64    `yaml:"stopTolerance"`  // end a scale once the loss falls less than this fraction, 0..1
	StopWindow     *int        `yaml:"stopWindow"`     // steps over which stopTolerance measures the fall
	Schedule       *string     `yaml:"schedule"`       // a named schedule (seed, fast); the options set beside it win

	// Lines maps the YAML name of each field set in the source (such as "styleWeight") to its
	// 1-based line. It is nil for Options built in code. For a preset read by LoadPresets the
	// lines are those of the presets file.
	Lines map[string]int `yaml:"-"`
}

// LineOf returns the line the field with the given YAML name (such as "contentLayer") was set
// on, or 0 if it was not set in a source or o has no lines.
func (o Options) LineOf(field string) int { return o.Lines[field] }

// Merge returns o overridden by over: each field set in over wins, the others come from o.
// StyleLayers and StyleBlend are replaced whole, not merged layer by layer. Lines follow the
// fields they describe. The result shares no memory with o or over.
func (o Options) Merge(over Options) Options {
	var r Options
	rv, ov, bv := reflect.ValueOf(&r).Elem(), reflect.ValueOf(over), reflect.ValueOf(o)
	for i := range rv.NumField() {
		if rv.Type().Field(i).Name == "Lines" {
			continue
		}
		src := ov.Field(i)
		if src.IsNil() {
			src = bv.Field(i)
		}
		rv.Field(i).Set(deepCopy(src))
	}
	if o.Lines != nil || over.Lines != nil {
		r.Lines = maps.Clone(o.Lines)
		if r.Lines == nil {
			r.Lines = map[string]int{}
		}
		maps.Copy(r.Lines, over.Lines)
	}
	return r
}

// deepCopy returns a copy of v, a pointer to a plain value or a slice of plain values, that
// shares no memory with v; nil stays nil.
func deepCopy(v reflect.Value) reflect.Value {
	switch {
	case v.IsNil():
		return reflect.Zero(v.Type())
	case v.Kind() == reflect.Pointer:
		c := reflect.New(v.Type().Elem())
		c.Elem().Set(v.Elem())
		return c
	default: // a slice
		c := reflect.MakeSlice(v.Type(), v.Len(), v.Len())
		reflect.Copy(c, v)
		return c
	}
}

// Values returns the value of each option set in o, keyed by its YAML name: the value a
// pointer field points to (an int for *int, and so on), or a list field's slice (a copy).
// StyleLayers stays a StyleLayers.
func (o Options) Values() map[string]any {
	out := map[string]any{}
	ov := reflect.ValueOf(o)
	for name, idx := range fieldsOf(ov.Type()) {
		f := ov.FieldByIndex(idx)
		if f.IsNil() {
			continue
		}
		if f.Kind() == reflect.Pointer {
			out[name] = f.Elem().Interface()
		} else {
			out[name] = deepCopy(f).Interface()
		}
	}
	return out
}

// LayerWeight is one style layer and its weight.
type LayerWeight struct {
	Layer  string
	Weight float64
	// Line is the 1-based line of the layer in its source, 0 if built in code.
	Line int
}

// StyleLayers is an ordered list of style layers, written in YAML as a mapping from layer name
// to weight ({conv1_1: 1, conv2_1: 0.8}); the order of the mapping is kept. nil means unset;
// an empty non-nil list is "set, but empty", which Load rejects.
type StyleLayers []LayerWeight

// UnmarshalYAML decodes a mapping of layer names to weights, keeping its order. It rejects
// duplicate layers and non-numeric weights. Load does not go through it (it decodes the same
// way, with paths in its messages); it exists so plain yaml.v3 decoding agrees with Load.
func (s *StyleLayers) UnmarshalYAML(n *yaml.Node) error {
	ps := newProblems()
	d := &decoder{ps: ps, budget: maxNodes}
	*s = d.styleLayers(n, "styleLayers")
	return ps.err()
}
