package storage_test

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"testing"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"gocloud.dev/blob"
	"gocloud.dev/gcerrors"
	"google.golang.org/api/googleapi"

	"github.com/nst-project/nst/storage"
)

type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

func httpStatusError(code int) *smithyhttp.ResponseError {
	return &smithyhttp.ResponseError{
		Response: &smithyhttp.Response{Response: &http.Response{StatusCode: code}},
		Err:      errors.New("http error"),
	}
}

// codedErrors returns real gocloud errors carrying the given codes, made by
// misusing a memblob bucket.
func codedErrors(t *testing.T) map[gcerrors.ErrorCode]error {
	t.Helper()
	ctx := t.Context()
	b, err := blob.OpenBucket(ctx, "mem://")
	if err != nil {
		t.Fatal(err)
	}
	_, notFound := b.Attributes(ctx, "missing")
	_, _, invalid := b.ListPage(ctx, blob.FirstPageToken, 0, nil)
	if err := b.WriteAll(ctx, "k", []byte("x"), nil); err != nil {
		t.Fatal(err)
	}
	exists := b.WriteAll(ctx, "k", []byte("y"), &blob.WriterOptions{IfNotExist: true})
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	m := map[gcerrors.ErrorCode]error{
		gcerrors.NotFound:           notFound,
		gcerrors.InvalidArgument:    invalid,
		gcerrors.FailedPrecondition: exists,
	}
	for code, err := range m {
		if got := gcerrors.Code(err); got != code {
			t.Fatalf("made %v, want code %v: %v", got, code, err)
		}
	}
	return m
}

func TestIsTransient(t *testing.T) {
	coded := codedErrors(t)
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"plain error", errors.New("boom"), false},
		{"context canceled", fmt.Errorf("x: %w", context.Canceled), false},
		{"attempt deadline", fmt.Errorf("x: %w", context.DeadlineExceeded), true},
		{"ErrNotFound", fmt.Errorf("x: %w", storage.ErrNotFound), false},
		{"ErrExists", storage.ErrExists, false},
		{"ErrTooLarge", storage.ErrTooLarge, false},
		{"ErrCorrupt", fmt.Errorf("x: %w", storage.ErrCorrupt), true},
		{"unexpected EOF", fmt.Errorf("read body: %w", io.ErrUnexpectedEOF), true},
		{"gcerrors NotFound", coded[gcerrors.NotFound], false},
		{"gcerrors InvalidArgument", coded[gcerrors.InvalidArgument], false},
		{"gcerrors FailedPrecondition", coded[gcerrors.FailedPrecondition], false},
		{"S3 SlowDown", &smithy.GenericAPIError{Code: "SlowDown"}, true},
		{"S3 RequestTimeout", &smithy.GenericAPIError{Code: "RequestTimeout"}, true},
		{"S3 InternalError", fmt.Errorf("op: %w", &smithy.GenericAPIError{Code: "InternalError"}), true},
		{"S3 AccessDenied", &smithy.GenericAPIError{Code: "AccessDenied"}, false},
		{"S3 NoSuchKey", &smithy.GenericAPIError{Code: "NoSuchKey"}, false},
		{"S3 PreconditionFailed", &smithy.GenericAPIError{Code: "PreconditionFailed"}, false},
		{"HTTP 503", httpStatusError(503), true},
		{"HTTP 500", fmt.Errorf("op: %w", httpStatusError(500)), true},
		{"HTTP 429", httpStatusError(429), true},
		{"HTTP 501", httpStatusError(501), false},
		{"HTTP 404", httpStatusError(404), false},
		{"HTTP 403", httpStatusError(403), false},
		{"AWS HTTP 502", &awshttp.ResponseError{ResponseError: httpStatusError(502)}, true},
		{"AWS HTTP 400", &awshttp.ResponseError{ResponseError: httpStatusError(400)}, false},
		{"googleapi 503", &googleapi.Error{Code: 503}, true},
		{"googleapi 429", fmt.Errorf("x: %w", &googleapi.Error{Code: 429}), true},
		{"googleapi 404", &googleapi.Error{Code: 404}, false},
		{"googleapi 412", &googleapi.Error{Code: 412}, false},
		{"net timeout", fmt.Errorf("x: %w", timeoutError{}), true},
		{"dial refused", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}, true},
		{"connection reset", fmt.Errorf("read: %w", syscall.ECONNRESET), true},
		{"broken pipe", fmt.Errorf("write: %w", syscall.EPIPE), true},
		{"server closed connection", &url.Error{Op: "Put", URL: "http://127.0.0.1/b/k", Err: io.EOF}, true},
		{"bad certificate", &url.Error{Op: "Get", URL: "https://127.0.0.1/", Err: x509.UnknownAuthorityError{}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := storage.IsTransient(tt.err); got != tt.want {
				t.Errorf("IsTransient(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

func TestRedact(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"mem://", "mem://"},
		{"s3://bucket?region=us-east-1", "s3://bucket?region=us-east-1"},
		{"s3://bucket/prefix?region=eu-west-1&use_path_style=true", "s3://bucket/prefix?region=eu-west-1&use_path_style=true"},
		{"s3://bucket?access_key=AKID&secret_key=s3cr3t&region=x", "s3://bucket?access_key=REDACTED&secret_key=REDACTED&region=x"},
		{"gs://b?token=abc&X-Goog-Signature=def", "gs://b?token=REDACTED&X-Goog-Signature=REDACTED"},
		{"https://h/b?X-Amz-Credential=AKID%2F2024&X-Amz-Signature=f00&X-Amz-Security-Token=t&X-Amz-Date=20240101", "https://h/b?X-Amz-Credential=REDACTED&X-Amz-Signature=REDACTED&X-Amz-Security-Token=REDACTED&X-Amz-Date=20240101"},
		{"azblob://c?sig=xyz&sv=2020", "azblob://c?sig=REDACTED&sv=2020"},
		{"s3://b?Password=p&credentials=c&apikey=k", "s3://b?Password=REDACTED&credentials=REDACTED&apikey=REDACTED"},
		{"ftp://user:hunter2@host/path", "ftp://user:REDACTED@host/path"},
		{"ftp://user@host/path", "ftp://user@host/path"},
		{"s3://b?endpoint=http%3A%2F%2Fu%3Ahunter2%40127.0.0.1%3A9000&region=x", "s3://b?endpoint=http%3A%2F%2Fu%3AREDACTED%40127.0.0.1%3A9000&region=x"},
		{"s3://b?token=", "s3://b?token="},
		{"s3://b?flag", "s3://b?flag"},
		{"://bad url with secret=hunter2", "REDACTED"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := storage.Redact(tt.in); got != tt.want {
				t.Errorf("Redact(%q)\n got %q\nwant %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestOpenErrorHidesSecrets(t *testing.T) {
	tests := []struct {
		name, url string
	}{
		{"unknown s3 param", "s3://bucket?region=us-east-1&secret_access_key=hunter2&bogus=1"},
		{"no driver", "nope://user:hunter2@host/b"},
		{"unparsable url", "s3://u:hunter2@host:99999x/b"},
		{"bad role", "s3://bucket?region=x&session_token=hunter2&role=not-an-arn"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := storage.Open(t.Context(), tt.url, storage.Options{})
			if err == nil {
				b.Close()
				t.Fatal("Open succeeded")
			}
			t.Log(err)
			if msg := err.Error(); strings.Contains(msg, "hunter2") || !strings.Contains(msg, "REDACTED") {
				t.Errorf("error message leaks or lacks redaction: %s", msg)
			}
		})
	}
	b, err := storage.Open(t.Context(), "mem://", storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
}
