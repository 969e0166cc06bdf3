package storage_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	"gocloud.dev/blob/s3blob"
	"gocloud.dev/gcerrors"

	"github.com/nst-project/nst/storage"
)

// fault is what faultyTransport does to a matching request.
type fault int

const (
	slowDown     fault = iota // answer 503 SlowDown without forwarding
	accessDenied              // answer 403 AccessDenied without forwarding
	truncate                  // forward; the body stops halfway with a clean EOF
	corrupt                   // forward; one body byte flipped, length kept
	landThenFail              // forward (the change lands), then answer 500
	hang                      // wait for the request's context to end
)

// rule applies f to the next n requests whose method is method and whose
// query contains query.
type rule struct {
	method, query string
	n             int
	f             fault
}

// faultyTransport sits between the AWS SDK and gofakes3 and breaks requests
// according to its rules. It records every request as "METHOD path?query".
type faultyTransport struct {
	base http.RoundTripper
	mu   sync.Mutex
	// rules and seen are guarded by mu.
	rules []rule
	seen  []string
}

func (ft *faultyTransport) add(r rule) {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	ft.rules = append(ft.rules, r)
}

func (ft *faultyTransport) count(method string) int {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	n := 0
	for _, s := range ft.seen {
		if strings.HasPrefix(s, method+" ") {
			n++
		}
	}
	return n
}

func (ft *faultyTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ft.mu.Lock()
	ft.seen = append(ft.seen, req.Method+" "+req.URL.RequestURI())
	f, hit := fault(0), false
	for i := range ft.rules {
		r := &ft.rules[i]
		if r.n > 0 && r.method == req.Method && strings.Contains(req.URL.RawQuery, r.query) {
			r.n--
			f, hit = r.f, true
			break
		}
	}
	ft.mu.Unlock()
	if !hit {
		return ft.base.RoundTrip(req)
	}
	switch f {
	case slowDown:
		return s3Error(req, http.StatusServiceUnavailable, "SlowDown"), nil
	case accessDenied:
		return s3Error(req, http.StatusForbidden, "AccessDenied"), nil
	case hang:
		<-req.Context().Done()
		return nil, req.Context().Err()
	case landThenFail:
		resp, err := ft.base.RoundTrip(req)
		if err != nil {
			return nil, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return s3Error(req, http.StatusInternalServerError, "InternalError"), nil
	}
	resp, err := ft.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	switch f {
	case truncate:
		body = body[:len(body)/2]
	case corrupt:
		body[len(body)/2] ^= 0xff
	}
	// Content-Length still claims the full size, as a dropped connection
	// behind a proxy would.
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return resp, nil
}

func s3Error(req *http.Request, status int, code string) *http.Response {
	body := fmt.Sprintf(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code><Message>injected</Message></Error>`, code)
	if req.Method == http.MethodHead {
		body = ""
	}
	return &http.Response{
		StatusCode:    status,
		Status:        fmt.Sprintf("%d %s", status, http.StatusText(status)),
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        http.Header{"Content-Type": {"application/xml"}},
		Body:          io.NopCloser(strings.NewReader(body)),
		ContentLength: int64(len(body)),
		Request:       req,
	}
}

// retryRig is a storage.Bucket over gofakes3 through a faultyTransport, with
// the AWS SDK's own retries off so that every retry seen is storage's.
type retryRig struct {
	ft     *faultyTransport
	b      *storage.Bucket
	sleeps []time.Duration
	logs   *bytes.Buffer
}

// newRetryRig builds a rig whose policy backs off 10, 20, 40ms (the full
// ceiling each time) and records the delays instead of sleeping.
func newRetryRig(t *testing.T, opts storage.Options) *retryRig {
	t.Helper()
	if opts.Retry.Attempts == 0 {
		opts.Retry = storage.RetryPolicy{Attempts: 4, Base: 10 * time.Millisecond, Max: 40 * time.Millisecond}
	}
	opts.Retry.Jitter = func(c time.Duration) time.Duration { return c }
	var rig *retryRig
	if opts.Retry.Sleep == nil {
		opts.Retry.Sleep = func(ctx context.Context, d time.Duration) error {
			rig.sleeps = append(rig.sleeps, d)
			return ctx.Err()
		}
	}
	rig = buildRetryRig(t, opts)
	return rig
}

// buildRetryRig builds a rig with opts as given (default jitter and sleep
// unless set).
func buildRetryRig(t *testing.T, opts storage.Options) *retryRig {
	t.Helper()
	f := newFakeS3(t)
	name := f.newBucket(t)
	rig := &retryRig{
		ft:   &faultyTransport{base: http.DefaultTransport.(*http.Transport).Clone()},
		logs: new(bytes.Buffer),
	}
	client := s3.NewFromConfig(aws.Config{
		Region:                     "us-east-1",
		Credentials:                credentials.NewStaticCredentialsProvider("AKIDFAKEFORTESTS", "fake-secret-for-tests", ""),
		HTTPClient:                 &http.Client{Transport: rig.ft},
		Retryer:                    func() aws.Retryer { return aws.NopRetryer{} },
		BaseEndpoint:               aws.String(f.srv.URL),
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	}, func(o *s3.Options) { o.UsePathStyle = true })
	bb, err := s3blob.OpenBucket(t.Context(), client, name, &s3blob.Options{
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
	})
	if err != nil {
		t.Fatal(err)
	}
	opts.Logger = slog.New(slog.NewTextHandler(rig.logs, nil))
	rig.b = storage.New(bb, opts)
	t.Cleanup(func() { rig.b.Close() })
	return rig
}

func ms(ds ...int) []time.Duration {
	var out []time.Duration
	for _, d := range ds {
		out = append(out, time.Duration(d)*time.Millisecond)
	}
	return out
}

func equalDurations(a, b []time.Duration) bool {
	return fmt.Sprint(a) == fmt.Sprint(b)
}

func TestRetryRead(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789abcdef"), 4096)
	tests := []struct {
		name       string
		rules      []rule
		wantErr    func(error) bool // nil: success
		wantSleeps []time.Duration
		wantGets   int
	}{
		{"clean", nil, nil, nil, 1},
		{"503 twice on GET", []rule{{"GET", "", 2, slowDown}}, nil, ms(10, 20), 3},
		{"503 on HEAD", []rule{{"HEAD", "", 1, slowDown}}, nil, ms(10), 1},
		{"truncated body", []rule{{"GET", "", 1, truncate}}, nil, ms(10), 2},
		{"corrupted body (MD5)", []rule{{"GET", "", 2, corrupt}}, nil, ms(10, 20), 3},
		{
			"always truncated", []rule{{"GET", "", 100, truncate}},
			func(err error) bool { return errors.Is(err, storage.ErrCorrupt) },
			ms(10, 20, 40), 4,
		},
		{
			"503 beyond attempts", []rule{{"HEAD", "", 100, slowDown}},
			func(err error) bool {
				var ae smithy.APIError
				// A HEAD answer has no body: the SDK names the code
				// after the status.
				return storage.IsTransient(err) && errors.As(err, &ae) && ae.ErrorCode() == "ServiceUnavailable"
			},
			ms(10, 20, 40), 0,
		},
		{
			"403 not retried", []rule{{"HEAD", "", 1, accessDenied}},
			func(err error) bool { return gcerrors.Code(err) == gcerrors.PermissionDenied },
			nil, 0,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rig := newRetryRig(t, storage.Options{})
			ctx := t.Context()
			if err := rig.b.WriteOnce(ctx, "in/k.bin", data, storage.WriteOptions{}); err != nil {
				t.Fatal(err)
			}
			for _, r := range tt.rules {
				rig.ft.add(r)
			}
			got, _, err := rig.b.Read(ctx, "in/k.bin", 0)
			switch {
			case tt.wantErr == nil && err != nil:
				t.Fatalf("Read: %v", err)
			case tt.wantErr == nil && !bytes.Equal(got, data):
				t.Fatalf("Read: %d bytes, want %d", len(got), len(data))
			case tt.wantErr != nil && (err == nil || !tt.wantErr(err)):
				t.Fatalf("Read: err = %v, not the expected kind", err)
			}
			if !equalDurations(rig.sleeps, tt.wantSleeps) {
				t.Errorf("slept %v, want %v", rig.sleeps, tt.wantSleeps)
			}
			if n := rig.ft.count("GET"); n != tt.wantGets {
				t.Errorf("%d GETs, want %d", n, tt.wantGets)
			}
			if len(tt.wantSleeps) > 0 && !strings.Contains(rig.logs.String(), "storage: retrying") {
				t.Errorf("no retry logged: %q", rig.logs)
			}
		})
	}
}

func TestRetryNotFoundIsNotRetried(t *testing.T) {
	rig := newRetryRig(t, storage.Options{})
	_, _, err := rig.b.Read(t.Context(), "missing", 0)
	if !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Read: %v, want ErrNotFound", err)
	}
	if n := rig.ft.count("HEAD"); n != 1 || len(rig.sleeps) != 0 {
		t.Errorf("%d HEADs and sleeps %v, want 1 and none", n, rig.sleeps)
	}
}

func TestRetryWrites(t *testing.T) {
	ctx := t.Context()
	data := []byte("stylised pixels")

	t.Run("WriteOnce lands then fails", func(t *testing.T) {
		// The PUT commits but the answer is lost; the retry meets
		// PreconditionFailed, sees our own MD5 and reports success.
		rig := newRetryRig(t, storage.Options{})
		rig.ft.add(rule{"PUT", "", 1, landThenFail})
		if err := rig.b.WriteOnce(ctx, "out/a.png", data, storage.WriteOptions{}); err != nil {
			t.Fatalf("WriteOnce: %v", err)
		}
		if n := rig.ft.count("PUT"); n != 2 {
			t.Errorf("%d PUTs, want 2", n)
		}
		if got, _, err := rig.b.Read(ctx, "out/a.png", 0); err != nil || !bytes.Equal(got, data) {
			t.Errorf("Read: %q, %v", got, err)
		}
		// Someone else's object is still ErrExists.
		if err := rig.b.WriteOnce(ctx, "out/a.png", data, storage.WriteOptions{}); !errors.Is(err, storage.ErrExists) {
			t.Errorf("WriteOnce over existing: %v, want ErrExists", err)
		}
	})
	t.Run("WriteOnce 503", func(t *testing.T) {
		rig := newRetryRig(t, storage.Options{})
		rig.ft.add(rule{"PUT", "", 2, slowDown})
		if err := rig.b.WriteOnce(ctx, "out/b.png", data, storage.WriteOptions{}); err != nil {
			t.Fatalf("WriteOnce: %v", err)
		}
		if !equalDurations(rig.sleeps, ms(10, 20)) {
			t.Errorf("slept %v", rig.sleeps)
		}
	})
	t.Run("Write 503", func(t *testing.T) {
		rig := newRetryRig(t, storage.Options{})
		rig.ft.add(rule{"PUT", "", 1, slowDown})
		if err := rig.b.Write(ctx, "ckpt", data, storage.WriteOptions{}); err != nil {
			t.Fatalf("Write: %v", err)
		}
		if got, _, err := rig.b.Read(ctx, "ckpt", 0); err != nil || !bytes.Equal(got, data) {
			t.Errorf("Read: %q, %v", got, err)
		}
	})
	t.Run("Delete lands then fails", func(t *testing.T) {
		rig := newRetryRig(t, storage.Options{})
		if err := rig.b.Write(ctx, "tmp", data, storage.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
		rig.ft.add(rule{"DELETE", "", 1, landThenFail})
		if err := rig.b.Delete(ctx, "tmp"); err != nil {
			t.Fatalf("Delete: %v", err)
		}
	})
}

func TestRetryList(t *testing.T) {
	ctx := t.Context()
	rig := newRetryRig(t, storage.Options{PageSize: 2})
	for i := range 5 {
		if err := rig.b.Write(ctx, fmt.Sprintf("k%d", i), []byte("x"), storage.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// Fail the second page (the only request with a continuation token).
	rig.ft.add(rule{"GET", "continuation-token", 1, slowDown})
	var keys []string
	if err := rig.b.List(ctx, "", func(o storage.Object) error { keys = append(keys, o.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(keys) != "[k0 k1 k2 k3 k4]" || len(rig.sleeps) != 1 {
		t.Errorf("keys %v, sleeps %v", keys, rig.sleeps)
	}
}

func TestRetryAttemptTimeout(t *testing.T) {
	// The first attempt hangs until its own OpTimeout; the second succeeds.
	rig := newRetryRig(t, storage.Options{OpTimeout: 200 * time.Millisecond})
	ctx := t.Context()
	if err := rig.b.Write(ctx, "k", []byte("v"), storage.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	rig.ft.add(rule{"HEAD", "", 1, hang})
	if _, err := rig.b.Attributes(ctx, "k"); err != nil {
		t.Fatalf("Attributes: %v", err)
	}
	if len(rig.sleeps) != 1 {
		t.Errorf("sleeps %v, want one retry", rig.sleeps)
	}
}

func TestRetryStopsWhenContextEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	rig := newRetryRig(t, storage.Options{Retry: storage.RetryPolicy{
		Attempts: 10,
		// Cancelled while backing off, as on SIGTERM.
		Sleep: func(ctx context.Context, d time.Duration) error { cancel(); return ctx.Err() },
	}})
	rig.ft.add(rule{"HEAD", "", 100, slowDown})
	_, err := rig.b.Attributes(ctx, "k")
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled wrapped", err)
	}
	var ae smithy.APIError
	if !errors.As(err, &ae) || ae.ErrorCode() != "ServiceUnavailable" {
		t.Errorf("err = %v, want the last attempt's error kept", err)
	}
	if n := rig.ft.count("HEAD"); n != 1 {
		t.Errorf("%d HEADs after cancel, want 1", n)
	}
}

func TestRetryDefaultSleepHonoursContext(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	rig := buildRetryRig(t, storage.Options{Retry: storage.RetryPolicy{Attempts: 3, Base: time.Hour}})
	rig.ft.add(rule{"HEAD", "", 100, slowDown})
	start := time.Now()
	_, err := rig.b.Attributes(ctx, "k")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %v with an hour's backoff; ctx not honoured", d)
	}
}
