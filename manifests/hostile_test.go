package manifests

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"
)

// TestMovingOptionsRefused: gocloud's prefix= and key= options would make objects land under
// other keys than the URL's path says (an output "s3://inb/zz/?prefix=pfx/c/" writes into the
// input prefix "pfx/c/"); every manifest URL refuses them, naming the field.
func TestMovingOptionsRefused(t *testing.T) {
	const msg = "query option %s= would move the objects away from the path the URL names; write the prefix in the path (%s://bucket/prefix/)"
	for _, tc := range []struct {
		old, new, field string
		line            int
		opt, scheme     string
	}{
		{"url: mem://out/", "url: s3://inb/zz/?region=x&prefix=pfx/c/", "spec.output.url", 14, "prefix", "s3"},
		{"url: mem://in/contents/", "url: gs://inb/c/?prefix=x/", "spec.inputs.contents.url", 10, "prefix", "gs"},
		{"url: mem://in/styles/", "url: file:///data/s/?key=a.png", "spec.inputs.styles.url", 12, "key", "file"},
		{"weights: random", "weights: s3://m/vgg.pth?prefix=other/", "spec.model.weights", 7, "prefix", "s3"},
		{"  output:\n", "  presetsFrom: mem://cfg/p.yaml?key=x\n  output:\n", "spec.presetsFrom", 13, "key", "mem"},
	} {
		t.Run(tc.field, func(t *testing.T) {
			wantProblems(t, with(t, tc.old, tc.new), []string{fmt.Sprintf("line %d: %s: "+msg, tc.line, tc.field, tc.opt, tc.scheme)})
		})
	}
	if _, _, err := SplitObjectURL("s3://cfg/catalogue.yaml?prefix=x/"); err == nil {
		t.Error("SplitObjectURL accepted prefix=")
	}
}

// TestUnknownQueryOptionRefused: a query option gocloud does not know (a typo) is refused when
// the manifest is read, naming the field and the options that exist, instead of failing when
// the bucket is opened.
func TestUnknownQueryOptionRefused(t *testing.T) {
	wantProblems(t, with(t, "url: mem://out/", "url: s3://out/x/?regoin=eu-west-1"), []string{
		`line 14: spec.output.url: has an unknown query option "regoin" for s3 URLs (known: ` + strings.Join(QueryOptions("s3"), ", ") + `)`,
	})
	wantProblems(t, with(t, "url: mem://out/", "url: file:///out/?create_dir=true&bogus=1"), []string{
		`line 14: spec.output.url: has an unknown query option "bogus" for file URLs (known: create_dir, dir_file_mode, no_tmp_dir, metadata, base_url, secret_key_path)`,
	})
	wantProblems(t, with(t, "url: mem://out/", "url: s3://out/x/?region=%zz"), []string{
		`line 14: spec.output.url: has a query that does not parse: invalid URL escape "%zz"`,
	})
	if _, err := Parse([]byte(with(t, "url: mem://out/", "url: s3://out/x/?region=eu-west-1&endpoint=http://h:9000&use_path_style=true"))); err != nil {
		t.Errorf("known options refused: %v", err)
	}
}

// TestOverlapSpellings: spellings of one directory are one place for the overlap check
// (file://localhost/x and file:///x, doubled or trailing slashes, "/./"); an S3 bucket name in
// another case is the same bucket.
func TestOverlapSpellings(t *testing.T) {
	const same = "line 14: spec.output.url: is the same directory as spec.inputs.contents.url (%s)"
	const inside = "line 14: spec.output.url: is inside spec.inputs.contents.url (%s); results would be read back as inputs"
	for _, tc := range []struct{ in, out, want string }{
		{"file:///tmp/x/data/", "file://localhost/tmp/x/data/", fmt.Sprintf(same, "file:///tmp/x/data/")},
		{"file://localhost/tmp/x/data", "file:///tmp/x//data/", fmt.Sprintf(same, "file:///tmp/x/data/")},
		{"file:///tmp/x/data/", "file:///tmp//x/data//out/", fmt.Sprintf(inside, "file:///tmp/x/data/")},
		{"s3://inb/pfx/c/", "s3://INB/pfx/c/zz/", fmt.Sprintf(inside, "s3://inb/pfx/c/")},
		{"s3://inb/pfx/c/?endpoint=http://a:9000", "s3://inb/pfx/c/?endpoint=http://b:9000", fmt.Sprintf(same, "s3://inb/pfx/c/")},
	} {
		t.Run(tc.out, func(t *testing.T) {
			doc := with(t, "url: mem://in/contents/", "url: "+tc.in)
			doc = strings.Replace(doc, "url: mem://out/", "url: "+tc.out, 1)
			m, err := Parse([]byte(doc))
			if err == nil {
				t.Fatalf("Parse accepted output %s over contents %s", tc.out, tc.in)
			}
			if got := messages(t, err); len(got) != 1 || got[0] != tc.want {
				t.Errorf("problems %q, want %q", got, tc.want)
			}
			_ = m
		})
	}
}

// TestCheckOverlapRealDir: CheckOverlap compares file directories by what realDir says they
// are, so a symlink to the input directory or a relative URL resolved to it is caught.
func TestCheckOverlapRealDir(t *testing.T) {
	doc := with(t, "url: mem://in/contents/", "url: file:///srv/photos/")
	doc = strings.Replace(doc, "url: mem://out/", "url: file:///home/u/link/out/", 1)
	m, err := Parse([]byte(doc))
	if err != nil {
		t.Fatal(err) // as written, no overlap
	}
	var asked []string
	real := func(dir string) string {
		asked = append(asked, dir)
		if rest, ok := strings.CutPrefix(dir, "/home/u/link"); ok {
			return "/srv/photos" + rest
		}
		return dir
	}
	err = m.CheckOverlap(real)
	want := "spec.output.url: is inside spec.inputs.contents.url (file:///srv/photos/); results would be read back as inputs"
	var e *Error
	if !errors.As(err, &e) || len(e.Problems) != 1 || e.Problems[0].Error() != want {
		t.Errorf("CheckOverlap = %v, want %q", err, want)
	}
	if len(asked) == 0 || asked[0] != "/home/u/link/out" {
		t.Errorf("realDir was asked %q, want the cleaned output path first", asked)
	}
	if err := m.CheckOverlap(func(d string) string { return d }); err != nil {
		t.Errorf("CheckOverlap with no links: %v", err)
	}
}

// presetsDoc returns base with n presets, each on its own line.
func presetsDoc(n int, preset func(i int) string) string {
	var b strings.Builder
	b.WriteString(base)
	b.WriteString("  presets:\n")
	for i := range n {
		b.WriteString("    - " + preset(i) + "\n")
	}
	return b.String()
}

// TestHugeManifestHasNoFalseProblems: a manifest too large to decode (30,000 presets, 120,000 YAML values) gets
// the one problem that says so, not the problems of the fields after the budget ran out
// ("spec.output.url: is required" was reported for a valid output), and its message is short.
func TestHugeManifestHasNoFalseProblems(t *testing.T) {
	// Presets before the output: move the output to the end.
	doc := strings.Replace(presetsDoc(30_000, func(i int) string { return fmt.Sprintf("{name: p%d, steps: 1, size: 8}", i) }), "  output:\n    url: mem://out/\n", "", 1)
	doc += "  output:\n    url: mem://out/\n"
	_, err := Parse([]byte(doc))
	got := messages(t, err)
	if len(got) != 1 || !strings.Contains(got[0], "the document is too large, or uses aliases too much") {
		t.Errorf("problems (%d) %q, want only the size problem", len(got), got[:min(len(got), 5)])
	}
	if strings.Contains(err.Error(), "is required") {
		t.Errorf("false problem reported: %s", err)
	}
}

// TestProblemsCapped: 5,000 bad presets give at most MaxProblems problems, a count of the rest,
// and a message of PrintedProblems lines plus one that counts the others.
func TestProblemsCapped(t *testing.T) {
	doc := presetsDoc(5000, func(i int) string { return fmt.Sprintf("{name: p%d, styleWeight: -1, steps: 0}", i) })
	_, err := Parse([]byte(doc))
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("err %v", err)
	}
	if len(e.Problems) != MaxProblems || e.Omitted != 2*5000-MaxProblems {
		t.Errorf("%d problems kept, %d omitted; want %d and %d", len(e.Problems), e.Omitted, MaxProblems, 2*5000-MaxProblems)
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != PrintedProblems+1 || lines[PrintedProblems] != fmt.Sprintf("... and %d more problems", 2*5000-PrintedProblems) {
		t.Errorf("message has %d lines, last %q", len(lines), lines[len(lines)-1])
	}
	if !strings.HasPrefix(lines[0], "line 16: spec.presets[0].") {
		t.Errorf("first line %q", lines[0])
	}
}

// endless is an io.Reader that never ends (like /dev/zero, but YAML-ish).
type endless struct{}

func (endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = '#'
	}
	return len(p), nil
}

// TestLoadBounded: Load and LoadPresets stop reading after MaxBytes and refuse the input with
// ErrTooLarge; Parse refuses a larger slice before decoding it.
func TestLoadBounded(t *testing.T) {
	start := time.Now()
	for name, load := range map[string]func(io.Reader) error{
		"Load":        func(r io.Reader) error { _, err := Load(r); return err },
		"LoadPresets": func(r io.Reader) error { _, err := LoadPresets(r); return err },
	} {
		if err := load(endless{}); !errors.Is(err, ErrTooLarge) {
			t.Errorf("%s(endless): %v, want ErrTooLarge", name, err)
		}
	}
	if _, err := Parse(make([]byte, MaxBytes+1)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Parse(MaxBytes+1): %v, want ErrTooLarge", err)
	}
	t.Logf("refused in %v", time.Since(start))
}
