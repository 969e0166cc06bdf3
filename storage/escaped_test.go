package storage_test

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/fsouza/fake-gcs-server/fakestorage"
	"gocloud.dev/blob"
	"gocloud.dev/blob/gcsblob"

	"github.com/nst-project/nst/storage"
	"github.com/nst-project/nst/storage/storagetest"
)

// TestStoredEscapeSequencesListedAsStored: on S3 and GCS, an object stored by another tool
// under "x__0x2f__y.png" is read back by gocloud's drivers as "x/y.png"; beside a real
// "x/y.png" (and "x/z.png" between them in the store's order) the listing had the same key
// twice, out of order. List gives it under its stored key, once, in order, with Object.Err
// (ErrKeyName), and the real x/y.png keeps its bytes.
func TestStoredEscapeSequencesListedAsStored(t *testing.T) {
	stored := map[string]string{"x/y.png": "real", "x/z.png": "zed", "x__0x2f__y.png": "impostor", "a__0x41__.png": "A"}
	for _, tc := range []struct {
		name string
		open func(t *testing.T) *blob.Bucket
	}{
		{"S3", func(t *testing.T) *blob.Bucket {
			f := newFakeS3(t)
			name := f.newBucket(t)
			for k, v := range stored {
				if _, err := f.backend.PutObject(name, k, map[string]string{}, strings.NewReader(v), int64(len(v)), nil); err != nil {
					t.Fatal(err)
				}
			}
			return openURL(t, storagetest.S3URL(f.srv.URL, name))
		}},
		{"GCS", func(t *testing.T) *blob.Bucket {
			srv, err := fakestorage.NewServerWithOptions(fakestorage.Options{NoListener: true})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(srv.Stop)
			srv.CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: "b"})
			for k, v := range stored {
				srv.CreateObject(fakestorage.Object{ObjectAttrs: fakestorage.ObjectAttrs{BucketName: "b", Name: k}, Content: []byte(v)})
			}
			b, err := gcsblob.OpenBucket(t.Context(), nil, "b", &gcsblob.Options{Client: srv.Client()})
			if err != nil {
				t.Fatal(err)
			}
			return b
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := storage.New(tc.open(t), storage.Options{PageSize: 2})
			defer b.Close()
			var keys []string
			bad := map[string]error{}
			err := b.List(t.Context(), "", func(o storage.Object) error {
				keys = append(keys, o.Key)
				if o.Err != nil {
					bad[o.Key] = o.Err
				}
				return nil
			})
			if err != nil {
				t.Fatalf("List: %v", err)
			}
			want := []string{"a__0x41__.png", "x/y.png", "x/z.png", "x__0x2f__y.png"}
			if !slices.Equal(keys, want) {
				t.Errorf("keys %q, want %q", keys, want)
			}
			for _, k := range []string{"a__0x41__.png", "x__0x2f__y.png"} {
				if err := bad[k]; !errors.Is(err, storage.ErrKeyName) || !strings.Contains(err.Error(), fmt.Sprintf("%q", k)) {
					t.Errorf("%q: Err %v, want ErrKeyName naming it", k, err)
				}
			}
			if len(bad) != 2 {
				t.Errorf("entries with Err: %v, want the two escaped ones", bad)
			}
			if data, _, err := b.Read(t.Context(), "x/y.png", 0); err != nil || !bytes.Equal(data, []byte("real")) {
				t.Errorf("Read(x/y.png) = %q, %v", data, err)
			}
		})
	}
}
