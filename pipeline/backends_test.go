package pipeline

import (
	"context"
	"fmt"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fsouza/fake-gcs-server/fakestorage"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
	"gocloud.dev/blob"
	"gocloud.dev/blob/gcsblob"
	_ "gocloud.dev/blob/s3blob"
)

// TestRunFile runs the scenario on file:// directories, opened by Run itself.
func TestRunFile(t *testing.T) {
	root := filepath.ToSlash(t.TempDir())
	for _, d := range []string{"in", "out", "out2"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	open := func(ctx context.Context, u string) (*blob.Bucket, error) { return blob.OpenBucket(ctx, u) }
	runScenario(t, env{open: open, in: "file://" + root + "/in", out: "file://" + root + "/out", out2: "file://" + root + "/out2",
		dir: func(b, p string) string { return b + "/" + p }})
}

// TestRunS3 runs the scenario through s3blob against gofakes3 over HTTP on loopback, with
// buckets opened by Run itself from s3:// URLs.
func TestRunS3(t *testing.T) {
	dir := t.TempDir()
	for k, v := range map[string]string{
		"AWS_ACCESS_KEY_ID": "AKIDFAKEFORTESTS", "AWS_SECRET_ACCESS_KEY": "fake-secret-for-tests", "AWS_SESSION_TOKEN": "",
		"AWS_PROFILE": "", "AWS_CONFIG_FILE": filepath.Join(dir, "config"), "AWS_SHARED_CREDENTIALS_FILE": filepath.Join(dir, "credentials"),
		"AWS_EC2_METADATA_DISABLED": "true", "AWS_ENDPOINT_URL": "", "AWS_ENDPOINT_URL_S3": "",
	} {
		t.Setenv(k, v)
	}
	backend := s3mem.New()
	srv := httptest.NewServer(gofakes3.New(backend, gofakes3.WithLogger(gofakes3.DiscardLog())).Server())
	t.Cleanup(srv.Close)
	for _, b := range []string{"in", "out", "out2"} {
		if err := backend.CreateBucket(b); err != nil {
			t.Fatal(err)
		}
	}
	q := url.Values{"endpoint": {srv.URL}, "region": {"us-east-1"}, "use_path_style": {"true"}, "disable_https": {"true"},
		"request_checksum_calculation": {"when_required"}, "response_checksum_validation": {"when_required"}}.Encode()
	open := func(ctx context.Context, u string) (*blob.Bucket, error) { return blob.OpenBucket(ctx, u) }
	runScenario(t, env{open: open, in: "s3://in?" + q, out: "s3://out?" + q, out2: "s3://out2?" + q,
		dir: func(b, p string) string {
			base, query, _ := strings.Cut(b, "?")
			return base + "/" + p + "?" + query
		}})
}

// TestRunGCS runs the scenario through gcsblob against fake-gcs-server (in-process transport).
func TestRunGCS(t *testing.T) {
	srv, err := fakestorage.NewServerWithOptions(fakestorage.Options{NoListener: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	for _, b := range []string{"in", "out", "out2"} {
		srv.CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: b})
	}
	open := func(ctx context.Context, u string) (*blob.Bucket, error) {
		name, ok := strings.CutPrefix(u, "gs://")
		if !ok {
			return nil, fmt.Errorf("not gs: %s", u)
		}
		return gcsblob.OpenBucket(ctx, nil, name, &gcsblob.Options{Client: srv.Client()})
	}
	runScenario(t, env{open: open, runOpen: open, in: "gs://in", out: "gs://out", out2: "gs://out2",
		dir: func(b, p string) string { return b + "/" + p }})
}
