package main

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"image/png"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// stylizeDir makes a directory with the inputs of one stylize command (content c.png, styles
// s1.png and s2.png, weights w.pth that are not weights) and a directory link/ pointing at it,
// and changes into it.
func stylizeDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	writePNG(t, filepath.Join(dir, "c.png"), 40, 32, 1)
	writePNG(t, filepath.Join(dir, "s1.png"), 32, 32, 2)
	writePNG(t, filepath.Join(dir, "s2.png"), 32, 32, 3)
	if err := os.WriteFile(filepath.Join(dir, "w.pth"), []byte("not weights"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(dir, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	return dir
}

// snapshot returns every file under dir with a digest of its bytes (links as their target).
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			m[rel] = "-> " + target
			return err
		case d.IsDir():
			return nil
		case !d.Type().IsRegular():
			m[rel] = d.Type().String() // a FIFO: reading it would block
			return nil
		}
		b, err := os.ReadFile(p)
		sum := sha256.Sum256(b)
		m[rel] = hex.EncodeToString(sum[:])
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// stylizeArgs are the arguments of a stylize command over stylizeDir's files, with the
// flags in set replaced or added ("" drops a flag).
func stylizeArgs(set map[string]string) []string {
	flags := []struct{ name, value string }{
		{"--content", "c.png"}, {"--style", "s1.png,s2.png"}, {"--weights", "w.pth"},
		{"--out", "o.png"}, {"--loss-log", "l.jsonl"}, {"--loss-plot", "p.png"}, {"--save-every", "2"},
		{"--steps", "4"}, {"--size", "32"}, {"--device", "cpu"}, {"--threads", "1"}, {"--random-weights", ""},
	}
	args := []string{"stylize"}
	for _, f := range flags {
		v, ok := set[f.name]
		if !ok {
			v = f.value
		}
		if v != "" {
			args = append(args, f.name+"="+v)
		}
	}
	return args
}

// TestStylizeRefusesCollisions: no file nst stylize writes (the image, the loss log, its
// plot, named or derived from the log, the --save-every frames) may be one of its inputs
// (content, each style, the weights) or another of its outputs, however the two are spelt.
// Each case is refused with exit 2 before any work, in one line naming both, and no file in
// the directory changes.
func TestStylizeRefusesCollisions(t *testing.T) {
	type output struct {
		name string
		at   string            // the file this output writes, relative to the directory
		set  map[string]string // flags that make it write there
	}
	outputs := []output{
		{"--out", "o.png", nil},
		{"--loss-log", "l.jsonl", nil},
		{"--loss-plot", "p.png", nil},
		{"the loss plot", "l.png", map[string]string{"--loss-plot": ""}}, // derived from --loss-log l.jsonl
		{"--save-every", "o.step4.png", nil},                             // the frame of step 4 (of 4)
	}
	inputs := []struct{ name, flag, value, test string }{
		{"--content", "--content", "%s", "content"},
		{"--style", "--style", "%s,s2.png", "first style"},
		{"--style", "--style", "s1.png,%s", "second style"},
		{"--weights", "--weights", "%s", "weights"},
	}
	// spellings name the file at (relative to the directory) in another way, preparing the
	// directory where needed.
	spellings := []struct {
		name  string
		spell func(t *testing.T, dir, at string) string
	}{
		{"same", func(t *testing.T, dir, at string) string { return at }},
		{"absolute", func(t *testing.T, dir, at string) string { return filepath.Join(dir, at) }},
		{"dotdot", func(t *testing.T, dir, at string) string { return "./sub/../" + at }},
		{"linked dir", func(t *testing.T, dir, at string) string { return "link/" + at }},
		{"symlink", func(t *testing.T, dir, at string) string {
			if err := os.Symlink(at, "ln-"+at); err != nil {
				t.Fatal(err)
			}
			return "ln-" + at
		}},
		{"hard link", func(t *testing.T, dir, at string) string {
			if err := os.Link(at, "hl-"+at); err != nil {
				t.Fatal(err)
			}
			return "hl-" + at
		}},
	}
	check := func(t *testing.T, dir string, args []string, names ...string) {
		t.Helper()
		before := snapshot(t, dir)
		code, stdout, stderr := runCLI(t, nil, args...)
		if code != exitUsage {
			t.Errorf("%q: exit %d, want %d\nstdout %s\nstderr %s", args, code, exitUsage, stdout, stderr)
		}
		for _, n := range names {
			if !strings.Contains(stderr, n) {
				t.Errorf("%q: stderr does not name %q: %s", args, n, stderr)
			}
		}
		if lines := strings.Count(strings.TrimSpace(stderr), "\n"); lines > 0 {
			t.Errorf("stderr has %d lines, want one: %q", lines+1, stderr)
		}
		if after := snapshot(t, dir); !mapsEqual(before, after) {
			t.Errorf("%q changed the directory:\nbefore %v\nafter  %v", args, before, after)
		}
	}

	// An output over an input: the input is stored where the output writes, and named there in
	// each spelling.
	for _, o := range outputs {
		for _, in := range inputs {
			for _, sp := range spellings {
				t.Run(o.name+" over "+in.test+" "+sp.name, func(t *testing.T) {
					dir := stylizeDir(t)
					writePNG(t, o.at, 32, 32, 4)
					set := map[string]string{}
					for k, v := range o.set {
						set[k] = v
					}
					path := sp.spell(t, dir, o.at)
					set[in.flag] = strings.Replace(in.value, "%s", path, 1)
					check(t, dir, stylizeArgs(set), o.name, in.name+" "+path)
				})
			}
		}
	}

	// An output over another output. A frame can never be --out itself (its name has
	// ".step<N>" before --out's extension), and frames differ from each other (N counts the
	// steps of every scale), so those pairs cannot occur.
	for _, c := range []struct {
		name  string
		set   map[string]string
		names []string
	}{
		{"log is out", map[string]string{"--loss-log": "%s/o.png"}, []string{"--out o.png", "--loss-log"}},
		{"plot is out", map[string]string{"--loss-plot": "%s/o.png"}, []string{"--out o.png", "--loss-plot"}},
		{"derived plot is out", map[string]string{"--loss-plot": "", "--loss-log": "%s/o.jsonl"},
			[]string{"--out o.png", "the loss plot", "--loss-log", "--loss-plot"}},
		{"plot is log", map[string]string{"--loss-plot": "%s/l.jsonl"}, []string{"--loss-log l.jsonl", "--loss-plot"}},
		{"derived plot is log", map[string]string{"--loss-plot": "", "--loss-log": "%s/l.png"}, []string{"--loss-log", "the loss plot"}},
		{"frame is log", map[string]string{"--loss-log": "%s/o.step2.png"}, []string{"--save-every 2", "o.step2.png", "--loss-log"}},
		{"frame is plot", map[string]string{"--loss-plot": "%s/o.step4.png"}, []string{"--save-every 2", "o.step4.png", "--loss-plot"}},
		{"frame is derived plot", map[string]string{"--loss-plot": "", "--loss-log": "%s/o.step2.jsonl"},
			[]string{"--save-every 2", "o.step2.png", "the loss plot"}},
	} {
		for _, sp := range []string{".", "link", "sub/.."} {
			t.Run(c.name+" "+sp, func(t *testing.T) {
				dir := stylizeDir(t)
				set := map[string]string{}
				for k, v := range c.set {
					set[k] = strings.Replace(v, "%s", sp, 1)
				}
				check(t, dir, stylizeArgs(set), c.names...)
			})
		}
	}

	// The report: --out r.png --loss-log r.jsonl drew the plot over the image.
	t.Run("issue example", func(t *testing.T) {
		dir := stylizeDir(t)
		check(t, dir, []string{"stylize", "--content", "c.png", "--style", "s1.png", "--random-weights",
			"--steps", "2", "--size", "32", "--device", "cpu", "--threads", "1", "--out", "r.png", "--loss-log", "r.jsonl"},
			"the loss plot r.png", "--out r.png", "--loss-plot")
	})
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestStylizeWritesEveryOutput runs stylize with every output at once, beside an input whose
// name looks like a frame that is not written (step 3 with --save-every 2), and checks that
// each output is there, the inputs are untouched, the images are images, and the files have
// the mode os.Create gives (0666 less the umask), not os.CreateTemp's 0600.
func TestStylizeWritesEveryOutput(t *testing.T) {
	dir := stylizeDir(t)
	if err := os.Rename("c.png", "o.step3.png"); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, dir)
	args := stylizeArgs(map[string]string{"--content": "o.step3.png", "--style": "s1.png", "--weights": "", "--random-weights": "true", "--loss-plot": ""})
	// The second time, every output exists and is replaced.
	for range 2 {
		if code, _, stderr := runCLI(t, nil, args...); code != exitOK {
			t.Fatalf("%q: exit %d: %s", args, code, stderr)
		}
	}
	after := snapshot(t, dir)
	for k, v := range before {
		if after[k] != v {
			t.Errorf("input %s changed", k)
		}
	}
	var written []string
	for k := range after {
		if _, ok := before[k]; !ok {
			written = append(written, k)
		}
	}
	slices.Sort(written)
	if want := []string{"l.jsonl", "l.png", "o.png", "o.step2.png", "o.step4.png"}; !slices.Equal(written, want) {
		t.Errorf("wrote %q, want %q", written, want)
	}
	umask := syscall.Umask(0)
	syscall.Umask(umask)
	for _, name := range written {
		fi, err := os.Stat(name)
		if err != nil {
			t.Fatal(err)
		}
		if want := fs.FileMode(0o666 &^ umask); fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", name, fi.Mode().Perm(), want)
		}
		if strings.HasSuffix(name, ".png") {
			f, err := os.Open(name)
			if err != nil {
				t.Fatal(err)
			}
			_, err = png.DecodeConfig(f)
			f.Close()
			if err != nil {
				t.Errorf("%s: %v", name, err)
			}
		}
	}
}

// TestStylizeChecksOutputsFirst: an output that cannot be written where it is named is refused
// with exit 2, naming its flag, before any work (the weights given are not weights: had the
// engine been opened, the error would be about them).
func TestStylizeChecksOutputsFirst(t *testing.T) {
	for _, c := range []struct {
		name  string
		set   map[string]string
		want  string
		setup func(t *testing.T)
	}{
		{"out in a missing directory", map[string]string{"--out": "nodir/o.png"}, "--out nodir/o.png: directory nodir", nil},
		{"log in a missing directory", map[string]string{"--loss-log": "nodir/l.jsonl"}, "--loss-log nodir/l.jsonl: directory nodir", nil},
		{"plot under a file", map[string]string{"--loss-plot": "c.png/p.png"}, "--loss-plot c.png/p.png: c.png is not a directory", nil},
		{"derived plot under a file", map[string]string{"--loss-plot": "", "--loss-log": "w.pth/l.jsonl"}, "--loss-log w.pth/l.jsonl: w.pth is not a directory", nil},
		{"out is a directory", map[string]string{"--out": "sub.png"}, "--out sub.png: is a directory",
			func(t *testing.T) {
				if err := os.Mkdir("sub.png", 0o755); err != nil {
					t.Fatal(err)
				}
			}},
		{"plot is a FIFO", map[string]string{"--loss-plot": "fifo.png"}, "--loss-plot fifo.png: is not a regular file",
			func(t *testing.T) {
				if err := syscall.Mkfifo("fifo.png", 0o644); err != nil {
					t.Fatal(err)
				}
			}},
		// Nobody, root included, can create files in /proc.
		{"out where nothing can be created", map[string]string{"--out": "/proc/o.png"}, "--out /proc/o.png: cannot create files in /proc: ", nil},
		{"frames in a read-only directory", map[string]string{"--out": "ro/o.png"}, "--out ro/o.png: cannot create files in ro: permission denied",
			func(t *testing.T) {
				if err := os.Mkdir("ro", 0o555); err != nil {
					t.Fatal(err)
				}
				if f, err := os.Create("ro/probe"); err == nil {
					f.Close()
					t.Skip("skipped: this user (root?) can write in a mode 0555 directory, so it cannot be refused")
				}
			}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := stylizeDir(t)
			if c.setup != nil {
				c.setup(t)
			}
			before := snapshot(t, dir)
			args := stylizeArgs(c.set)
			code, _, stderr := runCLI(t, nil, args...)
			if code != exitUsage || !strings.Contains(stderr, c.want) || strings.Contains(stderr, ".tmp") {
				t.Errorf("%q: exit %d, stderr %q; want exit 2 and %q", args, code, stderr, c.want)
			}
			if after := snapshot(t, dir); !mapsEqual(before, after) {
				t.Errorf("the directory changed:\nbefore %v\nafter  %v", before, after)
			}
		})
	}
}

// TestWriteFile: a failed write names the flag and the file asked for, never the temporary
// file, and leaves neither a temporary file nor a partial output.
func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	full := filepath.Join(dir, "full")
	if err := os.Mkdir(full, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(full, "x"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, path string
		write      func(w io.Writer) error
		want       string
	}{
		{"no directory", filepath.Join(dir, "nodir", "o.png"), func(io.Writer) error { return nil }, "no such file or directory"},
		{"encoder fails", filepath.Join(dir, "o.png"), func(w io.Writer) error {
			w.Write([]byte("half"))
			return errors.New("encode: broken")
		}, "encode: broken"},
		{"rename over a directory", full, func(io.Writer) error { return nil }, "file exists"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := writeFile("--out", c.path, c.write)
			if err == nil || !strings.HasPrefix(err.Error(), "--out "+c.path+": ") || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), ".tmp") {
				t.Errorf("error %v; want --out %s: ...%s", err, c.path, c.want)
			}
			entries, _ := os.ReadDir(dir)
			if len(entries) != 1 {
				t.Errorf("left %v behind", entries)
			}
		})
	}
}
