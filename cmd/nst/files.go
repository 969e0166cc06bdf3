package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// place is one local file a command reads or writes, with the flag that names it.
type place struct {
	what   string      // how messages name it: "--out", "--style", "the loss plot", ...
	path   string      // as given
	note   string      // said after the path in messages, e.g. where a derived name comes from
	real   string      // absolute, clean, symlinks resolved as far as they exist
	info   os.FileInfo // what is there now (following links), nil if nothing
	output bool
	// inPlace outputs are opened and written where they are (a log, which may be a device);
	// the others are written beside and renamed into place.
	inPlace bool
}

func (p place) String() string { return p.what + " " + p.path + p.note }

// newPlace locates p.path, filling in real and info. A path that cannot be located (a loop of
// links) is a usage error.
func newPlace(p place) (place, error) {
	real, err := realPath(p.path)
	if err != nil {
		return place{}, usagef("%s: %v", p, err)
	}
	p.real = real
	if fi, err := os.Stat(p.path); err == nil {
		p.info = fi
	}
	return p, nil
}

// realPath returns path made absolute and clean, with every symbolic link resolved, including
// a final link whose target does not exist yet (os.Create would create that target). The parts
// that do not exist are kept as written.
func realPath(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	for hops := 0; ; hops++ {
		if r, err := filepath.EvalSymlinks(abs); err == nil {
			return r, nil
		}
		dir, base := filepath.Dir(abs), filepath.Base(abs)
		if dir != abs {
			if dir, err = realPath(dir); err != nil {
				return "", err
			}
		}
		abs = filepath.Join(dir, base)
		target, err := os.Readlink(abs)
		if err != nil {
			// Not a link: abs does not exist (yet), and its directory is resolved.
			return abs, nil
		}
		if hops == 40 {
			return "", errors.New("too many levels of symbolic links")
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(dir, target)
		}
		abs = filepath.Clean(target)
	}
}

// same reports whether a and b are one file: the same real path, or (hard links, bind
// mounts) the same inode.
func same(a, b place) bool {
	return a.real == b.real || (a.info != nil && b.info != nil && os.SameFile(a.info, b.info))
}

// frames describes the intermediate images of --save-every: out's stem + ".step<N>" + out's
// extension, for N = every, 2*every, ... up to last, beside out.
type frames struct {
	out   string // --out as given
	at    string // --out's real directory joined with its name: frames are renamed into that directory
	every int
	last  int
}

func newFrames(out string, every, last int) (frames, error) {
	dir, err := realPath(filepath.Dir(out))
	if err != nil {
		return frames{}, usagef("--out %s: %v", out, err)
	}
	return frames{out: out, at: filepath.Join(dir, filepath.Base(out)), every: every, last: last}, nil
}

// name returns the frame file written at step n.
func (f frames) name(n int) string {
	ext := filepath.Ext(f.out)
	return fmt.Sprintf("%s.step%d%s", strings.TrimSuffix(f.out, ext), n, ext)
}

// step returns the step whose frame would be the file at real path real, if any.
func (f frames) step(real string) (int, bool) {
	ext := filepath.Ext(f.at)
	prefix := strings.TrimSuffix(f.at, ext) + ".step"
	if !strings.HasPrefix(real, prefix) || !strings.HasSuffix(real, ext) || len(real) <= len(prefix)+len(ext) {
		return 0, false
	}
	digits := real[len(prefix) : len(real)-len(ext)]
	if digits[0] == '0' || strings.Trim(digits, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.Atoi(digits)
	if err != nil || n%f.every != 0 || n > f.last {
		return 0, false
	}
	return n, true
}

// collides returns, for p, the step of a frame that would be written over it.
func (f frames) collides(p place) (int, bool) {
	if n, ok := f.step(p.real); ok {
		return n, true
	}
	if p.info == nil {
		return 0, false
	}
	// A frame that already exists may be another name (a hard link, a link) of p.
	dir := filepath.Dir(f.at)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, false
	}
	for _, e := range entries {
		n, ok := f.step(filepath.Join(dir, e.Name()))
		if !ok {
			continue
		}
		if fi, err := os.Stat(filepath.Join(dir, e.Name())); err == nil && os.SameFile(fi, p.info) {
			return n, true
		}
	}
	return 0, false
}

// checkPlaces refuses, as a usage error naming both, any output that is an input or another
// output, including the frames of fr (fr.every == 0: none).
func checkPlaces(places []place, fr frames) error {
	for i, a := range places {
		for _, b := range places[i+1:] {
			if !(a.output || b.output) || !same(a, b) {
				continue
			}
			out, other := a, b
			if !a.output {
				out, other = b, a
			}
			kind := "another output"
			if !other.output {
				kind = "an input"
			}
			return usagef("%s and %s are the same file (%s): refusing to write over %s", out, other, out.real, kind)
		}
	}
	if fr.every > 0 {
		for _, p := range places {
			if n, ok := fr.collides(p); ok {
				kind := "another output"
				if !p.output {
					kind = "an input"
				}
				return usagef("--save-every %d would write the step-%d image %s over %s (%s): refusing to write over %s",
					fr.every, n, fr.name(n), p, p.real, kind)
			}
		}
	}
	return nil
}

// checkWritable makes sure an output can be written where it is named, before any work: its
// directory exists and takes a new file, and nothing but a regular file is in its way (unless
// p.inPlace: then it is opened and written, which also suits a device such as /dev/stdout).
func checkWritable(p place) error {
	replace := !p.inPlace
	if p.info != nil {
		switch {
		case p.info.IsDir():
			return usagef("%s: is a directory", p)
		case replace && !p.info.Mode().IsRegular():
			return usagef("%s: is not a regular file (%s)", p, p.info.Mode().Type())
		case !replace:
			// Opened in place: only the file itself must take writes.
			f, err := os.OpenFile(p.path, os.O_WRONLY, 0)
			if err != nil {
				return usagef("%s: cannot write: %v", p, cause(err))
			}
			return f.Close()
		}
	}
	dir := filepath.Dir(p.path)
	if fi, err := os.Stat(dir); err != nil {
		return usagef("%s: directory %s: %v", p, dir, cause(err))
	} else if !fi.IsDir() {
		return usagef("%s: %s is not a directory", p, dir)
	}
	f, err := createTemp(p.path)
	if err != nil {
		return usagef("%s: cannot create files in %s: %v", p, dir, cause(err))
	}
	f.Close()
	os.Remove(f.Name())
	return nil
}

// cause strips the path from a file-system error, so that messages name the flag and the
// file the user gave, not a temporary file.
func cause(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	var le *os.LinkError
	if errors.As(err, &le) {
		return le.Err
	}
	return err
}

// createTemp creates a new hidden file beside path, with mode 0666 less the umask (as
// os.Create), where os.CreateTemp would give 0600.
func createTemp(path string) (*os.File, error) {
	dir, base := filepath.Split(path)
	for {
		name := filepath.Join(dir, "."+base+"."+strconv.FormatUint(rand.Uint64(), 36)+".tmp")
		f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o666)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		return f, err
	}
}

// writeFile writes path atomically: a new file beside it, renamed into place once complete,
// so a failure leaves whatever was there. Errors name what (the flag) and path.
func writeFile(what, path string, write func(io.Writer) error) error {
	tmp, err := createTemp(path)
	if err != nil {
		return fmt.Errorf("%s %s: %w", what, path, cause(err))
	}
	defer os.Remove(tmp.Name())
	if err := write(tmp); err != nil {
		tmp.Close()
		return fmt.Errorf("%s %s: %w", what, path, cause(err))
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("%s %s: %w", what, path, cause(err))
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("%s %s: %w", what, path, cause(err))
	}
	return nil
}
