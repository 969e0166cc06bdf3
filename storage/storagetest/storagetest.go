// Package storagetest holds the contract every backend of package storage
// must meet, as one test suite: storage_test.go runs it on mem://, file://,
// two S3 servers (gofakes3 in-process, and moto's standalone server, which
// StartMoto runs from the virtualenv `make setup` installs) and
// fake-gcs-server (GCS).
package storagetest

import (
	"bytes"
	"context"
	"crypto/md5"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"

	"gocloud.dev/blob"
	"gocloud.dev/gcerrors"

	"github.com/nst-project/nst/storage"
)

// pageSize is small so that listing a few dozen keys spans several pages.
const pageSize = 4

// Caveats are a backend's known, documented departures from the ideal
// contract (what AWS S3 and GCS do). The zero value claims none. Each one
// relaxes exactly the assertion it names, and the relaxed case is logged.
//
// gofakes3 and moto (the two S3 servers the suite runs on) also differ where
// the contract allows either answer, so no caveat is needed: an object
// written by multipart upload (s3blob: 16 MiB and up) has an ETag that is the
// MD5 of the whole object on gofakes3, so it reports an MD5, while moto (like
// S3) returns "<hash>-<parts>" and gocloud reports no MD5 (nil MD5 is
// allowed); and moto enforces S3's bucket naming rules, gofakes3 does not
// (buckets are created by the test harness, not by package storage).
type Caveats struct {
	// ListHasNoETag: the backend's listing carries no ETag (memblob), so List
	// leaves Object.ETag empty; MD5 must still match Attributes.
	ListHasNoETag bool
	// CancelledWriteMayLand: a write whose context was cancelled before
	// Close may still commit, complete (GCS). It must never leave a partial
	// object.
	CancelledWriteMayLand bool
	// OverwriteKeepsMetadata: replacing an object keeps the metadata keys of
	// the replaced one that the new write does not set (gofakes3 merges them;
	// S3, moto, GCS and the blob drivers replace the whole set).
	OverwriteKeepsMetadata bool
	// LargeIfNotExistIgnored: an IfNotExist write large enough to go as a
	// multipart upload (s3blob: 16 MiB and up) replaces an existing object
	// (gofakes3 checks If-None-Match on PutObject only; S3 and moto check it
	// on CompleteMultipartUpload too). package storage's Exists pre-check
	// still refuses such a write when no other writer races it.
	LargeIfNotExistIgnored bool
	// LongKeysAccepted: keys longer than 1024 bytes (the limit of S3 and of
	// GCS) are stored (moto, memblob, fileblob, fake-gcs-server); S3 and
	// gofakes3 refuse them. Keys nst writes must stay within 1024 bytes.
	LongKeysAccepted bool
	// EscapedMetadataKeysDropped: metadata keys with characters that gocloud
	// percent-escapes into the header name (space, '/', '%', non-ASCII) are
	// silently dropped: moto keeps only x-amz-meta- names matching
	// [A-Za-z0-9._-] (moto/s3/utils.py, metadata_from_headers). The write
	// still succeeds and the other keys are kept.
	EscapedMetadataKeysDropped bool
}

// Run runs the contract on buckets from open, wrapped with storage.New. open
// must return a new, empty bucket each call (subtests share nothing) and
// arrange its own cleanup with t.Cleanup; the suite closes the *blob.Bucket
// itself. Subtests run sequentially. Use RunOpen for file:// buckets, which
// storage lists only when it opened them itself.
func Run(t *testing.T, open func(t *testing.T) *blob.Bucket, caveats Caveats) {
	t.Helper()
	RunOpen(t, func(t *testing.T, opts storage.Options) (*storage.Bucket, *blob.Bucket) {
		raw := open(t)
		return storage.New(raw, opts), raw
	}, caveats)
}

// RunOpen runs the contract on buckets from open, which returns a new, empty
// bucket each call as a *storage.Bucket made with opts (by storage.Open or
// storage.New) and a *blob.Bucket on the same objects, for the cases that
// look below package storage. The suite closes the *storage.Bucket; open
// arranges the rest of its cleanup with t.Cleanup.
func RunOpen(t *testing.T, open func(t *testing.T, opts storage.Options) (*storage.Bucket, *blob.Bucket), caveats Caveats) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, ctx context.Context, b *storage.Bucket, raw *blob.Bucket, c Caveats)
	}{
		{"ListPagesAndPrefixes", testList},
		{"ListStopsOnCallbackError", testListCallbackError},
		{"ReadRoundTrip", testReadRoundTrip},
		{"ReadEmpty", testReadEmpty},
		{"ReadTooLarge", testReadTooLarge},
		{"NotFound", testNotFound},
		{"WriteOnceKeepsFirst", testWriteOnce},
		{"BackendEnforcesIfNotExist", testBackendIfNotExist},
		{"LargeObject", testLarge},
		{"KeyLengthLimit", testKeyLength},
		{"WriteOverwrites", testWriteOverwrites},
		{"ContentTypeAndMetadata", testAttributes},
		{"Delete", testDelete},
		{"CancelledWriteLeavesNothing", testCancelledWrite},
		{"WriteWithCancelledContext", testWriteCancelledContext},
		{"AwkwardKeys", testAwkwardKeys},
		{"ConcurrentUse", testConcurrent},
		{"ListLexicalOnce", testListLexical},
		{"ListVersionsMatchAttributes", testListVersions},
		{"ListSkipsDirectoryPlaceholders", testListPlaceholders},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, raw := open(t, storage.Options{PageSize: pageSize})
			t.Cleanup(func() {
				if err := b.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tt.fn(t, t.Context(), b, raw, caveats)
		})
	}
}

// randomBytes returns n bytes that are not valid text, so no layer can
// "helpfully" transcode them.
func randomBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(r.Uint32())
	}
	return p
}

func mustWrite(t *testing.T, ctx context.Context, b *storage.Bucket, key string, data []byte) {
	t.Helper()
	if err := b.WriteOnce(ctx, key, data, storage.WriteOptions{ContentType: "application/octet-stream"}); err != nil {
		t.Fatalf("WriteOnce(%q): %v", key, err)
	}
}

func mustRead(t *testing.T, ctx context.Context, b *storage.Bucket, key string, want []byte) storage.Object {
	t.Helper()
	got, obj, err := b.Read(ctx, key, 0)
	if err != nil {
		t.Fatalf("Read(%q): %v", key, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("Read(%q): got %d bytes (md5 %x), want %d bytes (md5 %x)", key, len(got), md5.Sum(got), len(want), md5.Sum(want))
	}
	return obj
}

// listKeys lists prefix and returns the keys in the order List gave them.
func listKeys(t *testing.T, ctx context.Context, b *storage.Bucket, prefix string) []string {
	t.Helper()
	var keys []string
	if err := b.List(ctx, prefix, func(o storage.Object) error {
		keys = append(keys, o.Key)
		return nil
	}); err != nil {
		t.Fatalf("List(%q): %v", prefix, err)
	}
	return keys
}

// checkListed compares listed keys with want (sorted): the same keys, each
// once, in lexical order.
func checkListed(t *testing.T, _ Caveats, prefix string, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("List(%q) = %q\nwant (each once, lexical) %q", prefix, got, want)
	}
}

func testList(t *testing.T, ctx context.Context, b *storage.Bucket, _ *blob.Bucket, c Caveats) {
	var want []string
	for i := range 13 {
		want = append(want, fmt.Sprintf("in/%03d.png", i))
	}
	// "in/a-b" sorts before "in/a/..." ('-' < '/') although a directory
	// walk visits a/ first.
	want = append(want, "in/a-b", "in/a/x", "in/a/y/z", "in/a0")
	slices.Sort(want)
	sizes := map[string]int{}
	for i, k := range want {
		sizes[k] = i
		mustWrite(t, ctx, b, k, randomBytes(uint64(i), i))
	}
	mustWrite(t, ctx, b, "out/000.png", []byte("x"))
	mustWrite(t, ctx, b, "im", []byte("x")) // shares a prefix with "in" but not "in/"

	var got []string
	err := b.List(ctx, "in/", func(o storage.Object) error {
		got = append(got, o.Key)
		if o.Size != int64(sizes[o.Key]) {
			t.Errorf("List: %q has Size %d, want %d", o.Key, o.Size, sizes[o.Key])
		}
		if o.ModTime.IsZero() {
			t.Errorf("List: %q has no ModTime", o.Key)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	checkListed(t, c, "in/", got, want)
	checkListed(t, c, "in/a/", listKeys(t, ctx, b, "in/a/"), []string{"in/a/x", "in/a/y/z"})
	checkListed(t, c, "nothing/", listKeys(t, ctx, b, "nothing/"), nil)
	all := slices.Sorted(slices.Values(append([]string{"im", "out/000.png"}, want...)))
	checkListed(t, c, "", listKeys(t, ctx, b, ""), all)
}

func testListCallbackError(t *testing.T, ctx context.Context, b *storage.Bucket, _ *blob.Bucket, _ Caveats) {
	for i := range 2*pageSize + 1 {
		mustWrite(t, ctx, b, fmt.Sprintf("k%02d", i), []byte("x"))
	}
	stop := errors.New("stop")
	calls := 0
	err := b.List(ctx, "", func(storage.Object) error {
		calls++
		if calls == pageSize+1 {
			return stop
		}
		return nil
	})
	if err != stop {
		t.Errorf("List returned %v, want the callback's error unchanged", err)
	}
	if calls != pageSize+1 {
		t.Errorf("callback ran %d times after returning an error at call %d", calls, pageSize+1)
	}
}

func testReadRoundTrip(t *testing.T, ctx context.Context, b *storage.Bucket, _ *blob.Bucket, _ Caveats) {
	data := randomBytes(1, 300<<10+7) // several SDK chunks, odd length
	if err := b.WriteOnce(ctx, "img/big.bin", data, storage.WriteOptions{ContentType: "application/octet-stream"}); err != nil {
		t.Fatal(err)
	}
	obj := mustRead(t, ctx, b, "img/big.bin", data)
	if obj.Key != "img/big.bin" || obj.Size != int64(len(data)) {
		t.Errorf("Read: Object{Key: %q, Size: %d}, want {%q, %d}", obj.Key, obj.Size, "img/big.bin", len(data))
	}
	if sum := md5.Sum(data); obj.MD5 != nil && !bytes.Equal(obj.MD5, sum[:]) {
		t.Errorf("Read: MD5 %x, want %x", obj.MD5, sum)
	}
	if obj.ModTime.IsZero() {
		t.Error("Read: zero ModTime")
	}
	t.Logf("backend reports MD5: %v, ETag %q", obj.MD5 != nil, obj.ETag)
}

func testReadEmpty(t *testing.T, ctx context.Context, b *storage.Bucket, _ *blob.Bucket, _ Caveats) {
	mustWrite(t, ctx, b, "empty", nil)
	if obj := mustRead(t, ctx, b, "empty", nil); obj.Size != 0 {
		t.Errorf("Size = %d, want 0", obj.Size)
	}
}

func testReadTooLarge(t *testing.T, ctx context.Context, b *storage.Bucket, _ *blob.Bucket, _ Caveats) {
	data := randomBytes(2, 1000)
	mustWrite(t, ctx, b, "k", data)
	if _, _, err := b.Read(ctx, "k", 999); !errors.Is(err, storage.ErrTooLarge) {
		t.Errorf("Read(max 999) of 1000 bytes: err = %v, want ErrTooLarge", err)
	}
	got, _, err := b.Read(ctx, "k", 1000)
	if err != nil || !bytes.Equal(got, data) {
		t.Errorf("Read(max 1000) of 1000 bytes: %d bytes, err %v", len(got), err)
	}
}

func testNotFound(t *testing.T, ctx context.Context, b *storage.Bucket, _ *blob.Bucket, _ Caveats) {
	mustWrite(t, ctx, b, "dir/there", []byte("x"))
	checks := []struct {
		name string
		call func() error
	}{
		{"Attributes", func() error { _, err := b.Attributes(ctx, "dir/missing"); return err }},
		{"Read", func() error { _, _, err := b.Read(ctx, "dir/missing", 10); return err }},
		{"Delete", func() error { return b.Delete(ctx, "dir/missing") }},
		{"AttributesOfDirectory", func() error { _, err := b.Attributes(ctx, "dir"); return err }},
	}
	for _, c := range checks {
		err := c.call()
		if !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("%s: err = %v, want ErrNotFound", c.name, err)
		}
		if code := gcerrors.Code(err); code != gcerrors.NotFound {
			t.Errorf("%s: gcerrors.Code = %v, want NotFound (backend error still wrapped)", c.name, code)
		}
	}
	if ok, err := b.Exists(ctx, "dir/missing"); ok || err != nil {
		t.Errorf("Exists(missing) = %v, %v; want false, nil", ok, err)
	}
	if ok, err := b.Exists(ctx, "dir/there"); !ok || err != nil {
		t.Errorf("Exists(there) = %v, %v; want true, nil", ok, err)
	}
}

func testWriteOnce(t *testing.T, ctx context.Context, b *storage.Bucket, _ *blob.Bucket, _ Caveats) {
	first, second := []byte("first version"), []byte("second, longer version")
	if err := b.WriteOnce(ctx, "out/x.png", first, storage.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	err := b.WriteOnce(ctx, "out/x.png", second, storage.WriteOptions{})
	if !errors.Is(err, storage.ErrExists) {
		t.Errorf("second WriteOnce: err = %v, want ErrExists", err)
	}
	mustRead(t, ctx, b, "out/x.png", first)
	// Even identical content is refused: the key is taken.
	if err := b.WriteOnce(ctx, "out/x.png", first, storage.WriteOptions{}); !errors.Is(err, storage.ErrExists) {
		t.Errorf("WriteOnce with identical content: err = %v, want ErrExists", err)
	}
}

// testBackendIfNotExist checks, below package storage's existence pre-check,
// that the backend itself refuses an IfNotExist write over an existing key
// with FailedPrecondition (the code gocloud's drivertest pins).
func testBackendIfNotExist(t *testing.T, ctx context.Context, _ *storage.Bucket, raw *blob.Bucket, _ Caveats) {
	opts := &blob.WriterOptions{IfNotExist: true}
	if err := raw.WriteAll(ctx, "k", []byte("one"), opts); err != nil {
		t.Fatal(err)
	}
	err := raw.WriteAll(ctx, "k", []byte("two"), opts)
	if code := gcerrors.Code(err); code != gcerrors.FailedPrecondition {
		t.Errorf("second IfNotExist write: code %v (err %v), want FailedPrecondition", code, err)
	}
	if got, err := raw.ReadAll(ctx, "k"); err != nil || string(got) != "one" {
		t.Errorf("after refused write: %q, %v; want %q", got, err, "one")
	}
}

func testWriteOverwrites(t *testing.T, ctx context.Context, b *storage.Bucket, _ *blob.Bucket, c Caveats) {
	key := "ckpt/run.json"
	for i, v := range []string{`{"step":1}`, `{"step":2,"longer":true}`, `{}`} {
		if err := b.Write(ctx, key, []byte(v), storage.WriteOptions{ContentType: "application/json"}); err != nil {
			t.Fatalf("Write #%d: %v", i, err)
		}
		mustRead(t, ctx, b, key, []byte(v))
	}
	// Metadata of the replaced object goes with it (S3, GCS).
	if err := b.Write(ctx, key, []byte("m"), storage.WriteOptions{Metadata: map[string]string{"old": "1"}}); err != nil {
		t.Fatal(err)
	}
	if err := b.Write(ctx, key, []byte("n"), storage.WriteOptions{Metadata: map[string]string{"new": "2"}}); err != nil {
		t.Fatal(err)
	}
	if obj, err := b.Attributes(ctx, key); err != nil || obj.Metadata["new"] != "2" {
		t.Errorf("after overwrite: Metadata %v, err %v; want new=2", obj.Metadata, err)
	} else if _, kept := obj.Metadata["old"]; kept {
		if c.OverwriteKeepsMetadata {
			t.Logf("overwrite kept the replaced object's metadata (known caveat of this backend): %v", obj.Metadata)
		} else {
			t.Errorf("overwrite kept the replaced object's metadata: %v, want only new=2", obj.Metadata)
		}
	}
	mustWrite(t, ctx, b, "once", []byte("a"))
	if err := b.Write(ctx, "once", []byte("b"), storage.WriteOptions{}); err != nil {
		t.Fatalf("Write over a WriteOnce object: %v", err)
	}
	mustRead(t, ctx, b, "once", []byte("b"))
}

// escapedMetadata are metadata keys that gocloud's s3blob percent-escapes
// into the header name; values are escaped too, and come back whole.
var escapedMetadata = map[string]string{"sp ace": "1", "a/b": "2", "ünï": "3"}

func testAttributes(t *testing.T, ctx context.Context, b *storage.Bucket, _ *blob.Bucket, c Caveats) {
	md := map[string]string{"pair": "content-7/style-3", "params-digest": "9f86d081", "run_id": "Ünïcødé 東京 a\nb"}
	for k, v := range escapedMetadata {
		md[k] = v
	}
	data := []byte("\x89PNG\r\n\x1a\n not really")
	if err := b.WriteOnce(ctx, "out/a.png", data, storage.WriteOptions{ContentType: "image/png", Metadata: md}); err != nil {
		t.Fatal(err)
	}
	for _, get := range []struct {
		name string
		fn   func() (storage.Object, error)
	}{
		{"Attributes", func() (storage.Object, error) { return b.Attributes(ctx, "out/a.png") }},
		{"Read", func() (storage.Object, error) { _, o, err := b.Read(ctx, "out/a.png", 0); return o, err }},
	} {
		obj, err := get.fn()
		if err != nil {
			t.Fatalf("%s: %v", get.name, err)
		}
		if obj.ContentType != "image/png" {
			t.Errorf("%s: ContentType %q, want image/png", get.name, obj.ContentType)
		}
		for k, v := range md {
			got, ok := obj.Metadata[k]
			if _, escaped := escapedMetadata[k]; escaped && !ok && c.EscapedMetadataKeysDropped {
				t.Logf("%s: metadata key %q dropped (known caveat of this backend)", get.name, k)
				continue
			}
			if got != v {
				t.Errorf("%s: Metadata[%q] = %q, want %q (all: %v)", get.name, k, got, v, obj.Metadata)
			}
		}
		if obj.Size != int64(len(data)) || obj.ModTime.IsZero() {
			t.Errorf("%s: Size %d ModTime %v", get.name, obj.Size, obj.ModTime)
		}
	}
	// Without a content type one is sniffed, never left empty.
	mustWrite(t, ctx, b, "sniffed", nil)
	if err := b.Write(ctx, "sniffed.txt", []byte("plain text"), storage.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if obj, err := b.Attributes(ctx, "sniffed.txt"); err != nil || obj.ContentType == "" {
		t.Errorf("sniffed ContentType %q, err %v", obj.ContentType, err)
	}
}

// largeSize is above s3blob's multipart threshold (16 MiB in the AWS SDK's
// transfer manager), so S3 backends take the multipart path.
const largeSize = 16<<20 + 7

// testLarge writes an object that S3 backends upload in parts: it must read
// back whole, its MD5 (if any) must be its content's, and an IfNotExist
// write over it must be refused by the backend itself, as with small objects.
func testLarge(t *testing.T, ctx context.Context, _ *storage.Bucket, raw *blob.Bucket, c Caveats) {
	data := randomBytes(4, largeSize)
	opts := &blob.WriterOptions{IfNotExist: true, ContentType: "application/octet-stream"}
	if err := raw.WriteAll(ctx, "big", data, opts); err != nil {
		t.Fatal(err)
	}
	check := func(when string) {
		t.Helper()
		got, err := raw.ReadAll(ctx, "big")
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%s: read %d bytes (err %v), want the %d written", when, len(got), err, len(data))
		}
	}
	check("after write")
	a, err := raw.Attributes(ctx, "big")
	if err != nil {
		t.Fatal(err)
	}
	if sum := md5.Sum(data); a.MD5 != nil && !bytes.Equal(a.MD5, sum[:]) {
		t.Errorf("MD5 %x, want %x or none", a.MD5, sum)
	}
	t.Logf("large object: ETag %s, MD5 reported: %v", a.ETag, a.MD5 != nil)

	other := randomBytes(5, largeSize)
	err = raw.WriteAll(ctx, "big", other, opts)
	switch code := gcerrors.Code(err); {
	case code == gcerrors.FailedPrecondition:
		check("after a refused IfNotExist write")
	case err == nil && c.LargeIfNotExistIgnored:
		t.Logf("large IfNotExist write replaced the object (known caveat of this backend)")
	default:
		t.Errorf("second large IfNotExist write: code %v (err %v), want FailedPrecondition", code, err)
	}
}

// testKeyLength: a 1024-byte key (the longest S3 and GCS allow) works; a
// longer one is refused and leaves nothing, unless LongKeysAccepted.
func testKeyLength(t *testing.T, ctx context.Context, b *storage.Bucket, _ *blob.Bucket, c Caveats) {
	// Directory-like segments of 100 bytes keep fileblob within file name limits.
	key := func(n int) string {
		var sb strings.Builder
		for sb.Len() < n {
			seg := min(100, n-sb.Len())
			if sb.Len()+seg < n {
				sb.WriteString(strings.Repeat("k", seg-1) + "/")
			} else {
				sb.WriteString(strings.Repeat("k", seg))
			}
		}
		return sb.String()
	}
	longest := key(1024)
	mustWrite(t, ctx, b, longest, []byte("1024"))
	mustRead(t, ctx, b, longest, []byte("1024"))

	tooLong := key(1025)
	err := b.WriteOnce(ctx, tooLong, []byte("1025"), storage.WriteOptions{})
	ok, xerr := b.Exists(ctx, tooLong)
	switch {
	case err != nil && !ok:
		t.Logf("1025-byte key refused: %v", err)
	case err == nil && ok && c.LongKeysAccepted:
		t.Logf("1025-byte key stored (known caveat of this backend)")
	default:
		t.Errorf("1025-byte key: write err %v, exists %v (%v); want the write refused and nothing stored", err, ok, xerr)
	}
}

func testDelete(t *testing.T, ctx context.Context, b *storage.Bucket, _ *blob.Bucket, _ Caveats) {
	mustWrite(t, ctx, b, "d/k", []byte("x"))
	if err := b.Delete(ctx, "d/k"); err != nil {
		t.Fatal(err)
	}
	if ok, err := b.Exists(ctx, "d/k"); ok || err != nil {
		t.Errorf("Exists after Delete = %v, %v", ok, err)
	}
	if err := b.Delete(ctx, "d/k"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("second Delete: %v, want ErrNotFound", err)
	}
	// The key is free again.
	mustWrite(t, ctx, b, "d/k", []byte("y"))
}

// testCancelledWrite checks what put relies on: cancelling a writer's
// context before Close aborts the write, leaving neither a partial object
// nor a change to an existing one. With CancelledWriteMayLand the complete
// new content is accepted too, never anything partial.
func testCancelledWrite(t *testing.T, ctx context.Context, b *storage.Bucket, raw *blob.Bucket, c Caveats) {
	for _, tc := range []struct {
		name string
		prev []byte
	}{
		{"new", nil},
		{"existing", []byte("previous content")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := "cancel/" + tc.name
			if tc.prev != nil {
				mustWrite(t, ctx, b, key, tc.prev)
			}
			data := randomBytes(3, 64<<10)
			wctx, cancel := context.WithCancel(ctx)
			w, err := raw.NewWriter(wctx, key, nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.Write(data); err != nil {
				t.Fatal(err)
			}
			cancel()
			if err := w.Close(); err == nil && !c.CancelledWriteMayLand {
				t.Error("Close after cancel returned nil")
			} else if err == nil {
				// GCS: the upload can finish before the cancellation is seen; then it
				// landed complete, which the read below checks.
				t.Logf("Close after cancel returned nil (known caveat of this backend)")
			}
			got, _, err := b.Read(ctx, key, 0)
			switch {
			case err == nil && bytes.Equal(got, tc.prev) && tc.prev != nil:
				// Untouched.
			case errors.Is(err, storage.ErrNotFound) && tc.prev == nil:
				// Nothing landed.
			case err == nil && bytes.Equal(got, data) && c.CancelledWriteMayLand:
				t.Logf("cancelled write landed complete (known caveat of this backend)")
			default:
				t.Errorf("after cancelled write: %d bytes, err %v; want the previous state (%d bytes)", len(got), err, len(tc.prev))
			}
		})
	}
}

func testWriteCancelledContext(t *testing.T, ctx context.Context, b *storage.Bucket, _ *blob.Bucket, _ Caveats) {
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	for _, write := range []struct {
		name string
		fn   func(context.Context, string, []byte, storage.WriteOptions) error
	}{{"Write", b.Write}, {"WriteOnce", b.WriteOnce}} {
		err := write.fn(cctx, "c/"+write.name, []byte("data"), storage.WriteOptions{})
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s with cancelled ctx: %v, want context.Canceled", write.name, err)
		}
		if ok, err := b.Exists(ctx, "c/"+write.name); ok || err != nil {
			t.Errorf("%s: Exists after cancelled write = %v, %v", write.name, ok, err)
		}
	}
}

func testAwkwardKeys(t *testing.T, ctx context.Context, b *storage.Bucket, _ *blob.Bucket, c Caveats) {
	keys := []string{
		"styles/Starry Night (1889).jpg",
		"contents/ünïcødé/東京 タワー.png",
		"deep/a/b/c/d/e/f/g.png",
		"odd/plus+sign&amp=eq;semi,comma.png",
		"odd/100% done#hash?q.png",
		"odd/émoji 🎨.webp",
	}
	for i, k := range keys {
		mustWrite(t, ctx, b, k, randomBytes(uint64(10+i), 100+i))
	}
	checkListed(t, c, "", listKeys(t, ctx, b, ""), slices.Sorted(slices.Values(keys)))
	for i, k := range keys {
		mustRead(t, ctx, b, k, randomBytes(uint64(10+i), 100+i))
		if err := b.Delete(ctx, k); err != nil {
			t.Errorf("Delete(%q): %v", k, err)
		}
	}
	if got := listKeys(t, ctx, b, ""); len(got) != 0 {
		t.Errorf("after deleting all: %q", got)
	}
}

// testConcurrent shares one Bucket between goroutines (run with -race).
func testConcurrent(t *testing.T, ctx context.Context, b *storage.Bucket, _ *blob.Bucket, _ Caveats) {
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			key := fmt.Sprintf("conc/%d", i)
			data := randomBytes(uint64(100+i), 2000+i)
			if err := b.WriteOnce(ctx, key, data, storage.WriteOptions{}); err != nil {
				t.Errorf("WriteOnce(%q): %v", key, err)
				return
			}
			got, _, err := b.Read(ctx, key, 0)
			if err != nil || !bytes.Equal(got, data) {
				t.Errorf("Read(%q): %d bytes, %v", key, len(got), err)
			}
		})
	}
	wg.Wait()
	if got := listKeys(t, ctx, b, "conc/"); len(got) != 8 || !slices.IsSorted(got) {
		t.Errorf("List(conc/) = %q, want 8 keys", got)
	}
}

// testListLexical: keys that a directory walk visits out of byte order ("a-b", "a.b" and
// "a+" sort before "a/...", "a0" after), across pages of pageSize, come once each in byte
// order, from the root and from prefixes that end inside a name and at a "/".
func testListLexical(t *testing.T, ctx context.Context, b *storage.Bucket, _ *blob.Bucket, c Caveats) {
	// No key is also a "directory" of others: a file store cannot hold both.
	keys := slices.Sorted(slices.Values([]string{
		"a+", "a-b", "a.b", "a/x", "a/y/z", "a/y-1", "a/y0", "a0", "a_",
		"b/a-b", "b/a/1", "b/a/2", "b/a/3", "b/a/4", "b/a/5", "b/a0", "c",
	}))
	for i, k := range keys {
		mustWrite(t, ctx, b, k, randomBytes(uint64(i), 3))
	}
	checkListed(t, c, "", listKeys(t, ctx, b, ""), keys)
	for _, p := range []string{"a", "a/", "a/y", "b/a", "b/a/", "z"} {
		var want []string
		for _, k := range keys {
			if strings.HasPrefix(k, p) {
				want = append(want, k)
			}
		}
		checkListed(t, c, p, listKeys(t, ctx, b, p), want)
	}
}

// testListVersions: what List reports of an object (size, MD5, ETag) is what Attributes
// reports, so a version taken from a listing (MD5, else ETag) identifies the same content
// as one taken from Attributes and needs no request per object.
func testListVersions(t *testing.T, ctx context.Context, b *storage.Bucket, _ *blob.Bucket, c Caveats) {
	for i, k := range []string{"v/a.png", "v/b/c.png", "v/empty"} {
		mustWrite(t, ctx, b, k, randomBytes(uint64(20+i), 100*i))
	}
	n := 0
	err := b.List(ctx, "v/", func(o storage.Object) error {
		n++
		a, err := b.Attributes(ctx, o.Key)
		if err != nil {
			return err
		}
		if o.Err != nil {
			t.Errorf("List: %q has Err %v", o.Key, o.Err)
		}
		if o.Size != a.Size || !bytes.Equal(o.MD5, a.MD5) {
			t.Errorf("%q: listed size %d MD5 %x, Attributes size %d MD5 %x", o.Key, o.Size, o.MD5, a.Size, a.MD5)
		}
		switch {
		case o.ETag == "" && c.ListHasNoETag:
		case o.ETag != a.ETag:
			t.Errorf("%q: listed ETag %q, Attributes ETag %q", o.Key, o.ETag, a.ETag)
		}
		if len(o.MD5) == 0 && o.ETag == "" {
			t.Errorf("%q: the listing gives no version (no MD5, no ETag)", o.Key)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n != 3 {
		t.Errorf("listed %d objects, want 3", n)
	}
}

// testListPlaceholders: a zero-byte "directory" object ("d/sub/", as S3 consoles make them)
// is skipped by List; the objects below it are listed.
func testListPlaceholders(t *testing.T, ctx context.Context, b *storage.Bucket, raw *blob.Bucket, c Caveats) {
	for _, k := range []string{"d/", "d/sub/", "d/sub/x.png", "d/y.png"} {
		if err := raw.WriteAll(ctx, k, nil, nil); err != nil {
			t.Fatalf("write %q: %v", k, err)
		}
	}
	checkListed(t, c, "d/", listKeys(t, ctx, b, "d/"), []string{"d/sub/x.png", "d/y.png"})
	checkListed(t, c, "", listKeys(t, ctx, b, ""), []string{"d/sub/x.png", "d/y.png"})
}
