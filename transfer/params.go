// Package transfer holds what the style-transfer engine is asked and what it answers: Params,
// Request, Result, the Engine interface, and what every engine shares so that they behave
// alike: request checks (Request.Validate), the pyramid of sizes (Pyramid) and the step
// bookkeeping (Steps). The libtorch engine lives in transfer/torch, the engine in child
// processes in transfer/worker, a pure-Go fake for tests in transfer/fake, and the contract
// they all pass in transfer/transfertest. This package imports only transfer/imaging (pure
// Go) and no cgo, so the pipeline builds and tests without libtorch.
//
// # Engine parameters
//
// Params holds the engine parameters, and ParamTable defines each one once: its name in
// manifests and in Params' JSON, its field, its flag and NST_ variable (nst stylize; derived
// from the name), its usage line, its default (DefaultParams) and its validation, which reports
// typed *FieldError values. Manifests (through the pipeline) and nst stylize's flags resolve
// their settings the same way, with Resolve. Adding a parameter touches three files:
//
//  1. transfer/params.go (this file): the Params field with its JSON tag, ",omitempty" and a
//     zero value that means what the engine did without it: Digest hashes Params' JSON, so
//     any other default would change the digest, and so the output IDs, of every existing
//     manifest. Then its entry in paramTable:
//
//     param("contentBlur", "blur the content loss's target by this many pixels",
//     func(p *Params) *float64 { return &p.ContentBlur }, nonNegative),
//
//  2. manifests/options.go: the Options field, a pointer to the same type (a slice stays a
//     slice) tagged with the same name: `yaml:"contentBlur"`.
//
//  3. docs/manifest.md: its row in the table of spec.params, in paramTable's order.
//
// Then the engines use it (transfer/torch, transfer/fake). Nothing else changes: the flag
// --content-blur and NST_CONTENT_BLUR, manifest decoding and merging, problems with their
// manifest line, provenance and the digest follow from the table; tests fail if the table,
// Params, manifests.Options or the docs disagree. A parameter of a Go type no parameter has
// yet also needs its flag type in cmd/nst (paramFlags.register).
package transfer

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
)

// Layer names the engine understands, in VGG19 order (torchvision's features.N index in the
// comment). The seed uses conv1_1..conv5_1 for style and conv4_2 for content.
var vggLayers = []string{
	"conv1_1", "conv1_2", // 0, 2
	"conv2_1", "conv2_2", // 5, 7
	"conv3_1", "conv3_2", "conv3_3", "conv3_4", // 10, 12, 14, 16
	"conv4_1", "conv4_2", "conv4_3", "conv4_4", // 19, 21, 23, 25
	"conv5_1", "conv5_2", "conv5_3", "conv5_4", // 28, 30, 32, 34
}

// LayerNames returns the VGG19 conv layer names the engine accepts, shallowest first.
func LayerNames() []string { return append([]string(nil), vggLayers...) }

// LayerIndex returns a layer's position in LayerNames, or -1 if it is not a VGG19 conv layer.
func LayerIndex(name string) int {
	for i, n := range vggLayers {
		if n == name {
			return i
		}
	}
	return -1
}

// pooledLayers are the VGG19 conv layers followed by a 2x2 max pool.
var pooledLayers = map[string]bool{"conv1_2": true, "conv2_2": true, "conv3_4": true, "conv4_4": true, "conv5_4": true}

// MinSide is the shortest image side, in pixels, the engine can take with p: every max pool
// before p's deepest layer (content or style) halves the side, and that layer needs at least
// one pixel left. With the default layers (conv5_1 deepest) it is 16. Unknown layers count as
// none.
func MinSide(p Params) int {
	deepest := LayerIndex(p.ContentLayer)
	for _, l := range p.StyleLayers {
		deepest = max(deepest, LayerIndex(l.Layer))
	}
	pools := 0
	for i := 0; i < deepest; i++ {
		if pooledLayers[vggLayers[i]] {
			pools++
		}
	}
	return 1 << pools
}

// LayerWeight is one style layer and its weight in the style loss.
type LayerWeight struct {
	Layer  string  `json:"layer"`
	Weight float64 `json:"weight"`
}

// Optimizer names.
const (
	Adam  = "adam"
	LBFGS = "lbfgs"
)

// Init names: what the optimised image starts from.
const (
	InitContent = "content"
	InitNoise   = "noise"
	InitStyle   = "style"
)

// Params are the optimisation parameters of one stylisation. The zero value is not useful:
// start from DefaultParams, which reproduces the seed article.
type Params struct {
	// Size is the longest side, in pixels, the content is scaled down to; an image already
	// within Size is used as it is. 0 keeps the content's size.
	Size int `json:"size"`
	// Steps is the number of optimiser steps (per scale when Scales > 1). For L-BFGS a step is
	// one iteration, which may evaluate the loss several times in its line search.
	Steps     int     `json:"steps"`
	Optimizer string  `json:"optimizer"`
	LR        float64 `json:"lr"`

	ContentWeight float64       `json:"contentWeight"` // alpha
	StyleWeight   float64       `json:"styleWeight"`   // beta
	TVWeight      float64       `json:"tvWeight"`
	ContentLayer  string        `json:"contentLayer"`
	StyleLayers   []LayerWeight `json:"styleLayers"`

	Init string `json:"init"`
	Seed int64  `json:"seed"`

	// StyleBlend weighs several style images; nil means equal weights. Weights are normalised
	// to sum to 1.
	StyleBlend []float64 `json:"styleBlend,omitempty"`
	// StyleScale resizes each style image relative to the content: 1 (or 0) resizes it to the
	// content's exact shape, as the seed does; other values scale it to StyleScale times the
	// content's longest side, keeping the style's aspect ratio.
	StyleScale float64 `json:"styleScale,omitempty"`

	PreserveColors bool `json:"preserveColors,omitempty"`
	// Scales > 1 runs a coarse-to-fine pyramid: the first scale at Size/2^(Scales-1), each next
	// one doubled and initialised from the previous result.
	Scales int `json:"scales,omitempty"`
	// ScaleSteps, if set, are the steps of each coarser scale, coarsest first (Scales-1 of
	// them); the last scale, the output's size, runs Steps. Unset, every scale runs Steps.
	ScaleSteps []int `json:"scaleSteps,omitempty"`

	// StopTolerance > 0 ends a scale (at the last scale, the run) before its steps are done once
	// the total loss has fallen by less than this fraction over the last StopWindow steps of the
	// scale: (L[k-StopWindow] - L[k]) / L[k-StopWindow] < StopTolerance. The step it ends on
	// says so (Step.Stop). 0: every scale runs its steps.
	StopTolerance float64 `json:"stopTolerance,omitempty"`
	StopWindow    int     `json:"stopWindow,omitempty"`

	// Schedule names the schedule (Schedules) these parameters were made from, for
	// provenance; the fields above are what runs.
	Schedule string `json:"schedule,omitempty"`

	// L-BFGS settings (ignored by Adam). FirstStep is the length of each scale's first step:
	// "" or FirstStepTorch, torch.optim.LBFGS's lr*min(1, 1/sum|g|) (the parity reference),
	// FirstStepNorm, L-BFGS-B's lr/sqrt(sum g^2), which does not shrink with the image's
	// pixel count the way torch's does (docs/BENCHMARKS.md section 2), or FirstStepCarry, lr
	// times the scaling (hDiag) the coarser scale's L-BFGS ended with, and FirstStepNorm where
	// there is none (the first scale, or a scale a run resumes at).
	History   int     `json:"history,omitempty"`
	Tolerance float64 `json:"tolerance,omitempty"`
	FirstStep string  `json:"firstStep,omitempty"`

	// Precision of the VGG19 forward and backward: "" or "fp32" (the seed's), or "bf16"
	// (bfloat16 convolutions; features, Gram matrices, losses and the image stay float32).
	// bf16 is faster where the hardware has it and is not bit-exact with the seed.
	Precision string `json:"precision,omitempty"`
}

// L-BFGS first steps (Params.FirstStep).
const (
	FirstStepTorch = "torch"
	FirstStepNorm  = "norm"
	FirstStepCarry = "carry"
)

// Precisions.
const (
	FP32 = "fp32"
	BF16 = "bf16"
)

// Seed defaults: the style-layer weights of the seed article.
func defaultStyleLayers() []LayerWeight {
	return []LayerWeight{
		{"conv1_1", 1.0}, {"conv2_1", 0.8}, {"conv3_1", 0.5}, {"conv4_1", 0.3}, {"conv5_1", 0.1},
	}
}

// DefaultParams returns the seed article's parameters (Adam, lr 0.003, alpha 1, beta 1e6,
// content init, conv4_2 content, conv1_1..conv5_1 style with weights 1, 0.8, 0.5, 0.3, 0.1),
// with steps and size scaled down so a CPU finishes in minutes, not hours.
func DefaultParams() Params {
	return Params{
		Size:          256,
		Steps:         300,
		Optimizer:     Adam,
		LR:            0.003,
		ContentWeight: 1,
		StyleWeight:   1e6,
		ContentLayer:  "conv4_2",
		StyleLayers:   defaultStyleLayers(),
		Init:          InitContent,
		Scales:        1,
		StyleScale:    1,
		History:       100,
		Tolerance:     1e-9,
	}
}

// Limits the engine enforces, so a typo in a manifest fails at once rather than after a GPU hour.
const (
	MaxSize  = 8192
	MaxSteps = 1_000_000
	MaxScale = 8
)

// A Param is one engine parameter, as every source of Params states it: manifests
// (spec.params and presets, in pipeline), nst stylize's flags and their NST_ variables (in
// cmd/nst). ParamTable lists them all; see the package documentation for adding one.
type Param struct {
	// Name is the parameter's name in manifests and in Params' JSON (lower camel case, such
	// as "styleWeight"). Its flag is Flag(), its environment variable NST_ and Flag() in upper
	// case with underscores.
	Name string
	// Usage is the parameter's line in --help.
	Usage string

	field func(*Params) any                             // a pointer to the parameter's field of p
	get   func(Params) any                              // the field's value
	set   func(p *Params, v any) bool                   // sets the field to v if v has its type
	copy  func(dst *Params, src Params)                 // copies the field of src to dst
	check func(p Params, bad func(int, string, ...any)) // reports what is wrong with the field
}

// Flag is the name of the parameter's flag: Name in kebab case ("styleWeight": "style-weight").
func (d Param) Flag() string {
	var b strings.Builder
	for _, r := range d.Name {
		if r >= 'A' && r <= 'Z' {
			b.WriteByte('-')
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Field returns a pointer to the parameter's field of p: *int, *int64, *float64, *bool,
// *string, *[]int, *[]float64 or *[]LayerWeight.
func (d Param) Field(p *Params) any { return d.field(p) }

// Set sets the parameter's field of p to v, which must have the field's type (int for
// *int, and so on); it reports whether it did.
func (d Param) Set(p *Params, v any) bool { return d.set(p, v) }

// Default is the parameter's value in DefaultParams (an int for *int, and so on).
func (d Param) Default() any { return d.get(DefaultParams()) }

// validate returns the problems with the parameter's field of p.
func (d Param) validate(p Params) []*FieldError {
	if d.check == nil {
		return nil
	}
	var out []*FieldError
	d.check(p, func(index int, format string, a ...any) {
		out = append(out, &FieldError{Field: d.Name, Index: index, Msg: fmt.Sprintf(format, a...)})
	})
	return out
}

// A FieldError is a problem with one parameter of Params (Validate).
type FieldError struct {
	Field string // the parameter's Name, such as "styleLayers"
	Index int    // the element at fault of a list parameter, or -1 for the whole value
	Msg   string // what is wrong, without the field's name
}

func (e *FieldError) Error() string {
	if e.Index >= 0 {
		return fmt.Sprintf("%s[%d]: %s", e.Field, e.Index, e.Msg)
	}
	return e.Field + ": " + e.Msg
}

// FieldErrors returns the *FieldError values in err (a Validate error), in order.
func FieldErrors(err error) []*FieldError {
	var out []*FieldError
	var walk func(error)
	walk = func(err error) {
		if fe, ok := err.(*FieldError); ok {
			out = append(out, fe)
			return
		}
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
		} else if e := errors.Unwrap(err); e != nil {
			walk(e)
		}
	}
	if err != nil {
		walk(err)
	}
	return out
}

// param defines a parameter of Go type T stored at field; check (nil: any value is valid)
// calls bad(index, format, args...) for each problem, index -1 for the whole value.
func param[T any](name, usage string, field func(*Params) *T, check func(p Params, v T, bad func(int, string, ...any))) Param {
	d := Param{
		Name: name, Usage: usage,
		field: func(p *Params) any { return field(p) },
		get:   func(p Params) any { return *field(&p) },
		set: func(p *Params, v any) bool {
			t, ok := v.(T)
			if ok {
				*field(p) = t
			}
			return ok
		},
		copy: func(dst *Params, src Params) { *field(dst) = *field(&src) },
	}
	if check != nil {
		d.check = func(p Params, bad func(int, string, ...any)) { check(p, *field(&p), bad) }
	}
	return d
}

// Checks shared by several parameters.

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

func intIn(lo, hi int) func(Params, int, func(int, string, ...any)) {
	return func(_ Params, v int, bad func(int, string, ...any)) {
		if v < lo || v > hi {
			bad(-1, "%d is outside %d..%d", v, lo, hi)
		}
	}
}

func nonNegative(_ Params, v float64, bad func(int, string, ...any)) {
	if !finite(v) || v < 0 {
		bad(-1, "%v must be a finite number >= 0", v)
	}
}

func oneOf(want ...string) func(Params, string, func(int, string, ...any)) {
	return func(_ Params, v string, bad func(int, string, ...any)) {
		if !slices.Contains(want, v) {
			bad(-1, "%q is not %s or %s", v, strings.Join(want[:len(want)-1], ", "), want[len(want)-1])
		}
	}
}

func knownLayer(_ Params, v string, bad func(int, string, ...any)) {
	if LayerIndex(v) < 0 {
		bad(-1, "unknown layer %q (want one of %s)", v, strings.Join(vggLayers, ", "))
	}
}

// paramTable is every engine parameter, in the order of nst stylize --help. A test checks
// that it covers each field of Params once.
var paramTable = []Param{
	param("size", "longest side of the output in pixels (a smaller content keeps its size; 0: no limit)",
		func(p *Params) *int { return &p.Size }, intIn(0, MaxSize)),
	param("steps", "optimiser steps (per scale)",
		func(p *Params) *int { return &p.Steps }, intIn(1, MaxSteps)),
	param("optimizer", "adam (the seed's) or lbfgs",
		func(p *Params) *string { return &p.Optimizer }, oneOf(Adam, LBFGS)),
	param("lr", "learning rate (default 0.003 for adam, 1 for lbfgs)",
		func(p *Params) *float64 { return &p.LR }, func(_ Params, v float64, bad func(int, string, ...any)) {
			if !finite(v) || v <= 0 {
				bad(-1, "%v must be a positive number", v)
			}
		}),
	param("contentWeight", "alpha: weight of the content loss",
		func(p *Params) *float64 { return &p.ContentWeight }, nonNegative),
	param("styleWeight", "beta: weight of the style loss",
		func(p *Params) *float64 { return &p.StyleWeight }, nonNegative),
	param("tvWeight", "weight of the total-variation loss",
		func(p *Params) *float64 { return &p.TVWeight }, nonNegative),
	param("contentLayer", "VGG19 layer of the content loss",
		func(p *Params) *string { return &p.ContentLayer }, knownLayer),
	param("styleLayers", "style layers and weights, name:w,...",
		func(p *Params) *[]LayerWeight { return &p.StyleLayers }, func(_ Params, v []LayerWeight, bad func(int, string, ...any)) {
			if len(v) == 0 {
				bad(-1, "at least one layer is needed")
			}
			seen := map[string]bool{}
			for i, l := range v {
				if LayerIndex(l.Layer) < 0 {
					bad(i, "unknown layer %q (want one of %s)", l.Layer, strings.Join(vggLayers, ", "))
				}
				if seen[l.Layer] {
					bad(i, "layer %q listed twice", l.Layer)
				}
				seen[l.Layer] = true
				if !finite(l.Weight) || l.Weight < 0 {
					bad(i, "%s's weight %v must be a finite number >= 0", l.Layer, l.Weight)
				}
			}
		}),
	param("init", "starting image: content, noise or style",
		func(p *Params) *string { return &p.Init }, oneOf(InitContent, InitNoise, InitStyle)),
	param("seed", "seed for noise init (runs repeat on one machine)",
		func(p *Params) *int64 { return &p.Seed }, nil),
	param("styleBlend", "weights of several styles, w1,w2,... (default equal)",
		func(p *Params) *[]float64 { return &p.StyleBlend }, func(_ Params, v []float64, bad func(int, string, ...any)) {
			for i, w := range v {
				if !finite(w) || w < 0 {
					bad(i, "%v must be a finite number >= 0", w)
				}
			}
			if len(v) > 0 && sum(v) == 0 {
				bad(-1, "the weights add up to 0")
			}
		}),
	param("styleScale", "style size relative to the content (1: the content's shape, as the seed)",
		func(p *Params) *float64 { return &p.StyleScale }, func(_ Params, v float64, bad func(int, string, ...any)) {
			if !finite(v) || v < 0 || v > 8 {
				bad(-1, "%v is outside 0..8", v)
			}
		}),
	param("preserveColors", "keep the content's colours (luminance-only transfer)",
		func(p *Params) *bool { return &p.PreserveColors }, nil),
	param("scales", "coarse-to-fine pyramid levels",
		func(p *Params) *int { return &p.Scales }, intIn(0, MaxScale)),
	param("precision", "fp32 (the seed's, the default) or bf16 (faster VGG19 where the CPU/GPU has bfloat16; Adam's losses within 5% of fp32's)",
		func(p *Params) *string { return &p.Precision }, func(_ Params, v string, bad func(int, string, ...any)) {
			if v != "" && v != FP32 && v != BF16 {
				bad(-1, "%q is not fp32 or bf16", v)
			}
		}),
	param("history", "L-BFGS history size",
		func(p *Params) *int { return &p.History }, func(p Params, v int, bad func(int, string, ...any)) {
			if p.Optimizer == LBFGS && (v < 1 || v > 1000) {
				bad(-1, "%d is outside 1..1000", v)
			}
		}),
	param("tolerance", "L-BFGS: stop when the loss or step changes less than this",
		func(p *Params) *float64 { return &p.Tolerance }, func(p Params, v float64, bad func(int, string, ...any)) {
			if p.Optimizer == LBFGS {
				nonNegative(p, v, bad)
			}
		}),
	param("firstStep", "L-BFGS's first step at each scale: torch (lr/sum|g|, torch.optim.LBFGS's, the default), norm (lr/|g|, L-BFGS-B's) or carry (the coarser scale's last scaling; norm where there is none)",
		func(p *Params) *string { return &p.FirstStep }, func(_ Params, v string, bad func(int, string, ...any)) {
			if v != "" && v != FirstStepTorch && v != FirstStepNorm && v != FirstStepCarry {
				bad(-1, "%q is not torch, norm or carry", v)
			}
		}),
	param("scaleSteps", "steps of each coarser scale, coarsest first (scales minus 1 values; the last scale runs steps)",
		func(p *Params) *[]int { return &p.ScaleSteps }, func(p Params, v []int, bad func(int, string, ...any)) {
			if len(v) > 0 && len(v) != max(p.Scales, 1)-1 {
				bad(-1, "%d values for %d scales (want one per scale before the last, coarsest first)", len(v), max(p.Scales, 1))
			}
			for i, n := range v {
				if n < 1 || n > MaxSteps {
					bad(i, "%d is outside 1..%d", n, MaxSteps)
				}
			}
		}),
	param("stopTolerance", "end a scale early once the total loss falls by less than this fraction over stop-window steps (0: off)",
		func(p *Params) *float64 { return &p.StopTolerance }, func(_ Params, v float64, bad func(int, string, ...any)) {
			if !finite(v) || v < 0 || v >= 1 {
				bad(-1, "%v is outside [0, 1) (a fraction of the loss; 0: off)", v)
			}
		}),
	param("stopWindow", "steps over which stop-tolerance measures the loss's fall",
		func(p *Params) *int { return &p.StopWindow }, func(p Params, v int, bad func(int, string, ...any)) {
			if v < 0 || v > MaxSteps {
				bad(-1, "%d is outside 0..%d", v, MaxSteps)
			} else if p.StopTolerance > 0 && v < 1 {
				bad(-1, "%d: a stopTolerance needs a window of at least 1 step", v)
			}
		}),
	param("schedule", "named schedule: "+scheduleHelp()+"; settings given with it override its settings",
		func(p *Params) *string { return &p.Schedule }, func(_ Params, v string, bad func(int, string, ...any)) {
			if _, ok := LookupSchedule(v); v != "" && !ok {
				bad(-1, "%q is not one of %s", v, strings.Join(ScheduleNames(), ", "))
			}
		}),
}

// scheduleHelp lists the named schedules for the schedule parameter's usage.
func scheduleHelp() string {
	var parts []string
	for _, s := range schedules {
		parts = append(parts, s.Name+" ("+s.Summary+")")
	}
	return strings.Join(parts, ", ")
}

// ParamTable returns every engine parameter, in the order of nst stylize --help.
func ParamTable() []Param { return slices.Clone(paramTable) }

// LookupParam returns the parameter called name (its manifest name, such as "styleWeight").
func LookupParam(name string) (Param, bool) {
	for _, d := range paramTable {
		if d.Name == name {
			return d, true
		}
	}
	return Param{}, false
}

// Resolve returns the parameters a source states, the same way for manifests and flags:
// DefaultParams; then, if set("schedule"), the settings of the schedule given.Schedule names
// (Schedule.Apply; an unknown name is left for Validate to report); then the value in given
// of every parameter set reports as set, so that settings given explicitly override the
// schedule's. Choosing lbfgs explicitly without an lr sets lr to 1, L-BFGS's usual step. The
// result may share slices with given; it is not validated.
func Resolve(given Params, set func(name string) bool) Params {
	p := DefaultParams()
	if set("schedule") {
		if s, ok := LookupSchedule(given.Schedule); ok {
			s.Apply(&p)
		}
	}
	for _, d := range paramTable {
		if set(d.Name) {
			d.copy(&p, given)
		}
	}
	if set("optimizer") && p.Optimizer == LBFGS && !set("lr") {
		p.LR = 1
	}
	return p
}

// Validate reports every problem with p at once: each is a *FieldError naming its parameter
// (errors.As, or Unwrap() []error on the joined error), in ParamTable's order.
func (p Params) Validate() error {
	var errs []error
	for _, d := range paramTable {
		for _, fe := range d.validate(p) {
			errs = append(errs, fe)
		}
	}
	return errors.Join(errs...)
}

// LevelSteps is the number of steps of pyramid level l (0 the coarsest): ScaleSteps[l] for
// a coarser level when ScaleSteps is set, else Steps.
func (p Params) LevelSteps(l int) int {
	if l >= 0 && l < len(p.ScaleSteps) {
		return p.ScaleSteps[l]
	}
	return p.Steps
}

// TotalSteps is the most steps a run of p takes over all its levels (fewer if a level stops
// early: StopTolerance, L-BFGS convergence).
func (p Params) TotalSteps() int {
	n := 0
	for l := range max(p.Scales, 1) {
		n += p.LevelSteps(l)
	}
	return n
}

func sum(v []float64) float64 {
	var s float64
	for _, x := range v {
		s += x
	}
	return s
}

// BlendWeights returns the normalised weight of each of n styles.
func (p Params) BlendWeights(n int) ([]float64, error) {
	if len(p.StyleBlend) == 0 {
		w := make([]float64, n)
		for i := range w {
			w[i] = 1 / float64(n)
		}
		return w, nil
	}
	if len(p.StyleBlend) != n {
		return nil, fmt.Errorf("styleBlend has %d weights for %d style images", len(p.StyleBlend), n)
	}
	s := sum(p.StyleBlend)
	w := make([]float64, n)
	for i, x := range p.StyleBlend {
		w[i] = x / s
	}
	return w, nil
}

// Digest is a stable hex digest of the parameters that change the result. Equal parameters
// always give equal digests (field order is fixed by the struct), so it can key outputs.
func (p Params) Digest() string {
	b, err := json.Marshal(p)
	if err != nil {
		panic(fmt.Sprintf("transfer: Params not marshalable: %v", err)) // plain fields only: cannot happen
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// ParseStyleLayers parses "conv1_1:1,conv2_1:0.8" (a missing ":w" means weight 1).
func ParseStyleLayers(s string) ([]LayerWeight, error) {
	var out []LayerWeight
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, w, hasW := strings.Cut(part, ":")
		lw := LayerWeight{Layer: strings.TrimSpace(name), Weight: 1}
		if hasW {
			if _, err := fmt.Sscanf(strings.TrimSpace(w), "%g", &lw.Weight); err != nil {
				return nil, fmt.Errorf("style layer %q: weight %q is not a number", name, w)
			}
		}
		if LayerIndex(lw.Layer) < 0 {
			return nil, fmt.Errorf("style layer %q: unknown layer (want one of %s)", lw.Layer, strings.Join(vggLayers, ", "))
		}
		out = append(out, lw)
	}
	if len(out) == 0 {
		return nil, errors.New("no style layers given")
	}
	return out, nil
}
