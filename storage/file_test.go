package storage_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nst-project/nst/storage"
)

// within runs fn and fails the test if it has not returned after d: what it guards would
// otherwise hang the test binary (a FIFO opened for reading blocks until a writer comes).
func within(t *testing.T, d time.Duration, what string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s did not return within %v (blocked on a FIFO?)", what, d)
	}
}

// mkfifo makes a FIFO at path and, at cleanup, opens it for writing without blocking so that a
// reader stuck on it (after a failed test) is released.
func mkfifo(t *testing.T, path string) {
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

func write(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func symlink(t *testing.T, target, path string) {
	t.Helper()
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
}

// hostileDir fills a bucket directory with what a careless or hostile user can put in an
// input directory, and returns the keys List must give, each with the error it must carry
// (nil: a readable object).
func hostileDir(t *testing.T, ctx context.Context, b *storage.Bucket, dir string) map[string]error {
	t.Helper()
	outside := t.TempDir()
	write(t, filepath.Join(outside, "secret.txt"), []byte("SECRET-BYTES"))
	if err := b.WriteOnce(ctx, "ok.png", []byte("written by storage"), storage.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "plain.png"), []byte("written by someone else"))
	write(t, filepath.Join(dir, "x", "y.png"), []byte("the real x/y.png"))
	write(t, filepath.Join(dir, "x__0x2f__y.png"), []byte("not x/y.png"))
	write(t, filepath.Join(dir, "ctl\x1b[31m.png"), []byte("c"))
	write(t, filepath.Join(dir, "bad\xff.png"), []byte("u"))
	write(t, filepath.Join(dir, "esc__0x41__dir", "z.png"), []byte("z"))
	write(t, filepath.Join(dir, "sub", "in.png"), []byte("in a subdirectory"))
	mkfifo(t, filepath.Join(dir, "fifo.png"))
	l, err := net.Listen("unix", filepath.Join(dir, "sock.png"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	symlink(t, filepath.Join(outside, "secret.txt"), filepath.Join(dir, "out.png"))
	symlink(t, outside, filepath.Join(dir, "outdir"))
	symlink(t, "plain.png", filepath.Join(dir, "in.png"))
	symlink(t, "sub", filepath.Join(dir, "dirlink"))
	symlink(t, "nothing.png", filepath.Join(dir, "broken.png"))
	// A sidecar that is a FIFO, one that is a symlink out, one that is garbage.
	write(t, filepath.Join(dir, "hole.png"), []byte("h"))
	mkfifo(t, filepath.Join(dir, "hole.png.attrs"))
	write(t, filepath.Join(dir, "ln.png"), []byte("l"))
	symlink(t, filepath.Join(outside, "secret.txt"), filepath.Join(dir, "ln.png.attrs"))
	write(t, filepath.Join(dir, "garbled.png"), []byte("g"))
	write(t, filepath.Join(dir, "garbled.png.attrs"), []byte("{not json"))
	// Skipped: fileblob's sidecars and temporary files, a stray sidecar, a placeholder.
	write(t, filepath.Join(dir, "plain.png.18b2c3d4e5f60718.tmp"), []byte("partial"))
	write(t, filepath.Join(dir, "stray.attrs"), []byte("{}"))
	write(t, filepath.Join(dir, "sub__0x2f__"), nil)

	want := map[string]error{
		"ok.png": nil, "plain.png": nil, "x/y.png": nil, "sub/in.png": nil, "in.png": nil,
		"x__0x2f__y.png": storage.ErrKeyName, "ctl\x1b[31m.png": storage.ErrKeyName,
		"bad\xff.png": storage.ErrKeyName, "esc__0x41__dir/z.png": storage.ErrKeyName,
		"fifo.png": storage.ErrNotRegular, "sock.png": storage.ErrNotRegular,
		"out.png": storage.ErrOutsideBucket, "outdir": storage.ErrOutsideBucket,
		"dirlink": storage.ErrNotRegular, "broken.png": storage.ErrNotRegular,
		"hole.png": storage.ErrNotRegular, "ln.png": storage.ErrNotRegular, "garbled.png": errors.New("does not decode"),
	}
	if err := syscall.Mknod(filepath.Join(dir, "dev.png"), syscall.S_IFCHR|0o644, 1<<8|3); err == nil {
		want["dev.png"] = storage.ErrNotRegular
	} else {
		t.Logf("no device node (mknod: %v)", err)
	}
	return want
}

// TestFileListHostileEntries: every entry of a directory holding FIFOs, sockets, devices,
// symlinks in and out, names with escape sequences, control characters or invalid UTF-8, and
// damaged sidecars is listed once, in byte order, without blocking; those that cannot be read
// safely carry Object.Err with the cause, and Read and Attributes refuse them before opening
// anything. Readable entries report what Attributes reports.
func TestFileListHostileEntries(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	b, err := storage.Open(ctx, "file://"+filepath.ToSlash(dir), storage.Options{PageSize: 3})
	if err != nil {
		t.Fatal(err)
	}
	// Closed after the FIFOs' cleanups have released any reader (Close waits for calls in
	// flight).
	t.Cleanup(func() { b.Close() })
	want := hostileDir(t, ctx, b, dir)

	var got []storage.Object
	within(t, 10*time.Second, "List", func() {
		err = b.List(ctx, "", func(o storage.Object) error {
			got = append(got, o)
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, o := range got {
		keys = append(keys, o.Key)
	}
	wantKeys := make([]string, 0, len(want))
	for k := range want {
		wantKeys = append(wantKeys, k)
	}
	slices.Sort(wantKeys)
	if !slices.Equal(keys, wantKeys) {
		t.Fatalf("List keys\n got %q\nwant %q", keys, wantKeys)
	}
	for _, o := range got {
		w := want[o.Key]
		switch {
		case w == nil && o.Err != nil:
			t.Errorf("%q: Err %v, want a readable object", o.Key, o.Err)
		case w == nil:
			a, err := b.Attributes(ctx, o.Key)
			if err != nil {
				t.Errorf("Attributes(%q): %v", o.Key, err)
				continue
			}
			if o.Size != a.Size || !bytes.Equal(o.MD5, a.MD5) || o.ETag != a.ETag || o.ETag == "" {
				t.Errorf("%q: listed size %d MD5 %x ETag %s; Attributes %d %x %s", o.Key, o.Size, o.MD5, o.ETag, a.Size, a.MD5, a.ETag)
			}
		case o.Err == nil:
			t.Errorf("%q: no Err, want %v", o.Key, w)
		case !errors.Is(o.Err, w) && !strings.Contains(o.Err.Error(), w.Error()):
			t.Errorf("%q: Err %v, want %v", o.Key, o.Err, w)
		case !strings.Contains(o.Err.Error(), fmt.Sprintf("%q", o.Key)):
			t.Errorf("%q: Err %q does not name the key", o.Key, o.Err)
		}
		if w == nil {
			continue
		}
		within(t, 10*time.Second, "Read of "+o.Key, func() {
			_, _, rerr := b.Read(ctx, o.Key, 0)
			_, aerr := b.Attributes(ctx, o.Key)
			for _, err := range []error{rerr, aerr} {
				if err == nil || strings.Contains(err.Error(), "SECRET") {
					t.Errorf("%q: Read/Attributes err %v, want a refusal that quotes no content", o.Key, err)
				}
			}
		})
	}
	// The real x/y.png is still itself.
	if data, _, err := b.Read(ctx, "x/y.png", 0); err != nil || string(data) != "the real x/y.png" {
		t.Errorf("Read(x/y.png) = %q, %v", data, err)
	}
	// Through a symlink inside the tree: the target's bytes.
	if data, _, err := b.Read(ctx, "in.png", 0); err != nil || string(data) != "written by someone else" {
		t.Errorf("Read(in.png) = %q, %v", data, err)
	}
}

// TestFileReadRefusesBeforeOpening: Read, Attributes and Exists on a FIFO, a symlink out of
// the bucket (directly or through a directory link) or a key the file store would escape
// return at once with the key and a sentinel cause, never the file's bytes.
func TestFileReadRefusesBeforeOpening(t *testing.T) {
	ctx := t.Context()
	dir, outside := t.TempDir(), t.TempDir()
	b, err := storage.Open(ctx, "file://"+filepath.ToSlash(dir), storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() }) // after the FIFOs' cleanups
	write(t, filepath.Join(outside, "secret.png"), []byte("SECRET-BYTES"))
	mkfifo(t, filepath.Join(dir, "fifo.png"))
	symlink(t, filepath.Join(outside, "secret.png"), filepath.Join(dir, "out.png"))
	symlink(t, outside, filepath.Join(dir, "lnk"))
	for _, c := range []struct {
		key  string
		want error
	}{
		{"fifo.png", storage.ErrNotRegular},
		{"out.png", storage.ErrOutsideBucket},
		{"lnk/secret.png", storage.ErrOutsideBucket},
		{"a\x1bb.png", storage.ErrKeyName},
		{"a/../../x.png", storage.ErrKeyName},
	} {
		within(t, 10*time.Second, "Read of "+c.key, func() {
			_, _, rerr := b.Read(ctx, c.key, 0)
			_, aerr := b.Attributes(ctx, c.key)
			for _, err := range []error{rerr, aerr} {
				if !errors.Is(err, c.want) || !strings.Contains(err.Error(), fmt.Sprintf("%q", c.key)) || strings.Contains(err.Error(), "SECRET") {
					t.Errorf("%q: err %v, want %v naming the key", c.key, err, c.want)
				}
				if storage.IsTransient(err) {
					t.Errorf("%q: %v is transient", c.key, err)
				}
			}
		})
	}
	mkfifo(t, filepath.Join(dir, "p.png.attrs"))
	write(t, filepath.Join(dir, "p.png"), []byte("p"))
	within(t, 10*time.Second, "Exists with a FIFO sidecar", func() {
		if ok, err := b.Exists(ctx, "p.png"); !errors.Is(err, storage.ErrNotRegular) {
			t.Errorf("Exists(p.png) = %v, %v; want ErrNotRegular", ok, err)
		}
	})
}

// TestFileRawBucketNotListed: a fileblob bucket handed to New is not listed (its listing
// can skip and repeat keys); storage.Open is the way.
func TestFileRawBucketNotListed(t *testing.T) {
	raw := openURL(t, "file://"+filepath.ToSlash(t.TempDir()))
	b := storage.New(raw, storage.Options{})
	defer b.Close()
	if err := b.List(t.Context(), "", func(storage.Object) error { return nil }); err == nil || !strings.Contains(err.Error(), "storage.Open") {
		t.Errorf("List of a raw fileblob bucket: %v, want a refusal naming storage.Open", err)
	}
}

// TestFileOpenRefusesPrefix: prefix= and key= would move fileblob's keys away from the paths
// the walker lists.
func TestFileOpenRefusesPrefix(t *testing.T) {
	dir := filepath.ToSlash(t.TempDir())
	for _, q := range []string{"prefix=a/", "key=x"} {
		if b, err := storage.Open(t.Context(), "file://"+dir+"?"+q, storage.Options{}); err == nil {
			b.Close()
			t.Errorf("Open with %s: no error", q)
		}
	}
}

// device returns the filesystem device of path.
func device(t *testing.T, path string) uint64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Skipf("stat %s: %v", path, err)
	}
	return uint64(st.Dev)
}

// TestFileWriteAcrossFilesystems: with the system temporary directory on another filesystem
// than the bucket (TMPDIR on tmpfs, the bucket on disk), fileblob's default rename fails with
// "invalid cross-device link"; buckets from storage.Open write their temporary files beside
// the final path and succeed, leaving none behind.
func TestFileWriteAcrossFilesystems(t *testing.T) {
	dir := t.TempDir()
	tmp, err := os.MkdirTemp("/dev/shm", "nst-tmpdir-")
	if err != nil {
		t.Skipf("no /dev/shm: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(tmp) })
	if device(t, dir) == device(t, tmp) {
		t.Skipf("%s and %s are on one filesystem; cannot test a cross-device rename here", dir, tmp)
	}
	t.Setenv("TMPDIR", tmp)
	ctx := t.Context()
	u := "file://" + filepath.ToSlash(dir)

	// The failure the option avoids, so this test proves something on this machine.
	raw := openURL(t, u)
	defer raw.Close()
	if err := raw.WriteAll(ctx, "raw.png", []byte("x"), nil); !errors.Is(err, syscall.EXDEV) {
		t.Fatalf("fileblob without no_tmp_dir: err %v, want EXDEV", err)
	}
	b, err := storage.Open(ctx, u, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.WriteOnce(ctx, "out/a.png", []byte("result"), storage.WriteOptions{}); err != nil {
		t.Fatalf("WriteOnce across filesystems: %v", err)
	}
	if err := b.Write(ctx, "out/a.json", []byte("{}"), storage.WriteOptions{}); err != nil {
		t.Fatalf("Write across filesystems: %v", err)
	}
	ents, err := os.ReadDir(filepath.Join(dir, "out"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if want := []string{"a.json", "a.json.attrs", "a.png", "a.png.attrs"}; !slices.Equal(names, want) {
		t.Errorf("out/ holds %q, want %q (no temporary files left)", names, want)
	}
	// An explicit no_tmp_dir= (off) in the URL is kept.
	b2, err := storage.Open(ctx, u+"?no_tmp_dir=", storage.Options{Retry: storage.RetryPolicy{Attempts: 1}})
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	if err := b2.Write(ctx, "c.png", []byte("x"), storage.WriteOptions{}); !errors.Is(err, syscall.EXDEV) {
		t.Errorf("no_tmp_dir= set off in the URL: err %v, want EXDEV", err)
	}
}

// liveHeap returns the bytes in use after a full collection.
func liveHeap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestListMemoryBounded: List holds one page (or, on a file bucket, one directory per level),
// not every key it has passed: from the lowest point of the listing to its end, the heap in
// use grows by at most 128 KiB over 20,000 keys on mem:// and 10,000 on file:// (a set of the
// keys seen grew by 640 KiB over the 20,000).
func TestListMemoryBounded(t *testing.T) {
	keys := func(dirs int) func(func(string) bool) {
		return func(yield func(string) bool) {
			for d := range dirs {
				for f := range 100 {
					if !yield(fmt.Sprintf("in/dir-%03d/image-%04d.png", d, f)) {
						return
					}
				}
			}
		}
	}
	for _, tc := range []struct {
		name string
		n    int
		open func(t *testing.T, keys func(func(string) bool)) *storage.Bucket
	}{
		{"mem", 20000, func(t *testing.T, keys func(func(string) bool)) *storage.Bucket {
			raw := openURL(t, "mem://")
			for k := range keys {
				if err := raw.WriteAll(t.Context(), k, []byte("x"), nil); err != nil {
					t.Fatal(err)
				}
			}
			return storage.New(raw, storage.Options{PageSize: 1000})
		}},
		{"file", 10000, func(t *testing.T, keys func(func(string) bool)) *storage.Bucket {
			dir := t.TempDir()
			for k := range keys {
				p := filepath.Join(dir, filepath.FromSlash(k))
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			b, err := storage.Open(t.Context(), "file://"+filepath.ToSlash(dir), storage.Options{})
			if err != nil {
				t.Fatal(err)
			}
			return b
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.open(t, keys(tc.n/100))
			defer b.Close()
			var n int
			var samples []uint64
			err := b.List(t.Context(), "in/", func(o storage.Object) error {
				if n++; n%1000 == 0 {
					samples = append(samples, liveHeap())
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if n != tc.n {
				t.Fatalf("listed %d keys, want %d", n, tc.n)
			}
			// From the lowest sample (the first ones still hold the writes' leftovers) to
			// the last.
			growth := int64(samples[len(samples)-1]) - int64(slices.Min(samples))
			t.Logf("live heap growth over the listing: %d bytes", growth)
			if growth > 128<<10 {
				t.Errorf("live heap grew by %d bytes while listing %d keys, want <= 128 KiB", growth, n)
			}
		})
	}
}

// BenchmarkListFile lists 10,000 files in 100 directories of a file:// bucket (pages of 1000
// on backends that page).
func BenchmarkListFile(b *testing.B) {
	dir := b.TempDir()
	for d := range 100 {
		for f := range 100 {
			p := filepath.Join(dir, fmt.Sprintf("d%03d", d), fmt.Sprintf("f%03d.png", f))
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				b.Fatal(err)
			}
			if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
				b.Fatal(err)
			}
		}
	}
	bk, err := storage.Open(b.Context(), "file://"+filepath.ToSlash(dir), storage.Options{PageSize: 1000})
	if err != nil {
		b.Fatal(err)
	}
	defer bk.Close()
	for b.Loop() {
		n := 0
		if err := bk.List(b.Context(), "", func(storage.Object) error { n++; return nil }); err != nil || n != 10000 {
			b.Fatalf("listed %d, %v", n, err)
		}
	}
}

// TestFileEscapeLikeNames: names that gocloud's unescaping would read as another key are
// flagged by its own rule (hex that parses as a 32-bit integer, sign included); near misses
// are ordinary names.
func TestFileEscapeLikeNames(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	b, err := storage.Open(ctx, "file://"+filepath.ToSlash(dir), storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	bad := []string{"a__0x41__.png", "a__0x-1__.png", "a__0X41__b__0x7F__.png"}
	ok := []string{"a__0x__.png", "a__0xzz__.png", "a__0x41_.png", "a__wave.png", "a__0x123456789__.png"}
	for _, n := range append(slices.Clone(bad), ok...) {
		write(t, filepath.Join(dir, n), []byte("x"))
	}
	err = b.List(ctx, "", func(o storage.Object) error {
		want := slices.Contains(bad, o.Key)
		if got := errors.Is(o.Err, storage.ErrKeyName); got != want {
			t.Errorf("%q: ErrKeyName %v, want %v (Err %v)", o.Key, got, want, o.Err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
