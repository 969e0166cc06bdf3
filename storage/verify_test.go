package storage_test

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strconv"
	"sync"
	"testing"

	"github.com/nst-project/nst/storage"
)

// truncatingPuts forwards requests to base, cutting the body of the next n PUTs in half and
// fixing up Content-Length, as a misbehaving middlebox would: the server sees a well-framed,
// short body and (without Content-MD5, which s3blob does not send) stores it.
type truncatingPuts struct {
	base http.RoundTripper
	mu   sync.Mutex
	n    int
}

func (tp *truncatingPuts) RoundTrip(req *http.Request) (*http.Response, error) {
	tp.mu.Lock()
	cut := req.Method == http.MethodPut && tp.n > 0
	if cut {
		tp.n--
	}
	tp.mu.Unlock()
	if !cut {
		return tp.base.RoundTrip(req)
	}
	data, err := io.ReadAll(req.Body)
	if err != nil {
		return nil, err
	}
	half := data[:len(data)/2]
	req = req.Clone(req.Context())
	req.Body = io.NopCloser(bytes.NewReader(half))
	req.ContentLength = int64(len(half))
	req.Header.Set("Content-Length", strconv.Itoa(len(half)))
	return tp.base.RoundTrip(req)
}

// TestWriteVerifiesStoredObject: a body damaged on the way but stored by the server is found
// by reading the attributes back, deleted and written again; with every attempt damaged the
// write fails with ErrCorrupt and leaves nothing under the key.
func TestWriteVerifiesStoredObject(t *testing.T) {
	data := bytes.Repeat([]byte("nst output bytes "), 100)
	for _, tc := range []struct {
		name  string
		cuts  int
		write func(b *storage.Bucket, key string) error
		ok    bool
	}{
		{"WriteOnce, one damaged attempt", 1, func(b *storage.Bucket, k string) error {
			return b.WriteOnce(t.Context(), k, data, storage.WriteOptions{})
		}, true},
		{"Write, two damaged attempts", 2, func(b *storage.Bucket, k string) error { return b.Write(t.Context(), k, data, storage.WriteOptions{}) }, true},
		{"WriteOnce, every attempt damaged", 100, func(b *storage.Bucket, k string) error {
			return b.WriteOnce(t.Context(), k, data, storage.WriteOptions{})
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rig := newRetryRig(t, storage.Options{})
			tp := &truncatingPuts{base: rig.ft.base, n: tc.cuts}
			rig.ft.base = tp
			err := tc.write(rig.b, "out/a.png")
			if !tc.ok {
				if !errors.Is(err, storage.ErrCorrupt) {
					t.Fatalf("err = %v, want ErrCorrupt", err)
				}
				if ok, err := rig.b.Exists(t.Context(), "out/a.png"); ok || err != nil {
					t.Errorf("a damaged object is left (exists %v, %v)", ok, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, _, err := rig.b.Read(t.Context(), "out/a.png", 0)
			if err != nil || !bytes.Equal(got, data) {
				t.Errorf("read back %d bytes (%v), want %d", len(got), err, len(data))
			}
			if len(rig.sleeps) < tc.cuts {
				t.Errorf("%d retries, want at least %d", len(rig.sleeps), tc.cuts)
			}
		})
	}
}
