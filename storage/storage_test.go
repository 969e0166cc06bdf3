package storage_test

import (
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/fsouza/fake-gcs-server/fakestorage"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
	"gocloud.dev/blob"
	_ "gocloud.dev/blob/fileblob"
	"gocloud.dev/blob/gcsblob"
	_ "gocloud.dev/blob/memblob"
	_ "gocloud.dev/blob/s3blob"

	"github.com/nst-project/nst/storage"
	"github.com/nst-project/nst/storage/storagetest"
)

func openURL(t *testing.T, u string) *blob.Bucket {
	t.Helper()
	b, err := blob.OpenBucket(t.Context(), u)
	if err != nil {
		t.Fatalf("OpenBucket(%s): %v", u, err)
	}
	return b
}

func TestMem(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) *blob.Bucket { return openURL(t, "mem://") }, storagetest.Caveats{ListHasNoETag: true, LongKeysAccepted: true})
}

// TestFile runs the suite on buckets opened by storage.Open, which lists file:// directories
// itself; the raw bucket is fileblob on the same directory.
func TestFile(t *testing.T) {
	storagetest.RunOpen(t, openFile, storagetest.Caveats{LongKeysAccepted: true})
}

// fakeS3 is gofakes3 over plain HTTP on loopback (over TLS the SDK sends
// aws-chunked bodies that gofakes3 stores verbatim; see PIPELINE-NOTES).
type fakeS3 struct {
	backend *s3mem.Backend
	srv     *httptest.Server
	n       atomic.Int64
}

// newFakeS3 starts gofakes3 and points the AWS SDK at dummy static
// credentials, isolating it from any real configuration on the machine.
func newFakeS3(t *testing.T) *fakeS3 {
	t.Helper()
	storagetest.IsolateAWS(t)
	f := &fakeS3{backend: s3mem.New()}
	f.srv = httptest.NewServer(gofakes3.New(f.backend, gofakes3.WithLogger(gofakes3.DiscardLog())).Server())
	t.Cleanup(f.srv.Close)
	return f
}

// newBucket creates an empty bucket and returns its name.
func (f *fakeS3) newBucket(t *testing.T) string {
	t.Helper()
	name := fmt.Sprintf("bucket-%d", f.n.Add(1))
	if err := f.backend.CreateBucket(name); err != nil {
		t.Fatal(err)
	}
	return name
}

func TestS3(t *testing.T) {
	f := newFakeS3(t)
	storagetest.Run(t, func(t *testing.T) *blob.Bucket {
		return openURL(t, storagetest.S3URL(f.srv.URL, f.newBucket(t)))
	}, storagetest.Caveats{OverwriteKeepsMetadata: true, LargeIfNotExistIgnored: true})
}

// TestS3Moto runs the suite on moto's standalone S3 server (PyPI moto[server],
// pinned in scripts/moto.lock), a second S3 implementation beside gofakes3,
// over real HTTP on loopback. It fails in CI and is skipped elsewhere when
// moto is not installed (make setup installs it).
func TestS3Moto(t *testing.T) {
	m := storagetest.StartMoto(t)
	var n atomic.Int64
	storagetest.Run(t, func(t *testing.T) *blob.Bucket {
		name := fmt.Sprintf("bucket-%d", n.Add(1))
		m.CreateBucket(t, name)
		return openURL(t, storagetest.S3URL(m.URL, name))
	}, storagetest.Caveats{LongKeysAccepted: true, EscapedMetadataKeysDropped: true})
}

// TestGCS runs the suite on fake-gcs-server, reached through its in-process
// transport (NoListener) by the storage.Client it hands out.
func TestGCS(t *testing.T) {
	srv, err := fakestorage.NewServerWithOptions(fakestorage.Options{NoListener: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	var n atomic.Int64
	storagetest.Run(t, func(t *testing.T) *blob.Bucket {
		name := fmt.Sprintf("bucket-%d", n.Add(1))
		srv.CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: name})
		// With Options.Client set, the gcp.HTTPClient must be nil and the
		// caller owns the client (srv.Stop closes it).
		b, err := gcsblob.OpenBucket(t.Context(), nil, name, &gcsblob.Options{Client: srv.Client()})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}, storagetest.Caveats{CancelledWriteMayLand: true, LongKeysAccepted: true})
}

// openFile opens a new temporary directory with storage.Open, and with fileblob for the cases
// that look below package storage.
func openFile(t *testing.T, opts storage.Options) (*storage.Bucket, *blob.Bucket) {
	t.Helper()
	// fileblob wants an absolute path with forward slashes.
	u := "file://" + filepath.ToSlash(t.TempDir())
	b, err := storage.Open(t.Context(), u, opts)
	if err != nil {
		t.Fatal(err)
	}
	raw := openURL(t, u)
	t.Cleanup(func() { raw.Close() })
	return b, raw
}
