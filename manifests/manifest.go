package manifests

import (
	"fmt"
	"io"
	"path"
	"reflect"
	"strings"
)

// The values of apiVersion and kind a manifest must have.
const (
	APIVersion = "nst/v1"
	Kind       = "StyleBatch"
)

// Pairing modes: how contents and styles are paired.
const (
	PairingCross = "cross" // every content with every style (the default)
	PairingZip   = "zip"   // the i-th content with the i-th style, both in sorted key order
	PairingList  = "list"  // the pairs listed in spec.inputs.pairs
)

// Output formats. "jpg" is accepted as an alias of FormatJPEG.
const (
	FormatPNG  = "png" // the default
	FormatJPEG = "jpeg"
)

// Conflict policies, as spec.output.onConflict: what a run does with an item whose outputs
// exist from another definition (other weights, parameters, inputs or output format).
const (
	ConflictFail    = "fail"    // fail the item, leave the outputs (the default)
	ConflictReplace = "replace" // redo the item over them; items done with the current definition are skipped
	ConflictKeep    = "keep"    // leave them and count the item as stale
)

// ConflictPolicies lists the valid conflict policies.
func ConflictPolicies() []string { return []string{ConflictFail, ConflictReplace, ConflictKeep} }

// RandomWeights, as spec.model.weights, asks for a randomly initialised network instead of
// trained weights: for tests and demos.
const RandomWeights = "random"

// DefaultPreset is the name of the preset used when a manifest gives none.
const DefaultPreset = "default"

// Manifest describes one run of style transfers: which images, with which model and options, and
// where the results go. Load returns it decoded, validated and normalised (see Load).
type Manifest struct {
	APIVersion string   `yaml:"apiVersion"` // must be "nst/v1"
	Kind       string   `yaml:"kind"`       // must be "StyleBatch"
	Metadata   Metadata `yaml:"metadata"`
	Spec       Spec     `yaml:"spec"`
}

// Metadata names a manifest.
type Metadata struct {
	// Name is a DNS-label-like name (lower-case letters, digits and "-", at most 63, starting
	// and ending with a letter or digit); run IDs are built from it.
	Name string `yaml:"name"`
	// Labels are free key/value pairs recorded with the results. Keys are 1..63 characters
	// of letters, digits, ".", "_", "-" and "/", starting and ending with a letter or digit.
	Labels map[string]string `yaml:"labels"`
}

// Spec is what a manifest's run does.
type Spec struct {
	Model  Model  `yaml:"model"`
	Inputs Inputs `yaml:"inputs"`
	// Params are engine options for every pair; presets override them.
	Params Options `yaml:"params"`
	// Presets are the loss-weight settings: each pair runs once per preset. After Load it
	// holds at least one preset (the implicit DefaultPreset) unless PresetsFrom is set; then
	// the caller adds the file's presets with MergePresets.
	Presets []Preset `yaml:"presets"`
	// PresetsFrom is the URL of a YAML file holding more presets (see LoadPresets); empty if
	// none.
	PresetsFrom string `yaml:"presetsFrom"`
	Output      Output `yaml:"output"`
}

// Model says which network weights to use.
type Model struct {
	// Weights is the URL of one object holding the weights, or RandomWeights.
	Weights string `yaml:"weights"`
	// SHA256 is the hex SHA-256 of the weights file, checked by the pipeline when set.
	// Load lower-cases it. Not allowed with random weights.
	SHA256 string `yaml:"sha256"`
	// RandomSeed seeds random weights; only allowed with random weights.
	RandomSeed *int64 `yaml:"randomSeed"`
}

// IsRandom reports whether the model uses random weights rather than a file.
func (m Model) IsRandom() bool { return m.Weights == RandomWeights }

// Inputs are the content and style images and how they are paired.
type Inputs struct {
	Contents Source `yaml:"contents"`
	Styles   Source `yaml:"styles"`
	// Pairing is PairingCross, PairingZip or PairingList; Load sets PairingCross if empty.
	Pairing string `yaml:"pairing"`
	// Pairs are the pairs for PairingList, and only for it; keys are relative to the
	// contents' and styles' URLs.
	Pairs []Pair `yaml:"pairs"`
}

// Source is a set of images under one URL: every object under it (filtered by Include and
// Exclude), or the objects named by Keys.
type Source struct {
	// URL is a directory-like bucket URL (see SplitURL). Load adds a trailing "/" to its path
	// if missing, so keys below are always relative to a directory.
	URL string `yaml:"url"`
	// Include and Exclude are path.Match patterns (see Match). Not allowed with Keys, nor
	// with pairing list.
	Include []string `yaml:"include"`
	Exclude []string `yaml:"exclude"`
	// Keys lists objects relative to URL instead of listing it: clean, relative, without
	// "..", backslashes or duplicates. Not allowed with pairing list.
	Keys []string `yaml:"keys"`
}

// Match reports whether a key relative to s.URL is selected by s's Include and Exclude
// patterns: it must match some Include pattern (any key does if there is none) and no Exclude
// pattern. A pattern containing "/" is matched against the whole relative key, any other
// against its last element, so "*.jpg" selects "a/b.jpg". Patterns were checked by Load.
func (s Source) Match(key string) bool {
	matches := func(patterns []string) bool {
		for _, p := range patterns {
			name := key
			if !strings.Contains(p, "/") {
				name = path.Base(key)
			}
			if ok, _ := path.Match(p, name); ok {
				return true
			}
		}
		return false
	}
	if len(s.Include) > 0 && !matches(s.Include) {
		return false
	}
	return !matches(s.Exclude)
}

// Pair is one content/style pair of a PairingList manifest, keys relative to the sources' URLs.
type Pair struct {
	Content string `yaml:"content"`
	Style   string `yaml:"style"`
	// Line is the pair's 1-based line in the manifest.
	Line int `yaml:"-"`
}

// Output says where and how results are written.
type Output struct {
	// URL is a directory-like bucket URL (see SplitURL); Load adds a trailing "/" to its path
	// if missing. It must not overlap an input directory.
	URL string `yaml:"url"`
	// Format is FormatPNG or FormatJPEG; Load sets FormatPNG if empty and turns "jpg" into
	// FormatJPEG.
	Format string `yaml:"format"`
	// JPEGQuality is 1..100, only with FormatJPEG; nil leaves the encoder's default.
	JPEGQuality *int `yaml:"jpegQuality"`
	// OnConflict is a Conflict policy; Load sets ConflictFail if empty.
	OnConflict string `yaml:"onConflict"`
}

// Preset is one named set of option overrides: each pair runs once per preset, with
// spec.params merged with the preset's options (Options.Merge).
type Preset struct {
	// Name is 1..63 characters of lower-case letters, digits, ".", "_" and "-", starting with
	// a letter or digit; it becomes a path segment of output keys. Unique in a manifest.
	Name    string `yaml:"name"`
	Options `yaml:",inline"`
	// Line is the preset's 1-based line in its source; 0 for the implicit default.
	Line int `yaml:"-"`
	// FromFile is true for presets read by LoadPresets: their lines are in the presets file.
	FromFile bool `yaml:"-"`
}

// HasPresetsFrom reports whether the manifest keeps (some of) its presets in a separate file,
// which the caller must fetch, read with LoadPresets and add with MergePresets.
func (m *Manifest) HasPresetsFrom() bool { return m.Spec.PresetsFrom != "" }

// Load reads a manifest from r and returns it decoded, validated and normalised; it does no
// I/O beyond reading r and never touches the network.
//
// Decoding is strict: unknown fields, duplicate keys, values of the wrong type and more than
// one YAML document are errors. Every problem found (up to MaxProblems) is reported at once in
// an *Error, each naming its line and YAML path, as in "line 12: spec.presets[1].styleWeight:
// -3 must be >= 0". A document that decodes to more than 100,000 YAML values is refused with
// that one problem, and is not validated further (what was not decoded would look missing).
// An error reading r is returned wrapped, not as an *Error.
//
// Normalisation: directory URLs (inputs, output) get a trailing "/"; Pairing defaults to
// cross; Format defaults to png and "jpg" becomes "jpeg"; SHA256 is lower-cased; and with no
// presets and no presetsFrom, Spec.Presets is the one implicit preset "default", with no
// overrides. Line numbers are recorded in Preset.Line, Pair.Line, LayerWeight.Line and
// Options.Lines.
//
// Load reads at most MaxBytes; a longer input is an error (ErrTooLarge).
func Load(r io.Reader) (*Manifest, error) {
	data, err := readAll(r, "manifest")
	if err != nil {
		return nil, err
	}
	return Parse(data)
}

// MaxBytes bounds a manifest or presets file: Load and LoadPresets read no more, and callers
// that read files or objects themselves should refuse larger ones before reading them.
const MaxBytes = 16 << 20

// ErrTooLarge: a manifest or presets file is over MaxBytes.
var ErrTooLarge = fmt.Errorf("larger than %d MiB", MaxBytes>>20)

// readAll reads r up to MaxBytes.
func readAll(r io.Reader, what string) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxBytes+1))
	if err != nil {
		return nil, fmt.Errorf("manifests: reading %s: %w", what, err)
	}
	if len(data) > MaxBytes {
		return nil, fmt.Errorf("manifests: %s is %w", what, ErrTooLarge)
	}
	return data, nil
}

// exhausted reports whether decoding stopped at the node budget: what was not decoded is
// missing, so validating the rest would report false problems ("is required").
func (d *decoder) exhausted() bool { return d.budget < 0 }

// Parse is Load for a manifest already in memory. It refuses more than MaxBytes.
func Parse(data []byte) (*Manifest, error) {
	if len(data) > MaxBytes {
		return nil, fmt.Errorf("manifests: manifest is %w", ErrTooLarge)
	}
	ps := newProblems()
	root := readDocument(data, ps, "manifest")
	if root == nil {
		return nil, ps.err()
	}
	var m Manifest
	d := &decoder{ps: ps, budget: maxNodes}
	d.decode(root, reflect.ValueOf(&m).Elem(), "")
	if d.exhausted() {
		return nil, ps.err()
	}
	if len(ps.list) == 0 {
		strictCheck(data, &m, ps)
	}
	attachLines(&m, ps.lines)
	validateManifest(&m, ps)
	if err := ps.err(); err != nil {
		return nil, err
	}
	normalise(&m)
	return &m, nil
}

// presetsFile is the shape of a presetsFrom file.
type presetsFile struct {
	Presets []Preset `yaml:"presets"`
}

// LoadPresets reads a presets file, the target of spec.presetsFrom:
//
//	presets:
//	  - {name: default, contentWeight: 1, styleWeight: 1e6}
//	  - {name: bold, styleWeight: 1e7, styleLayers: {conv1_1: 1, conv2_1: 1}}
//
// It decodes as strictly as Load, validates each preset as Load does, and reports every
// problem in an *Error with lines of the file and paths such as "presets[1].styleWeight". The
// file must hold at least one preset. The presets have FromFile set. Add them to a manifest's
// with MergePresets. It reads at most MaxBytes, as Load does.
func LoadPresets(r io.Reader) ([]Preset, error) {
	data, err := readAll(r, "presets file")
	if err != nil {
		return nil, err
	}
	ps := newProblems()
	root := readDocument(data, ps, "presets file")
	if root == nil {
		return nil, ps.err()
	}
	var f presetsFile
	d := &decoder{ps: ps, budget: maxNodes}
	d.decode(root, reflect.ValueOf(&f).Elem(), "")
	if d.exhausted() {
		return nil, ps.err()
	}
	if len(ps.list) == 0 {
		strictCheck(data, &f, ps)
	}
	attachPresetLines(f.Presets, "presets", ps.lines)
	if _, ok := ps.lines["presets"]; !ok {
		ps.add("presets", "is required")
	} else if len(f.Presets) == 0 {
		ps.add("presets", "at least one preset is needed")
	}
	validatePresets(f.Presets, "presets", ps)
	if err := ps.err(); err != nil {
		return nil, err
	}
	for i := range f.Presets {
		f.Presets[i].FromFile = true
	}
	return f.Presets, nil
}

// MergePresets returns the manifest's presets followed by those of its presetsFrom file, as
// the run takes them. A name used in both is an error (an *Error naming the file's preset,
// its line in the file, and the manifest's line). If both are empty it returns the implicit
// DefaultPreset. The result shares no memory with the arguments.
func MergePresets(manifest, file []Preset) ([]Preset, error) {
	ps := newProblems()
	where := map[string]Preset{}
	for _, p := range manifest {
		where[p.Name] = p
	}
	for i, p := range file {
		if q, dup := where[p.Name]; dup {
			ps.at(p.Line, index("presets", i)+".name", "preset %q is also defined in the manifest (line %d)", p.Name, q.Line)
		}
	}
	if err := ps.err(); err != nil {
		return nil, err
	}
	out := make([]Preset, 0, len(manifest)+len(file))
	for _, p := range append(append([]Preset(nil), manifest...), file...) {
		p.Options = Options{}.Merge(p.Options)
		out = append(out, p)
	}
	if len(out) == 0 {
		out = append(out, Preset{Name: DefaultPreset})
	}
	return out, nil
}

// attachLines copies the lines the decoder recorded into the manifest's Line fields.
func attachLines(m *Manifest, lines map[string]int) {
	attachOptionLines(&m.Spec.Params, "spec.params", lines)
	attachPresetLines(m.Spec.Presets, "spec.presets", lines)
	for i := range m.Spec.Inputs.Pairs {
		m.Spec.Inputs.Pairs[i].Line = lines[index("spec.inputs.pairs", i)]
	}
}

func attachPresetLines(presets []Preset, base string, lines map[string]int) {
	for i := range presets {
		p := index(base, i)
		presets[i].Line = lines[p]
		attachOptionLines(&presets[i].Options, p, lines)
	}
}

// attachOptionLines sets o.Lines from the lines recorded under base.
func attachOptionLines(o *Options, base string, lines map[string]int) {
	for name := range fieldsOf(reflect.TypeFor[Options]()) {
		if l, ok := lines[child(base, name)]; ok {
			if o.Lines == nil {
				o.Lines = map[string]int{}
			}
			o.Lines[name] = l
		}
	}
}

// normalise fills in defaults and canonical forms; m is valid.
func normalise(m *Manifest) {
	in := &m.Spec.Inputs
	in.Contents.URL = asDirectory(in.Contents.URL)
	in.Styles.URL = asDirectory(in.Styles.URL)
	m.Spec.Output.URL = asDirectory(m.Spec.Output.URL)
	if in.Pairing == "" {
		in.Pairing = PairingCross
	}
	if m.Spec.Output.OnConflict == "" {
		m.Spec.Output.OnConflict = ConflictFail
	}
	switch m.Spec.Output.Format {
	case "":
		m.Spec.Output.Format = FormatPNG
	case "jpg":
		m.Spec.Output.Format = FormatJPEG
	}
	m.Spec.Model.SHA256 = strings.ToLower(m.Spec.Model.SHA256)
	if len(m.Spec.Presets) == 0 && m.Spec.PresetsFrom == "" {
		m.Spec.Presets = []Preset{{Name: DefaultPreset}}
	}
}
