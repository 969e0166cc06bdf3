package pipeline

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"github.com/nst-project/nst/manifests"
	"github.com/nst-project/nst/storage"
)

// maxManifestBytes bounds manifests and presets files, local or in a bucket.
const maxManifestBytes = manifests.MaxBytes

// bucketSet opens each bucket URL once.
type bucketSet struct {
	cfg Config
	mu  sync.Mutex
	m   map[string]*storage.Bucket
}

func (s *bucketSet) open(ctx context.Context, u string) (*storage.Bucket, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if b, ok := s.m[u]; ok {
		return b, nil
	}
	opts := s.cfg.Storage
	if opts.Logger == nil {
		opts.Logger = s.cfg.Logger
	}
	var b *storage.Bucket
	if s.cfg.OpenBucket == nil {
		var err error
		if b, err = storage.Open(ctx, u, opts); err != nil {
			return nil, err
		}
	} else {
		bb, err := s.cfg.OpenBucket(ctx, u)
		if err != nil {
			return nil, fmt.Errorf("open bucket %s: %w", storage.Redact(u), err)
		}
		b = storage.New(bb, opts)
	}
	if s.m == nil {
		s.m = map[string]*storage.Bucket{}
	}
	s.m[u] = b
	return b, nil
}

// close closes the buckets Run opened itself (not those of a custom OpenBucket).
func (s *bucketSet) close() {
	if s.cfg.OpenBucket != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, b := range s.m {
		b.Close()
	}
}

// openDir opens a directory URL of the manifest.
func (s *bucketSet) openDir(ctx context.Context, u string) (source, error) {
	bu, prefix, err := manifests.SplitURL(u)
	if err != nil {
		return source{}, invalidf("%s: %v", storage.Redact(u), err)
	}
	b, err := s.open(ctx, bu)
	if err != nil {
		return source{}, err
	}
	return source{url: u, bucket: b, prefix: prefix}, nil
}

// readObject reads a whole object given by URL. Errors that retrying cannot cure (a missing
// object, one over maxBytes, on a file bucket a FIFO, device, link out of the bucket or a key
// the file store cannot hold) wrap ErrInvalid.
func (s *bucketSet) readObject(ctx context.Context, u string, maxBytes int64) ([]byte, storage.Object, error) {
	bu, key, err := manifests.SplitObjectURL(u)
	if err != nil {
		return nil, storage.Object{}, invalidf("%s: %v", storage.Redact(u), err)
	}
	b, err := s.open(ctx, bu)
	if err != nil {
		return nil, storage.Object{}, err
	}
	data, obj, err := b.Read(ctx, key, maxBytes)
	for _, bad := range []error{storage.ErrNotFound, storage.ErrTooLarge, storage.ErrNotRegular, storage.ErrOutsideBucket, storage.ErrKeyName} {
		if errors.Is(err, bad) {
			return nil, obj, invalidError{fmt.Errorf("%s: %w", storage.Redact(u), err)}
		}
	}
	return data, obj, err
}

// readLocal reads the manifest file at name, bounded: it refuses anything but a regular file
// (a directory, FIFO, device such as /dev/zero) before opening it, and a file over
// maxManifestBytes before reading it; it opens without blocking (a FIFO swapped in after the
// check is refused by the check on the open file, not waited on) and reads through a limit,
// checking ctx between chunks. Refusals wrap ErrInvalid.
func readLocal(ctx context.Context, name string) ([]byte, error) {
	fi, err := os.Stat(name)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, invalidError{err}
		}
		return nil, err
	}
	if err := checkManifestFile(name, fi); err != nil {
		return nil, err
	}
	// O_NONBLOCK: a FIFO swapped in after the check opens at once, instead of waiting for a
	// writer, and is refused by the check on the open file.
	f, err := os.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err = f.Stat(); err != nil {
		return nil, err
	}
	if err := checkManifestFile(name, fi); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	r := io.LimitReader(f, maxManifestBytes+1)
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		n, err := io.CopyN(&buf, r, 1<<20)
		if err == io.EOF || n == 0 && err == nil {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	if buf.Len() > maxManifestBytes {
		return nil, invalidf("%s: over %d MiB (it grew while being read)", name, maxManifestBytes>>20)
	}
	return buf.Bytes(), nil
}

// checkManifestFile refuses what a manifest cannot be.
func checkManifestFile(name string, fi os.FileInfo) error {
	switch m := fi.Mode(); {
	case m.IsDir():
		return invalidf("%s is a directory, not a manifest file", name)
	case m&os.ModeNamedPipe != 0:
		return invalidf("%s is a named pipe (FIFO), not a manifest file; refused without reading it", name)
	case m&os.ModeDevice != 0:
		return invalidf("%s is a device, not a manifest file; refused without reading it", name)
	case !m.IsRegular():
		return invalidf("%s is not a regular file (%v); refused without reading it", name, m.Type())
	case fi.Size() > maxManifestBytes:
		return invalidf("%s is %d bytes, over the %d MiB a manifest may have", name, fi.Size(), maxManifestBytes>>20)
	}
	return nil
}

// realDir returns where the absolute directory dir (slash-separated) really is, with symlinks
// resolved; a directory that does not exist yet (an output made on the first write) is
// resolved through its longest existing ancestor. On any other failure it returns dir.
func realDir(dir string) string {
	p := filepath.FromSlash(dir)
	var rest []string
	for {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			return filepath.ToSlash(filepath.Join(append([]string{r}, rest...)...))
		}
		parent := filepath.Dir(p)
		if parent == p {
			return dir
		}
		rest = append([]string{filepath.Base(p)}, rest...)
		p = parent
	}
}

func (cat *catalogue) loadManifest(ctx context.Context) error {
	u := cat.cfg.ManifestURL
	var data []byte
	local := !strings.Contains(u, "://")
	if local {
		var err error
		if data, err = readLocal(ctx, u); err != nil {
			return fmt.Errorf("manifest: %w", err)
		}
	} else {
		var err error
		if data, _, err = cat.buckets.readObject(ctx, u, maxManifestBytes); err != nil {
			return fmt.Errorf("manifest: %w", err)
		}
	}
	sum := sha256.Sum256(data)
	cat.digest = hex.EncodeToString(sum[:])
	m, err := manifests.Parse(data)
	if err != nil {
		return invalidError{fmt.Errorf("manifest %s: %w", storage.Redact(u), err)}
	}
	if local {
		dir, err := filepath.Abs(filepath.Dir(u))
		if err != nil {
			return err
		}
		m.ResolveFileURLs(dir)
	} else if rel := m.RelativeFileURLs(); len(rel) > 0 {
		return invalidf("manifest %s: %s: relative file URLs need a manifest in a local file", storage.Redact(u), strings.Join(rel, ", "))
	}
	// Parse compared the URLs as written; now that relative file URLs are absolute, compare
	// where the directories really are (symlinks, localhost, doubled slashes).
	if err := m.CheckOverlap(realDir); err != nil {
		return invalidError{fmt.Errorf("manifest %s: %w", storage.Redact(u), err)}
	}
	cat.m = m
	cat.presets = m.Spec.Presets
	if m.HasPresetsFrom() {
		data, _, err := cat.buckets.readObject(ctx, m.Spec.PresetsFrom, maxManifestBytes)
		if err != nil {
			return fmt.Errorf("spec.presetsFrom: %w", err)
		}
		file, err := manifests.LoadPresets(bytes.NewReader(data))
		if err != nil {
			return invalidError{fmt.Errorf("presetsFrom %s: %w", storage.Redact(m.Spec.PresetsFrom), err)}
		}
		if cat.presets, err = manifests.MergePresets(m.Spec.Presets, file); err != nil {
			return invalidError{fmt.Errorf("presetsFrom %s: %w", storage.Redact(m.Spec.PresetsFrom), err)}
		}
	}
	return nil
}
