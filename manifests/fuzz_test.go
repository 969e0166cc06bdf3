package manifests

import (
	"bytes"
	"reflect"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// FuzzLoad checks that Parse and LoadPresets never panic, that every problem they report is
// well formed, that a manifest Parse accepts is usable (its URLs split, it has presets or
// presetsFrom), and that whatever the decoder accepts, yaml.v3's own strict decoder accepts
// with the same values. Seeds are in testdata/fuzz/FuzzLoad.
func FuzzLoad(f *testing.F) {
	f.Add([]byte(base))
	f.Fuzz(func(t *testing.T, data []byte) {
		lines := bytes.Count(data, []byte("\n")) + bytes.Count(data, []byte("\r")) + 2 // YAML breaks lines at \r too
		checkProblems := func(err error) {
			if err == nil {
				return
			}
			var e *Error
			if !asError(err, &e) || len(e.Problems) == 0 {
				t.Fatalf("error %v (%T) is not a non-empty *Error", err, err)
			}
			for _, p := range e.Problems {
				if p.Msg == "" || p.Line < 0 || p.Line > lines {
					t.Fatalf("malformed problem %+v in a document of %d lines", p, lines)
				}
			}
		}

		m, err := Parse(data)
		checkProblems(err)
		if err == nil {
			usable(t, m)
		}
		_, err = LoadPresets(bytes.NewReader(data))
		checkProblems(err)

		sameAsYAML(t, data)
	})
}

func asError(err error, e **Error) bool {
	var ok bool
	*e, ok = err.(*Error)
	return ok
}

// usable fails t if an accepted manifest breaks a promise of Load.
func usable(t *testing.T, m *Manifest) {
	t.Helper()
	s := m.Spec
	for _, u := range []string{s.Inputs.Contents.URL, s.Inputs.Styles.URL, s.Output.URL} {
		if _, p, err := SplitURL(u); err != nil || (p != "" && !strings.HasSuffix(p, "/")) {
			t.Fatalf("accepted URL %q splits to prefix %q, %v", u, p, err)
		}
	}
	if !s.Model.IsRandom() {
		if _, _, err := SplitObjectURL(s.Model.Weights); err != nil {
			t.Fatalf("accepted weights %q: %v", s.Model.Weights, err)
		}
	}
	if len(s.Presets) == 0 && !m.HasPresetsFrom() {
		t.Fatal("accepted manifest has no presets and no presetsFrom")
	}
	if s.Output.Format != FormatPNG && s.Output.Format != FormatJPEG {
		t.Fatalf("format %q after normalisation", s.Output.Format)
	}
	switch s.Inputs.Pairing {
	case PairingCross, PairingZip, PairingList:
	default:
		t.Fatalf("pairing %q after normalisation", s.Inputs.Pairing)
	}
}

// sameAsYAML fails t if the decoder accepts data but yaml.v3's strict decoder refuses it or
// decodes other values.
func sameAsYAML(t *testing.T, data []byte) {
	t.Helper()
	ps := newProblems()
	root := readDocument(data, ps, "manifest")
	if root == nil {
		return
	}
	var ours Manifest
	d := &decoder{ps: ps, budget: maxNodes}
	d.decode(root, reflect.ValueOf(&ours).Elem(), "")
	if len(ps.list) > 0 {
		return
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var theirs Manifest
	if err := dec.Decode(&theirs); err != nil {
		t.Fatalf("decoder accepted what yaml.v3 refuses: %v", err)
	}
	if !reflect.DeepEqual(ours, theirs) {
		t.Fatalf("decoder and yaml.v3 disagree:\n ours   %+v\n theirs %+v", ours, theirs)
	}
}
