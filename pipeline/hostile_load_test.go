package pipeline

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"gocloud.dev/blob"
	_ "gocloud.dev/blob/fileblob"
	_ "gocloud.dev/blob/memblob"

	"github.com/nst-project/nst/manifests"
	"github.com/nst-project/nst/storage"
	"github.com/nst-project/nst/transfer/fake"
)

// runWithin runs Run with the fake engine and fails the test if it has not returned after d
// (a FIFO opened for reading blocks until a writer comes).
func runWithin(t *testing.T, d time.Duration, cfg Config) (*ShardResult, error) {
	t.Helper()
	if cfg.NewEngine == nil {
		cfg.NewEngine = fakeEngine(fake.Engine{AnySize: true})
	}
	if cfg.RunID == "" {
		cfg.RunID = "hostile"
	}
	type result struct {
		rep *ShardResult
		err error
	}
	done := make(chan result, 1)
	go func() {
		rep, err := Run(t.Context(), cfg)
		done <- result{rep, err}
	}()
	select {
	case r := <-done:
		return r.rep, r.err
	case <-time.After(d):
		t.Fatalf("Run did not return within %v", d)
		return nil, nil
	}
}

// fifo makes a FIFO at path; at cleanup it opens it for writing without blocking, which
// releases a reader stuck on it after a failed test.
func fifo(t *testing.T, path string) {
	t.Helper()
	if err := syscall.Mkfifo(path, 0o644); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	t.Cleanup(func() {
		if f, err := os.OpenFile(path, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
	})
}

// fileInputs makes root/in/contents and root/in/styles with one image each.
func fileInputs(t *testing.T, root string) {
	t.Helper()
	for _, f := range []struct {
		name string
		data []byte
	}{{"in/contents/a.png", pngBytes(t, testImage(8, 8, 1))}, {"in/styles/s.png", pngBytes(t, testImage(8, 8, 2))}} {
		p := filepath.Join(root, filepath.FromSlash(f.name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, f.data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestManifestFileBounded: a manifest that is a directory, a FIFO, a device (/dev/zero) or a
// file over 16 MiB is refused as invalid (exit 2) without being read, and at once; so is a
// presetsFrom that is a FIFO, and a manifest URL naming a FIFO in a file bucket.
func TestManifestFileBounded(t *testing.T) {
	root := t.TempDir()
	fileInputs(t, root)
	big := filepath.Join(root, "big.yaml")
	if err := os.WriteFile(big, []byte("apiVersion: nst/v1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(big, manifests.MaxBytes+1); err != nil { // sparse: no disk used
		t.Fatal(err)
	}
	fifo(t, filepath.Join(root, "fifo.yaml"))
	fifo(t, filepath.Join(root, "presets.yaml"))
	withPresets := filepath.Join(root, "manifest.yaml")
	text := `apiVersion: nst/v1
kind: StyleBatch
metadata: {name: hostile}
spec:
  model: {weights: random}
  inputs: {contents: {url: "file://./in/contents/"}, styles: {url: "file://./in/styles/"}}
  presetsFrom: file://./presets.yaml
  output: {url: "file://./out/?create_dir=true"}
`
	if err := os.WriteFile(withPresets, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, manifest, want string }{
		{"directory", root, "is a directory"},
		{"FIFO", filepath.Join(root, "fifo.yaml"), "is a named pipe (FIFO)"},
		{"device", "/dev/zero", "is a device"},
		{"too large", big, "over the 16 MiB"},
		{"FIFO by URL", "file://" + filepath.ToSlash(root) + "/fifo.yaml", "not a regular file"},
		{"FIFO presetsFrom", withPresets, "spec.presetsFrom"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.manifest == "/dev/zero" {
				if _, err := os.Stat(c.manifest); err != nil {
					t.Skip(err)
				}
			}
			_, err := runWithin(t, 10*time.Second, Config{ManifestURL: c.manifest})
			t.Logf("%v", err)
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("err = %v; want ErrInvalid containing %q", err, c.want)
			}
		})
	}
}

// TestManifestReadHonoursCancel: a cancelled context stops the manifest read.
func TestManifestReadHonoursCancel(t *testing.T) {
	man := writeManifest(t, manifestText("mem://in/c/", "mem://in/s/", "mem://out/", ""))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := readLocal(ctx, man); !errors.Is(err, context.Canceled) {
		t.Errorf("readLocal with a cancelled context: %v", err)
	}
}

// TestOverlapCanonical: an output that is an input directory under another spelling (a
// symlink to it, a relative file URL resolved to it, localhost, a doubled slash) is refused
// as invalid before any work.
func TestOverlapCanonical(t *testing.T) {
	root := t.TempDir()
	fileInputs(t, root)
	if err := os.Symlink(filepath.Join(root, "in"), filepath.Join(root, "link")); err != nil {
		t.Fatal(err)
	}
	abs := "file://" + filepath.ToSlash(root)
	for _, c := range []struct{ name, contents, out string }{
		{"symlink", abs + "/in/contents/", abs + "/link/contents/out/"},
		{"symlink to the directory", abs + "/in/contents/", abs + "/link/contents/"},
		{"relative vs absolute", "file://./in/contents/", abs + "/in/contents/"},
		{"localhost", "file://localhost" + filepath.ToSlash(root) + "/in/contents/", abs + "/in/contents/x/"},
		{"double slash", abs + "/in/contents/", abs + "//in//contents/"},
	} {
		t.Run(c.name, func(t *testing.T) {
			man := filepath.Join(root, "m.yaml")
			if err := os.WriteFile(man, []byte(manifestText(c.contents, abs+"/in/styles/", c.out, "")), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := runWithin(t, 30*time.Second, Config{ManifestURL: man})
			t.Logf("%v", err)
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "spec.output.url") {
				t.Errorf("err = %v; want ErrInvalid about spec.output.url", err)
			}
			if _, serr := os.Stat(filepath.Join(root, "in", "contents", "test")); serr == nil {
				t.Error("outputs were written into the input directory")
			}
		})
	}
}

// TestURLOptionsInvalid: an unknown query option, or one that moves where objects land
// (prefix=), is a manifest error (exit 2) before any bucket is opened.
func TestURLOptionsInvalid(t *testing.T) {
	m := &memBuckets{}
	for _, out := range []string{"mem://out/?regoin=x", "mem://out/zz/?prefix=in/"} {
		man := writeManifest(t, manifestText("mem://in/c/", "mem://in/s/", out, ""))
		_, err := runWithin(t, 30*time.Second, Config{ManifestURL: man, OpenBucket: m.open})
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "spec.output.url") {
			t.Errorf("%s: err = %v; want ErrInvalid about spec.output.url", out, err)
		}
	}
}

// TestQueryOptionsKnownToGocloud holds manifests' list of query options against gocloud's
// openers: each listed option is accepted (the error, if any, is not about the parameter),
// and an option not on the list is refused by gocloud too, so the manifest's early refusal
// changes no outcome, only when it comes.
func TestQueryOptionsKnownToGocloud(t *testing.T) {
	dir := filepath.ToSlash(t.TempDir())
	values := map[string]string{
		"role": "arn:aws:iam::1:role/x", "role_duration": "1h", "rate_limiter_capacity": "10",
		"request_checksum_calculation": "when_required", "response_checksum_validation": "when_required",
		"ssetype": "AES256", "dir_file_mode": "0755", "metadata": "skip",
	}
	bases := map[string]string{"file": "file://" + dir, "mem": "mem://"}
	for scheme, base := range bases {
		for _, opt := range manifests.QueryOptions(scheme) {
			v, ok := values[opt]
			if !ok {
				v = "true"
			}
			if opt == "base_url" || opt == "secret_key_path" {
				continue // they come in a pair and read a key file
			}
			b, err := blob.OpenBucket(t.Context(), base+"?"+opt+"="+v)
			if err != nil && strings.Contains(err.Error(), "query parameter") {
				t.Errorf("%s: gocloud refuses %s=%s: %v", scheme, opt, v, err)
			}
			if err == nil {
				b.Close()
			}
		}
		if _, err := blob.OpenBucket(t.Context(), base+"?not_an_option=1"); err == nil || !strings.Contains(err.Error(), "query parameter") {
			t.Errorf("%s: gocloud accepted an unknown option (%v); the list would be stricter than gocloud", scheme, err)
		}
	}
}

// TestRunIDChecked: a run ID that is not like metadata.name is refused before the manifest
// is read.
func TestRunIDChecked(t *testing.T) {
	for _, id := range []string{"../x", "Run", "a b", "x\x1b[31m", "-a", strings.Repeat("a", 82)} {
		_, err := Run(t.Context(), Config{ManifestURL: "/nonexistent/manifest.yaml", RunID: id, NewEngine: fakeEngine(fake.Engine{AnySize: true})})
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "run ID") || strings.Contains(err.Error(), "nonexistent") {
			t.Errorf("RunID %q: %v; want ErrInvalid about the run ID only", id, err)
		}
	}
	if _, err := Config.withDefaults(Config{ManifestURL: "m", RunID: strings.Repeat("a", 63) + "-1a2b3c4d-20260101"}, false); err != nil {
		t.Errorf("the longest default run ID is refused: %v", err)
	}
}

// TestFIFOContentDoesNotHang: a FIFO among the contents of a file:// input neither hangs the
// run nor is opened; the run ends and names the key and the cause.
func TestFIFOContentDoesNotHang(t *testing.T) {
	root := t.TempDir()
	fileInputs(t, root)
	fifo(t, filepath.Join(root, "in", "contents", "b.png"))
	abs := "file://" + filepath.ToSlash(root)
	man := writeManifest(t, manifestText(abs+"/in/contents/", abs+"/in/styles/", abs+"/out/?create_dir=true", ""))
	rep, err := runWithin(t, 60*time.Second, Config{ManifestURL: man})
	var msgs []string
	if err != nil {
		msgs = append(msgs, err.Error())
	}
	found := errors.Is(err, storage.ErrNotRegular)
	if rep != nil {
		for _, r := range rep.Failures {
			msgs = append(msgs, r.Err.Error())
			found = found || errors.Is(r.Err, storage.ErrNotRegular)
		}
	}
	t.Logf("errors: %q", msgs)
	if !found || !strings.Contains(strings.Join(msgs, "\n"), `"b.png"`) {
		t.Errorf("errors %q; want ErrNotRegular naming \"b.png\"", msgs)
	}
}

// TestOutputOnAnotherFilesystem: a file:// output on another filesystem than TMPDIR (here the
// output on disk, TMPDIR on tmpfs) is written: temporary files go beside the outputs.
func TestOutputOnAnotherFilesystem(t *testing.T) {
	root := t.TempDir()
	fileInputs(t, root)
	tmp, err := os.MkdirTemp("/dev/shm", "nst-tmpdir-")
	if err != nil {
		t.Skipf("no /dev/shm: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(tmp) })
	var a, b syscall.Stat_t
	if syscall.Stat(root, &a) != nil || syscall.Stat(tmp, &b) != nil || a.Dev == b.Dev {
		t.Skipf("%s and %s are on one filesystem", root, tmp)
	}
	t.Setenv("TMPDIR", tmp)
	abs := "file://" + filepath.ToSlash(root)
	man := writeManifest(t, manifestText(abs+"/in/contents/", abs+"/in/styles/", abs+"/out/?create_dir=true", ""))
	rep, err := runWithin(t, 60*time.Second, Config{ManifestURL: man})
	if err != nil || !rep.OK() || rep.Done != 2 {
		t.Fatalf("run: %v (result %+v)", err, rep)
	}
	if _, err := os.Stat(filepath.Join(root, "out", filepath.FromSlash(rep.SummaryKey))); err != nil {
		t.Errorf("summary %s not written: %v", rep.SummaryKey, err)
	}
}
