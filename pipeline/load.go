package pipeline

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/nst-project/nst/manifests"
	"github.com/nst-project/nst/storage"
)

// maxManifestBytes bounds manifests and presets files.
const maxManifestBytes = 16 << 20

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

// readObject reads a whole object given by URL.
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
	if errors.Is(err, storage.ErrNotFound) {
		return nil, obj, invalidError{fmt.Errorf("%s: %w", storage.Redact(u), err)}
	}
	return data, obj, err
}

func (b *batch) loadManifest(ctx context.Context) error {
	u := b.cfg.ManifestURL
	var data []byte
	local := !strings.Contains(u, "://")
	if local {
		var err error
		if data, err = os.ReadFile(u); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return invalidError{fmt.Errorf("manifest: %w", err)}
			}
			return fmt.Errorf("manifest: %w", err)
		}
	} else {
		var err error
		if data, _, err = b.buckets.readObject(ctx, u, maxManifestBytes); err != nil {
			return fmt.Errorf("manifest: %w", err)
		}
	}
	sum := sha256.Sum256(data)
	b.digest = hex.EncodeToString(sum[:])
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
	b.m = m
	b.presets = m.Spec.Presets
	if m.HasPresetsFrom() {
		data, _, err := b.buckets.readObject(ctx, m.Spec.PresetsFrom, maxManifestBytes)
		if err != nil {
			return fmt.Errorf("spec.presetsFrom: %w", err)
		}
		file, err := manifests.LoadPresets(strings.NewReader(string(data)))
		if err != nil {
			return invalidError{fmt.Errorf("presetsFrom %s: %w", storage.Redact(m.Spec.PresetsFrom), err)}
		}
		if b.presets, err = manifests.MergePresets(m.Spec.Presets, file); err != nil {
			return invalidError{fmt.Errorf("presetsFrom %s: %w", storage.Redact(m.Spec.PresetsFrom), err)}
		}
	}
	return nil
}
