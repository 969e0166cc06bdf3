package pipeline

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"

	"github.com/nst-project/nst/storage"
)

// engineSpec makes the weights available locally, downloading them into cfg.CacheDir once per
// machine (as <sha256>.pth, verified), and returns what NewEngine needs.
func (cat *catalogue) engineSpec(ctx context.Context) (EngineSpec, error) {
	w := &cat.weights
	if w.random {
		return EngineSpec{Random: true, RandomSeed: w.seed}, nil
	}
	if err := os.MkdirAll(cat.cfg.CacheDir, 0o755); err != nil {
		return EngineSpec{}, fmt.Errorf("weights cache: %w", err)
	}
	if w.sha256 != "" {
		p := filepath.Join(cat.cfg.CacheDir, w.sha256+".pth")
		if _, err := os.Stat(p); err == nil {
			return EngineSpec{WeightsPath: p, SHA256: w.sha256}, nil // verified when it was stored
		}
	}
	cat.cfg.Logger.Info("downloading weights", "url", storage.Redact(w.url), "bytes", w.size)
	data, _, err := w.bucket.Read(ctx, w.key, 0)
	if err != nil {
		return EngineSpec{}, fmt.Errorf("spec.model.weights: %w", err)
	}
	sum := sha256.Sum256(data)
	got := hex.EncodeToString(sum[:])
	if w.sha256 != "" && got != w.sha256 {
		return EngineSpec{}, invalidf("spec.model.weights %s: sha256 is %s, the manifest says %s", storage.Redact(w.url), got, w.sha256)
	}
	p := filepath.Join(cat.cfg.CacheDir, got+".pth")
	if _, err := os.Stat(p); err == nil {
		return EngineSpec{WeightsPath: p, SHA256: got}, nil
	}
	tmp, err := os.CreateTemp(cat.cfg.CacheDir, ".weights-*")
	if err != nil {
		return EngineSpec{}, fmt.Errorf("weights cache: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return EngineSpec{}, fmt.Errorf("weights cache: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return EngineSpec{}, fmt.Errorf("weights cache: %w", err)
	}
	if err := os.Rename(tmp.Name(), p); err != nil {
		return EngineSpec{}, fmt.Errorf("weights cache: %w", err)
	}
	return EngineSpec{WeightsPath: p, SHA256: got}, nil
}
