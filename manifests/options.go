package manifests

import (
	"maps"
	"slices"

	"gopkg.in/yaml.v3"
)

// Options are engine options as a manifest states them: spec.params, and each preset's
// overrides. Every field is optional; nil (or a nil slice) means "not set here", which differs
// from a zero value. Options are values: Merge copies, and nothing here keeps a reference.
//
// The YAML names are the lower-camel-case field names shown in the tags. Load checks what the
// schema can (enums, ranges, layer-name syntax); the pipeline converts Options to the engine's
// parameters and checks the rest, such as whether a layer exists in the engine, reporting the
// line from LineOf.
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
	StyleBlend     []float64   `yaml:"styleBlend"`     // weight of each style image, finite >= 0
	Precision      *string     `yaml:"precision"`      // fp32 or bf16 (bfloat16 VGG19)

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
	r := Options{
		Size:           pick(o.Size, over.Size),
		Steps:          pick(o.Steps, over.Steps),
		Optimizer:      pick(o.Optimizer, over.Optimizer),
		LR:             pick(o.LR, over.LR),
		ContentWeight:  pick(o.ContentWeight, over.ContentWeight),
		StyleWeight:    pick(o.StyleWeight, over.StyleWeight),
		TVWeight:       pick(o.TVWeight, over.TVWeight),
		ContentLayer:   pick(o.ContentLayer, over.ContentLayer),
		StyleLayers:    slices.Clone(o.StyleLayers),
		Init:           pick(o.Init, over.Init),
		Seed:           pick(o.Seed, over.Seed),
		Scales:         pick(o.Scales, over.Scales),
		StyleScale:     pick(o.StyleScale, over.StyleScale),
		PreserveColors: pick(o.PreserveColors, over.PreserveColors),
		Precision:      pick(o.Precision, over.Precision),
		History:        pick(o.History, over.History),
		Tolerance:      pick(o.Tolerance, over.Tolerance),
		StyleBlend:     slices.Clone(o.StyleBlend),
	}
	if over.StyleLayers != nil {
		r.StyleLayers = slices.Clone(over.StyleLayers)
	}
	if over.StyleBlend != nil {
		r.StyleBlend = slices.Clone(over.StyleBlend)
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

// pick returns a copy of over if set, else a copy of base, else nil.
func pick[T any](base, over *T) *T {
	switch {
	case over != nil:
		v := *over
		return &v
	case base != nil:
		v := *base
		return &v
	}
	return nil
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
