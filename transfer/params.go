// Package transfer holds what the style-transfer engine is asked and what it answers: Params,
// Request, Result, the Engine interface, and what every engine shares so that they behave
// alike: request checks (Request.Validate), the pyramid of sizes (Pyramid) and the step
// bookkeeping (Steps). The libtorch engine lives in transfer/torch, the engine in child
// processes in transfer/worker, a pure-Go fake for tests in transfer/fake, and the contract
// they all pass in transfer/transfertest. This package imports only transfer/imaging (pure
// Go) and no cgo, so the pipeline builds and tests without libtorch.
package transfer

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
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

	// L-BFGS settings (ignored by Adam).
	History   int     `json:"history,omitempty"`
	Tolerance float64 `json:"tolerance,omitempty"`

	// Precision of the VGG19 forward and backward: "" or "fp32" (the seed's), or "bf16"
	// (bfloat16 convolutions; features, Gram matrices, losses and the image stay float32).
	// bf16 is faster where the hardware has it and is not bit-exact with the seed.
	Precision string `json:"precision,omitempty"`
}

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

// Validate reports every problem with p at once, each naming its field.
func (p Params) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	finite := func(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

	if p.Size < 0 || p.Size > MaxSize {
		bad("size: %d is outside 0..%d", p.Size, MaxSize)
	}
	if p.Steps < 1 || p.Steps > MaxSteps {
		bad("steps: %d is outside 1..%d", p.Steps, MaxSteps)
	}
	switch p.Optimizer {
	case Adam, LBFGS:
	default:
		bad("optimizer: %q is not adam or lbfgs", p.Optimizer)
	}
	if !finite(p.LR) || p.LR <= 0 {
		bad("lr: %v must be a positive number", p.LR)
	}
	for _, w := range []struct {
		name string
		v    float64
	}{{"contentWeight", p.ContentWeight}, {"styleWeight", p.StyleWeight}, {"tvWeight", p.TVWeight}} {
		if !finite(w.v) || w.v < 0 {
			bad("%s: %v must be a finite number >= 0", w.name, w.v)
		}
	}
	if LayerIndex(p.ContentLayer) < 0 {
		bad("contentLayer: unknown layer %q (want one of %s)", p.ContentLayer, strings.Join(vggLayers, ", "))
	}
	if len(p.StyleLayers) == 0 {
		bad("styleLayers: at least one layer is needed")
	}
	seen := map[string]bool{}
	for i, l := range p.StyleLayers {
		if LayerIndex(l.Layer) < 0 {
			bad("styleLayers[%d]: unknown layer %q (want one of %s)", i, l.Layer, strings.Join(vggLayers, ", "))
		}
		if seen[l.Layer] {
			bad("styleLayers[%d]: layer %q listed twice", i, l.Layer)
		}
		seen[l.Layer] = true
		if !finite(l.Weight) || l.Weight < 0 {
			bad("styleLayers[%d] (%s): weight %v must be a finite number >= 0", i, l.Layer, l.Weight)
		}
	}
	switch p.Init {
	case InitContent, InitNoise, InitStyle:
	default:
		bad("init: %q is not content, noise or style", p.Init)
	}
	for i, w := range p.StyleBlend {
		if !finite(w) || w < 0 {
			bad("styleBlend[%d]: %v must be a finite number >= 0", i, w)
		}
	}
	if len(p.StyleBlend) > 0 && sum(p.StyleBlend) == 0 {
		bad("styleBlend: the weights add up to 0")
	}
	if !finite(p.StyleScale) || p.StyleScale < 0 || p.StyleScale > 8 {
		bad("styleScale: %v is outside 0..8", p.StyleScale)
	}
	switch p.Precision {
	case "", FP32, BF16:
	default:
		bad("precision: %q is not fp32 or bf16", p.Precision)
	}
	if p.Scales < 0 || p.Scales > MaxScale {
		bad("scales: %d is outside 0..%d", p.Scales, MaxScale)
	}
	if len(p.ScaleSteps) > 0 && len(p.ScaleSteps) != max(p.Scales, 1)-1 {
		bad("scaleSteps: %d values for %d scales (want one per scale before the last, coarsest first)", len(p.ScaleSteps), max(p.Scales, 1))
	}
	for i, n := range p.ScaleSteps {
		if n < 1 || n > MaxSteps {
			bad("scaleSteps[%d]: %d is outside 1..%d", i, n, MaxSteps)
		}
	}
	if !finite(p.StopTolerance) || p.StopTolerance < 0 || p.StopTolerance >= 1 {
		bad("stopTolerance: %v is outside [0, 1) (a fraction of the loss; 0: off)", p.StopTolerance)
	}
	if p.StopWindow < 0 || p.StopWindow > MaxSteps {
		bad("stopWindow: %d is outside 0..%d", p.StopWindow, MaxSteps)
	} else if p.StopTolerance > 0 && p.StopWindow < 1 {
		bad("stopWindow: %d: a stopTolerance needs a window of at least 1 step", p.StopWindow)
	}
	if p.Schedule != "" {
		if _, ok := LookupSchedule(p.Schedule); !ok {
			bad("schedule: %q is not one of %s", p.Schedule, strings.Join(ScheduleNames(), ", "))
		}
	}
	if p.Optimizer == LBFGS {
		if p.History < 1 || p.History > 1000 {
			bad("history: %d is outside 1..1000", p.History)
		}
		if !finite(p.Tolerance) || p.Tolerance < 0 {
			bad("tolerance: %v must be a finite number >= 0", p.Tolerance)
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
