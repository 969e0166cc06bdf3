package manifests

import (
	"fmt"
	"maps"
	"math"
	"path"
	"regexp"
	"slices"
	"strings"
)

var (
	dnsLabel   = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	labelKey   = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._/-]{0,61}[A-Za-z0-9])?$`)
	presetName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)
	sha256Hex  = regexp.MustCompile(`^[0-9a-fA-F]{64}$`)
	// layerName is the syntax of a VGG19 conv layer: conv1_x and conv2_x have two layers,
	// conv3_x to conv5_x four.
	layerName = regexp.MustCompile(`^conv([12]_[12]|[3-5]_[1-4])$`)
)

// Schema limits on engine options. The engine enforces its own; these catch typos early.
const (
	maxSize    = 8192
	maxSteps   = 1_000_000
	maxScales  = 8
	maxStyle   = 8.0
	maxHistory = 1000
)

// validateManifest records every problem with a decoded manifest.
func validateManifest(m *Manifest, ps *problems) {
	switch m.APIVersion {
	case APIVersion:
	case "":
		ps.add("apiVersion", "is required (want %s)", APIVersion)
	default:
		ps.add("apiVersion", "%q is not supported (want %s)", m.APIVersion, APIVersion)
	}
	switch m.Kind {
	case Kind:
	case "":
		ps.add("kind", "is required (want %s)", Kind)
	default:
		ps.add("kind", "%q is not supported (want %s)", m.Kind, Kind)
	}
	switch {
	case m.Metadata.Name == "":
		ps.add("metadata.name", "is required")
	case !dnsLabel.MatchString(m.Metadata.Name):
		ps.add("metadata.name", "%q must be 1..63 lower-case letters, digits and '-', starting and ending with a letter or digit", m.Metadata.Name)
	}
	for _, k := range slices.Sorted(maps.Keys(m.Metadata.Labels)) { // sorted: same-line problems in a stable order
		if !labelKey.MatchString(k) {
			ps.add(child("metadata.labels", k), "label key must be 1..63 letters, digits, '.', '_', '-' and '/', starting and ending with a letter or digit")
		}
	}

	s := &m.Spec
	validateModel(s.Model, ps)
	validateInputs(&s.Inputs, ps)
	validateOptions(s.Params, "spec.params", ps)
	validatePresets(s.Presets, "spec.presets", ps)
	if s.PresetsFrom != "" {
		if _, _, err := SplitObjectURL(s.PresetsFrom); err != nil {
			ps.add("spec.presetsFrom", "%s", urlMsg(err))
		}
	}
	validateOutput(s.Output, ps)
	validateOverlap(s, ps, nil)
}

func validateModel(m Model, ps *problems) {
	switch {
	case m.Weights == "":
		ps.add("spec.model.weights", "is required (a URL, or %q)", RandomWeights)
	case m.IsRandom():
		if m.SHA256 != "" {
			ps.add("spec.model.sha256", "is not allowed with weights: %s", RandomWeights)
		}
	default:
		if _, _, err := SplitObjectURL(m.Weights); err != nil {
			ps.add("spec.model.weights", "%s", urlMsg(err))
		}
		if m.RandomSeed != nil {
			ps.add("spec.model.randomSeed", "is only allowed with weights: %s", RandomWeights)
		}
	}
	if m.SHA256 != "" && !sha256Hex.MatchString(m.SHA256) {
		ps.add("spec.model.sha256", "must be 64 hex digits, found %d characters", len(m.SHA256))
	}
}

func validateInputs(in *Inputs, ps *problems) {
	list := in.Pairing == PairingList
	validateSource(in.Contents, "spec.inputs.contents", list, ps)
	validateSource(in.Styles, "spec.inputs.styles", list, ps)
	switch in.Pairing {
	case "", PairingCross, PairingZip, PairingList:
	default:
		ps.add("spec.inputs.pairing", "%q is not supported (want %s, %s or %s)", in.Pairing, PairingCross, PairingZip, PairingList)
	}
	if in.Pairing == PairingZip && in.Contents.Keys != nil && in.Styles.Keys != nil &&
		len(in.Contents.Keys) != len(in.Styles.Keys) {
		ps.add("spec.inputs.pairing", "zip needs as many styles as contents (%d contents keys, %d styles keys)",
			len(in.Contents.Keys), len(in.Styles.Keys))
	}
	switch {
	case list && len(in.Pairs) == 0:
		ps.add("spec.inputs.pairs", "pairing: list needs at least one pair")
	case !list && in.Pairs != nil:
		ps.add("spec.inputs.pairs", "is only allowed with pairing: list")
	}
	seen := map[Pair]int{}
	for i, p := range in.Pairs {
		at := index("spec.inputs.pairs", i)
		checkKey(p.Content, at+".content", ps)
		checkKey(p.Style, at+".style", ps)
		k := Pair{Content: p.Content, Style: p.Style}
		if j, dup := seen[k]; dup {
			ps.add(at, "duplicate of spec.inputs.pairs[%d] (line %d)", j, in.Pairs[j].Line)
			continue
		}
		seen[k] = i
	}
}

func validateSource(s Source, at string, list bool, ps *problems) {
	if s.URL == "" {
		ps.add(at+".url", "is required")
	} else if _, _, err := SplitURL(s.URL); err != nil {
		ps.add(at+".url", "%s", urlMsg(err))
	}
	for _, f := range []struct {
		name     string
		patterns []string
	}{{"include", s.Include}, {"exclude", s.Exclude}} {
		for i, p := range f.patterns {
			if _, err := path.Match(p, ""); err != nil {
				ps.add(index(at+"."+f.name, i), "bad pattern %q: %v", p, err)
			}
		}
		if f.patterns != nil && s.Keys != nil {
			ps.add(at+"."+f.name, "is not allowed with keys")
		}
		if f.patterns != nil && list {
			ps.add(at+"."+f.name, "is not allowed with pairing: list")
		}
	}
	if s.Keys != nil && list {
		ps.add(at+".keys", "is not allowed with pairing: list (list keys in spec.inputs.pairs)")
	}
	if s.Keys != nil && len(s.Keys) == 0 {
		ps.add(at+".keys", "is empty (leave it out to list the URL)")
	}
	seen := map[string]int{}
	for i, k := range s.Keys {
		p := index(at+".keys", i)
		checkKey(k, p, ps)
		if j, dup := seen[k]; dup {
			ps.add(p, "duplicate of keys[%d]", j)
			continue
		}
		seen[k] = i
	}
}

// checkKey records a problem if k is not a clean relative object key.
func checkKey(k, at string, ps *problems) {
	switch {
	case k == "":
		ps.add(at, "is required")
	case strings.Contains(k, `\`):
		ps.add(at, "%q must not contain a backslash", k)
	case strings.HasPrefix(k, "/"):
		ps.add(at, "%q must be relative (no leading /)", k)
	case k == ".." || strings.HasPrefix(k, "../") || strings.HasSuffix(k, "/..") || strings.Contains(k, "/../"):
		ps.add(at, "%q must not contain ..", k)
	case k == "." || path.Clean(k) != k:
		ps.add(at, "%q is not a clean key (want %q)", k, path.Clean(k))
	}
}

func validateOutput(o Output, ps *problems) {
	if o.URL == "" {
		ps.add("spec.output.url", "is required")
	} else if _, _, err := SplitURL(o.URL); err != nil {
		ps.add("spec.output.url", "%s", urlMsg(err))
	}
	switch o.Format {
	case "", FormatPNG, FormatJPEG, "jpg":
	default:
		ps.add("spec.output.format", "%q is not supported (want %s or %s)", o.Format, FormatPNG, FormatJPEG)
	}
	if o.OnConflict != "" && !slices.Contains(ConflictPolicies(), o.OnConflict) {
		ps.add("spec.output.onConflict", "%q is not a policy (want %s)", o.OnConflict, strings.Join(ConflictPolicies(), ", "))
	}
	if q := o.JPEGQuality; q != nil {
		if o.Format != FormatJPEG && o.Format != "jpg" {
			ps.add("spec.output.jpegQuality", "is only allowed with format: %s", FormatJPEG)
		} else if *q < 1 || *q > 100 {
			ps.add("spec.output.jpegQuality", "%d is outside 1..100", *q)
		}
	}
}

// validateOverlap refuses an output directory inside, equal to, or holding an input directory,
// so a run never reads its own results. URLs that failed to parse were reported already.
// realDir is location's (nil: no I/O, file paths compared as written).
func validateOverlap(s *Spec, ps *problems, realDir func(string) string) {
	out, err := location(s.Output.URL, realDir)
	if err != nil {
		return
	}
	for _, in := range []struct{ path, url string }{
		{"spec.inputs.contents.url", s.Inputs.Contents.URL},
		{"spec.inputs.styles.url", s.Inputs.Styles.URL},
	} {
		loc, err := location(in.url, realDir)
		if err != nil {
			continue
		}
		switch {
		case out == loc:
			ps.add("spec.output.url", "is the same directory as %s (%s)", in.path, loc)
		case strings.HasPrefix(out, loc):
			ps.add("spec.output.url", "is inside %s (%s); results would be read back as inputs", in.path, loc)
		case strings.HasPrefix(loc, out):
			ps.add("spec.output.url", "holds %s (%s); results would be read back as inputs", in.path, loc)
		}
	}
}

// CheckOverlap checks again that the output directory is not an input directory, inside one
// or holding one, with file directories compared by realDir(dir): dir is an absolute,
// cleaned path ("/data/in"), and realDir returns where it really is, symlinks resolved. Load
// already made the check on the URLs as written, without I/O; the caller does it again after
// ResolveFileURLs with a realDir that looks at the file system, so that "file:///x/data/",
// "file://localhost/x/data/", "file:///x//data/", a symlink to the directory and a relative
// "file://./data/" are all one place. It returns an *Error (problems at spec.output.url,
// without lines) or nil.
func (m *Manifest) CheckOverlap(realDir func(dir string) string) error {
	ps := newProblems()
	validateOverlap(&m.Spec, ps, realDir)
	return ps.err()
}

// validatePresets records problems with each preset and with duplicate names.
func validatePresets(presets []Preset, base string, ps *problems) {
	seen := map[string]int{}
	for i, p := range presets {
		at := index(base, i)
		switch {
		case p.Name == "":
			ps.add(at+".name", "is required")
		case !presetName.MatchString(p.Name):
			ps.add(at+".name", "%q must be 1..63 lower-case letters, digits, '.', '_' and '-', starting with a letter or digit", p.Name)
		default:
			if j, dup := seen[p.Name]; dup {
				ps.add(at+".name", "%q is already used by %s (line %d)", p.Name, index(base, j), presets[j].Line)
			} else {
				seen[p.Name] = i
			}
		}
		validateOptions(p.Options, at, ps)
	}
}

// validateOptions records problems with the options set in o, found under base.
func validateOptions(o Options, base string, ps *problems) {
	at := func(name string) string { return child(base, name) }
	intRange := func(name string, v *int, lo, hi int) {
		if v != nil && (*v < lo || *v > hi) {
			ps.add(at(name), "%d is outside %d..%d", *v, lo, hi)
		}
	}
	nonNegative := func(name string, v *float64) {
		if v != nil {
			if err := checkNonNegative(*v); err != nil {
				ps.add(at(name), "%v", err)
			}
		}
	}
	enum := func(name string, v *string, want ...string) {
		if v == nil {
			return
		}
		for _, w := range want {
			if *v == w {
				return
			}
		}
		ps.add(at(name), "%q is not supported (want %s)", *v, strings.Join(want, " or "))
	}

	intRange("size", o.Size, 0, maxSize)
	intRange("steps", o.Steps, 1, maxSteps)
	enum("optimizer", o.Optimizer, "adam", "lbfgs")
	enum("precision", o.Precision, "fp32", "bf16")
	if o.LR != nil && (!finite(*o.LR) || *o.LR <= 0) {
		ps.add(at("lr"), "%v must be a finite number > 0", *o.LR)
	}
	nonNegative("contentWeight", o.ContentWeight)
	nonNegative("styleWeight", o.StyleWeight)
	nonNegative("tvWeight", o.TVWeight)
	if o.ContentLayer != nil && !layerName.MatchString(*o.ContentLayer) {
		ps.add(at("contentLayer"), "%s", layerMsg(*o.ContentLayer))
	}
	if o.StyleLayers != nil && len(o.StyleLayers) == 0 {
		ps.add(at("styleLayers"), "at least one layer is needed")
	}
	for _, l := range o.StyleLayers {
		p := child(at("styleLayers"), l.Layer)
		if !layerName.MatchString(l.Layer) {
			ps.add(p, "%s", layerMsg(l.Layer))
		}
		if err := checkNonNegative(l.Weight); err != nil {
			ps.add(p, "weight %v", err)
		}
	}
	enum("init", o.Init, "content", "noise", "style")
	intRange("scales", o.Scales, 0, maxScales)
	if v := o.StyleScale; v != nil && (!finite(*v) || *v < 0 || *v > maxStyle) {
		ps.add(at("styleScale"), "%v is outside 0..%v", *v, maxStyle)
	}
	intRange("history", o.History, 1, maxHistory)
	nonNegative("tolerance", o.Tolerance)
	if o.StyleBlend != nil {
		var sum float64
		for i, w := range o.StyleBlend {
			if err := checkNonNegative(w); err != nil {
				ps.add(index(at("styleBlend"), i), "%v", err)
			}
			sum += w
		}
		if sum == 0 {
			ps.add(at("styleBlend"), "the weights add up to 0")
		}
	}
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

func checkNonNegative(v float64) error {
	switch {
	case !finite(v):
		return fmt.Errorf("%v must be a finite number", v)
	case v < 0:
		return fmt.Errorf("%v must be >= 0", v)
	}
	return nil
}

func layerMsg(name string) string {
	return fmt.Sprintf("%q is not a VGG19 conv layer name (conv1_1, conv1_2, conv2_1, conv2_2, conv3_1..conv5_4)", name)
}

// urlMsg turns a SplitURL error ("URL scheme ... is not supported") into a message for a
// field ("scheme ... is not supported").
func urlMsg(err error) string {
	msg := strings.TrimPrefix(err.Error(), "URL ")
	if msg == "is empty" {
		return "is required"
	}
	return msg
}
