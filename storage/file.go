package storage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// fileRoot is what storage knows of a bucket opened from a file:// URL: the directory fileblob
// serves, as fileblob computes it (filepath.Abs, symlinks kept), and its real path (symlinks
// resolved), against which symlinks inside it are judged.
//
// fileblob's own listing is not used: it walks the whole tree from the root again for every
// page (quadratic in the tree's size), its order is the walk's ("a/x" before "a-b"), its pages
// can repeat keys and, where the walk order is not lexical, skip them. The walker below
// visits each directory once, in key order.
type fileRoot struct {
	dir  string
	real string
}

// openFileRoot returns the directory a file URL names, the way fileblob's URL opener reads it:
// the path, relative to the working directory when the host is ".", any other host ignored.
func openFileRoot(u *url.URL) (*fileRoot, error) {
	p := u.Path
	if u.Host == "." || os.PathSeparator != '/' {
		p = strings.TrimPrefix(p, "/")
	}
	dir, err := filepath.Abs(filepath.FromSlash(p))
	if err != nil {
		return nil, err
	}
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return nil, err
	}
	return &fileRoot{dir: dir, real: real}, nil
}

// fileURL prepares a file:// URL for blob.OpenBucket: it sets no_tmp_dir unless the URL sets
// it (fileblob's temporary files then go beside the final path, so a rename never crosses
// filesystems), and refuses the generic prefix and key options, which would make the keys
// fileblob serves differ from the paths the walker lists.
func fileURL(u *url.URL) (string, error) {
	q := u.Query()
	for _, opt := range []string{"prefix", "key"} {
		if q.Has(opt) {
			return "", fmt.Errorf("the %s= option is not supported on file URLs; put the directory in the path", opt)
		}
	}
	if !q.Has("no_tmp_dir") {
		q.Set("no_tmp_dir", "true")
	}
	v := *u
	v.RawQuery = q.Encode()
	return v.String(), nil
}

// inside reports whether the real path p lies strictly below the bucket's real directory.
func (f *fileRoot) inside(p string) bool {
	root := f.real
	if !strings.HasSuffix(root, string(os.PathSeparator)) {
		root += string(os.PathSeparator)
	}
	return strings.HasPrefix(p, root)
}

// attrsExt is the suffix of fileblob's attribute sidecars ("photo.png.attrs").
const attrsExt = ".attrs"

// maxSidecar bounds the sidecar storage reads; fileblob writes a few hundred bytes.
const maxSidecar = 1 << 20

// isTempName reports whether name is one of fileblob's temporary files: the final name, ".",
// the creation time in hex nanoseconds (16 digits from 2006 to 2262) and ".tmp" (see
// gocloud.dev/blob/fileblob createTemp). With no_tmp_dir they sit beside the final path, and
// a killed writer leaves them there.
func isTempName(name string) bool {
	base, ok := strings.CutSuffix(name, ".tmp")
	if !ok {
		return false
	}
	i := strings.LastIndexByte(base, '.')
	if i < 1 || len(base)-i-1 != 16 {
		return false
	}
	for _, c := range base[i+1:] {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// nameProblem says why a file name cannot be served safely under the key it spells, or ""
// if it can. fileblob stores keys with control characters, a trailing "/", "//" or "../" as
// hex escapes "__0x<hex>__", and (since gocloud v0.49) escapes text that looks like one; its
// listing reads such names back unescaped. A name holding an escape sequence, a control
// character or invalid UTF-8 therefore either stands for another key (x__0x2f__y.png would be
// listed as x/y.png, beside the real x/y.png) or cannot be read under its own.
func nameProblem(name string) string {
	switch {
	case !utf8.ValidString(name):
		return "is not valid UTF-8"
	case strings.ContainsFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return "holds control characters"
	case hasEscape(name):
		return `holds an escape sequence ("__0x<hex>__") of the file store`
	}
	return ""
}

// hasEscape reports whether s holds "__0x<hex>__", which fileblob's listing would unescape.
func hasEscape(s string) bool {
	for {
		i := strings.Index(s, "__0x")
		if i < 0 {
			return false
		}
		rest := s[i+4:]
		j := strings.IndexByte(rest, '_')
		if j > 0 && strings.HasPrefix(rest[j:], "__") {
			// gocloud's rule (internal/escape unescape): the digits parse as a 32-bit int.
			if _, err := strconv.ParseInt(rest[:j], 16, 32); err == nil {
				return true
			}
		}
		s = s[i+1:]
	}
}

// placeholder reports whether name is fileblob's spelling of a directory placeholder ("sub/"
// is stored as "sub__0x2f__"), and nothing else needs escaping in it.
func placeholder(name string) bool {
	base, ok := strings.CutSuffix(name, "__0x2f__")
	return ok && base != "" && nameProblem(base) == ""
}

// keyProblem says why a key cannot be located on disk without fileblob's escaping (control
// characters, escape sequences, empty segments, a trailing "/", "." or ".." segments), or "".
func keyProblem(key string) string {
	if p := nameProblem(key); p != "" {
		return p
	}
	for _, seg := range strings.Split(key, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return `has an empty, "." or ".." path segment`
		}
	}
	return ""
}

// kind names a non-regular file type for messages.
func kind(m fs.FileMode) string {
	switch {
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe (FIFO)"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	case m.IsDir():
		return "a directory"
	case m&fs.ModeSymlink != 0:
		return "a symlink"
	}
	return "not a regular file"
}

// check is what Read, Attributes and Exists do on a file bucket before fileblob opens anything:
// it refuses keys it cannot locate (ErrKeyName), paths that resolve outside the bucket's
// directory (ErrOutsideBucket), and files, or attribute sidecars, that are not regular
// (ErrNotRegular: opening a FIFO blocks until a writer comes). A missing file, or a directory,
// passes: fileblob then reports NotFound. The check is done on paths, so a file replaced
// between the check and fileblob's open escapes it; it guards against what lies in a
// directory, not against a concurrent attacker.
func (f *fileRoot) check(key string) error {
	if p := keyProblem(key); p != "" {
		return fmt.Errorf("%w: the key %s", ErrKeyName, p)
	}
	path := filepath.Join(f.dir, filepath.FromSlash(key))
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return nil // missing or a broken link: NotFound from the driver
	}
	if !f.inside(real) {
		return fmt.Errorf("%w: it resolves to a path outside the bucket's directory", ErrOutsideBucket)
	}
	fi, err := os.Stat(real)
	if err != nil || fi.IsDir() {
		return nil
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%w: it is %s", ErrNotRegular, kind(fi.Mode()))
	}
	return checkSidecar(path)
}

// checkSidecar refuses an attributes sidecar that is there but not a regular file.
func checkSidecar(path string) error {
	fi, err := os.Lstat(path + attrsExt)
	if err != nil || fi.Mode().IsRegular() {
		return nil
	}
	return fmt.Errorf("%w: its attributes file %s is %s", ErrNotRegular, filepath.Base(path)+attrsExt, kind(fi.Mode()))
}

// sidecarMD5 returns the MD5 fileblob recorded in path's sidecar: nil when there is none.
// An unreadable sidecar is an error (fileblob's Attributes and reads fail on it too). It
// opens without following symlinks and without blocking, so a FIFO planted as a sidecar is
// refused, not waited on.
func sidecarMD5(path string) ([]byte, error) {
	fh, err := openNoFollow(path + attrsExt)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: its attributes file cannot be opened safely: %v", ErrNotRegular, err)
	}
	defer fh.Close()
	fi, err := fh.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: its attributes file is %s", ErrNotRegular, kind(fi.Mode()))
	}
	data, err := io.ReadAll(io.LimitReader(fh, maxSidecar+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxSidecar {
		return nil, fmt.Errorf("its attributes file is over %d bytes", maxSidecar)
	}
	var xa struct {
		MD5 []byte `json:"md5"`
	}
	if err := json.Unmarshal(data, &xa); err != nil {
		return nil, fmt.Errorf("its attributes file does not decode: %w", err)
	}
	return xa.MD5, nil
}

// etag is the ETag fileblob's Attributes reports for a file, so that a version taken from a
// listing equals one taken from Attributes.
func etag(fi fs.FileInfo) string {
	return fmt.Sprintf("\"%x-%x\"", fi.ModTime().UnixNano(), fi.Size())
}

// entry is one directory entry, with the name it sorts by: a directory "a" sorts as "a/", so
// that keys come out in byte order ("a-b" < "a/x" < "a0").
type entry struct {
	name, sortName string
	dir            bool
}

// list calls fn for every file below the bucket's directory whose key starts with prefix, in
// byte order of keys, once each. It holds one directory's entries per level of the walk.
func (f *fileRoot) list(ctx context.Context, prefix string, fn func(Object) error) error {
	// From the real path: the bucket's directory may itself be a symlink, which readDir
	// would refuse.
	return f.walk(ctx, f.real, "", "", prefix, fn)
}

// walk lists the real directory path, whose keys start with keyDir ("" or "a/b/"). bad, if not
// empty, says why the keys below cannot be served (a directory's name).
func (f *fileRoot) walk(ctx context.Context, path, keyDir, bad, prefix string, fn func(Object) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	ents, err := readDir(path)
	if err != nil {
		return fmt.Errorf("read directory %q: %w", keyDir, err)
	}
	for i, e := range ents {
		if i%256 == 255 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		key := keyDir + e.name
		if e.dir {
			sub := key + "/"
			if !strings.HasPrefix(sub, prefix) && !strings.HasPrefix(prefix, sub) {
				continue
			}
			why := bad
			if p := nameProblem(e.name); why == "" && p != "" {
				why = fmt.Sprintf("its directory %q %s", key, p)
			}
			if err := f.walk(ctx, filepath.Join(path, e.name), sub, why, prefix, fn); err != nil {
				return err
			}
			continue
		}
		if !strings.HasPrefix(key, prefix) || strings.HasSuffix(e.name, attrsExt) || isTempName(e.name) || bad == "" && placeholder(e.name) {
			continue
		}
		if err := fn(f.object(filepath.Join(path, e.name), key, e.name, bad)); err != nil {
			return err
		}
	}
	return nil
}

// object describes the file at path for List: as fileblob's Attributes would, or with Err set
// when the entry cannot be read safely.
func (f *fileRoot) object(path, key, name, bad string) Object {
	o := Object{Key: key}
	lfi, err := os.Lstat(path)
	if err != nil {
		o.Err = fmt.Errorf("storage: list %q: %w", key, err)
		return o
	}
	o.Size, o.ModTime = lfi.Size(), lfi.ModTime()
	fail := func(err error) Object {
		o.Err = fmt.Errorf("storage: list %q: %w", key, err)
		return o
	}
	if bad != "" {
		return fail(fmt.Errorf("%w: %s", ErrKeyName, bad))
	}
	if p := nameProblem(name); p != "" {
		return fail(fmt.Errorf("%w: the file name %s", ErrKeyName, p))
	}
	fi := lfi
	switch m := lfi.Mode(); {
	case m&fs.ModeSymlink != 0:
		real, err := filepath.EvalSymlinks(path)
		if err != nil {
			return fail(fmt.Errorf("%w: a symlink that leads nowhere: %v", ErrNotRegular, err))
		}
		if !f.inside(real) {
			return fail(fmt.Errorf("%w: a symlink to a path outside the bucket's directory", ErrOutsideBucket))
		}
		if fi, err = os.Stat(real); err != nil {
			return fail(err)
		}
		if !fi.Mode().IsRegular() {
			return fail(fmt.Errorf("%w: a symlink to %s (not followed)", ErrNotRegular, kind(fi.Mode())))
		}
		o.Size, o.ModTime = fi.Size(), fi.ModTime()
	case !m.IsRegular():
		return fail(fmt.Errorf("%w: it is %s", ErrNotRegular, kind(m)))
	}
	md5, err := sidecarMD5(path)
	if err != nil {
		return fail(err)
	}
	o.MD5, o.ETag = md5, etag(fi)
	return o
}

// readDir returns the entries of the directory at path sorted by sortName. It opens path
// without following a symlink (a directory replaced by a link is not walked into).
func readDir(path string) ([]entry, error) {
	d, err := openDirNoFollow(path)
	if err != nil {
		return nil, err
	}
	des, err := d.ReadDir(-1)
	d.Close()
	if err != nil {
		return nil, err
	}
	ents := make([]entry, len(des))
	for i, de := range des {
		e := entry{name: de.Name(), sortName: de.Name()}
		if de.IsDir() { // the entry itself, not a symlink to one
			e.dir, e.sortName = true, e.name+"/"
		}
		ents[i] = e
	}
	slices.SortFunc(ents, func(a, b entry) int { return strings.Compare(a.sortName, b.sortName) })
	return ents, nil
}
