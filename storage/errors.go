package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"syscall"

	"github.com/aws/smithy-go"
	"gocloud.dev/gcerrors"
	"google.golang.org/api/googleapi"
)

// Sentinel errors. Every error returned by this package wraps the backend's
// error as well, so errors.Is works for these and gcerrors.Code still reports
// the backend's code.
var (
	// ErrNotFound: the key (or the bucket) does not exist. gcsblob also
	// reports HTTP 403 as not found, because GCS answers 403 for objects the
	// caller may not see.
	ErrNotFound = errors.New("object not found")

	// ErrExists: WriteOnce found the key already taken.
	ErrExists = errors.New("object already exists")

	// ErrTooLarge: Read refused an object larger than its maxBytes; nothing
	// was downloaded.
	ErrTooLarge = errors.New("object too large")

	// ErrCorrupt: the body read did not match the object's attributes (length
	// or MD5). It is transient: Read retries it, and only returns it once the
	// retry policy is exhausted.
	ErrCorrupt = errors.New("object body does not match its attributes")

	// ErrNotRegular: on a file bucket, the key names a FIFO, socket or device, a symlink to
	// a directory, or has an attributes sidecar that is not a regular file. Storage refuses
	// it before opening it (opening a FIFO blocks until a writer comes).
	ErrNotRegular = errors.New("not a regular file")

	// ErrOutsideBucket: on a file bucket, the key's path resolves (through symlinks) to a
	// place outside the bucket's directory. Storage does not follow it.
	ErrOutsideBucket = errors.New("outside the bucket's directory")

	// ErrKeyName: on a file bucket, a file's name cannot be served under the key it spells
	// (it holds the file store's escape sequences "__0x<hex>__", control characters or
	// invalid UTF-8), or a key cannot be located on disk without them.
	ErrKeyName = errors.New("name does not map to a key")
)

// wrap adds the operation and key to err, and ErrNotFound when the backend
// reports NotFound. It returns nil for nil.
func wrap(op, key string, err error) error {
	if err == nil {
		return nil
	}
	if gcerrors.Code(err) == gcerrors.NotFound && !errors.Is(err, ErrNotFound) {
		return fmt.Errorf("storage: %s %q: %w: %w", op, key, ErrNotFound, err)
	}
	return fmt.Errorf("storage: %s %q: %w", op, key, err)
}

// transientS3Codes are S3 error codes worth another attempt. Most come with
// a 5xx or 429 status, which is checked first; the codes cover servers and
// proxies that use other statuses (RequestTimeout is a 400).
var transientS3Codes = map[string]bool{
	"InternalError":                 true,
	"ServiceUnavailable":            true,
	"SlowDown":                      true,
	"RequestTimeout":                true,
	"RequestTimeoutException":       true,
	"Throttling":                    true,
	"ThrottlingException":           true,
	"ThrottledException":            true,
	"TooManyRequestsException":      true,
	"RequestThrottled":              true,
	"RequestLimitExceeded":          true,
	"ProvisionedThroughputExceeded": true,
	"BandwidthLimitExceeded":        true,
	"ConditionalRequestConflict":    true, // 409: another conditional write is in flight
	"BadDigest":                     true, // body damaged in transit
	"IncompleteBody":                true,
}

// IsTransient reports whether err is worth retrying: throttling, server-side
// 5xx, timeouts of a single attempt, broken connections, and bodies that did
// not match their attributes (ErrCorrupt, io.ErrUnexpectedEOF).
//
// Never transient: nil, context.Canceled, ErrNotFound, ErrExists,
// ErrTooLarge, ErrNotRegular, ErrOutsideBucket, ErrKeyName, and the gcerrors codes NotFound, AlreadyExists,
// PermissionDenied, InvalidArgument, FailedPrecondition, Unimplemented and
// Canceled. context.DeadlineExceeded is transient because a single attempt's
// timeout produces it; the retry loop stops anyway once its own context is
// done.
func IsTransient(err error) bool {
	if err == nil {
		return false
	}
	switch {
	case errors.Is(err, context.Canceled),
		errors.Is(err, ErrNotFound),
		errors.Is(err, ErrExists),
		errors.Is(err, ErrTooLarge),
		errors.Is(err, ErrNotRegular),
		errors.Is(err, ErrOutsideBucket),
		errors.Is(err, ErrKeyName):
		return false
	case errors.Is(err, ErrCorrupt),
		errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, context.DeadlineExceeded):
		return true
	}
	switch gcerrors.Code(err) {
	case gcerrors.NotFound, gcerrors.AlreadyExists, gcerrors.PermissionDenied,
		gcerrors.InvalidArgument, gcerrors.FailedPrecondition,
		gcerrors.Unimplemented, gcerrors.Canceled:
		return false
	case gcerrors.ResourceExhausted, gcerrors.DeadlineExceeded, gcerrors.Internal:
		return true
	}

	// HTTP status: *smithyhttp.ResponseError and *awshttp.ResponseError
	// both have HTTPStatusCode (the AWS one embeds the smithy one, so
	// errors.As on the concrete smithy type would miss it).
	var withStatus interface{ HTTPStatusCode() int }
	if errors.As(err, &withStatus) {
		if c := withStatus.HTTPStatusCode(); transientStatus(c) {
			return true
		}
	}
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) && transientS3Codes[apiErr.ErrorCode()] {
		return true
	}
	var gErr *googleapi.Error
	if errors.As(err, &gErr) && transientStatus(gErr.Code) {
		return true
	}

	// Transport failures.
	var netErr net.Error
	if errors.As(err, &netErr) && netErr.Timeout() {
		return true
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) {
		return true
	}
	if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.EPIPE) {
		return true
	}
	// net/http reports a connection the server closed mid-exchange as a
	// *url.Error around io.EOF.
	var urlErr *url.Error
	if errors.As(err, &urlErr) && errors.Is(urlErr.Err, io.EOF) {
		return true
	}
	return false
}

func transientStatus(code int) bool {
	return (code >= 500 && code != http.StatusNotImplemented) || code == http.StatusTooManyRequests || code == http.StatusRequestTimeout
}
