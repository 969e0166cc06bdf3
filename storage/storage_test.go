package storage_test

import (
	"fmt"
	"net/http/httptest"
	"net/url"
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
	storagetest.Run(t, func(t *testing.T) *blob.Bucket { return openURL(t, "mem://") }, storagetest.Caveats{ListHasNoETag: true})
}

// TestFile runs the suite on buckets opened by storage.Open, which lists file:// directories
// itself; the raw bucket is fileblob on the same directory.
func TestFile(t *testing.T) {
	storagetest.RunOpen(t, openFile, storagetest.Caveats{})
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
	dir := t.TempDir()
	for k, v := range map[string]string{
		"AWS_ACCESS_KEY_ID":           "AKIDFAKEFORTESTS",
		"AWS_SECRET_ACCESS_KEY":       "fake-secret-for-tests",
		"AWS_SESSION_TOKEN":           "",
		"AWS_PROFILE":                 "",
		"AWS_CONFIG_FILE":             filepath.Join(dir, "config"),
		"AWS_SHARED_CREDENTIALS_FILE": filepath.Join(dir, "credentials"),
		"AWS_EC2_METADATA_DISABLED":   "true",
		"AWS_ENDPOINT_URL":            "",
		"AWS_ENDPOINT_URL_S3":         "",
	} {
		t.Setenv(k, v)
	}
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

// url is the s3:// URL for bucket on the fake server. Every parameter is
// one gocloud v0.49 s3blob (or gocloud.dev/aws) accepts.
func (f *fakeS3) url(bucket string) string {
	q := url.Values{
		"endpoint":                     {f.srv.URL},
		"region":                       {"us-east-1"},
		"use_path_style":               {"true"},
		"disable_https":                {"true"},
		"request_checksum_calculation": {"when_required"},
		"response_checksum_validation": {"when_required"},
	}
	return "s3://" + bucket + "?" + q.Encode()
}

func TestS3(t *testing.T) {
	f := newFakeS3(t)
	storagetest.Run(t, func(t *testing.T) *blob.Bucket { return openURL(t, f.url(f.newBucket(t))) }, storagetest.Caveats{})
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
	}, storagetest.Caveats{CancelledWriteMayLand: true})
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
