// Package storage reads, lists and writes pipeline objects in a bucket, over
// gocloud.dev/blob: S3, GCS, local files or memory, picked by URL.
//
// The package registers no drivers: the program (cmd/nst) and tests
// blank-import gocloud.dev/blob/s3blob, gcsblob, fileblob or memblob.
//
// Every method retries transient failures (see IsTransient) with exponential
// backoff and full jitter, gives each attempt its own timeout, and returns
// errors that name the operation and key and wrap the backend's error, with
// ErrNotFound, ErrExists, ErrTooLarge or ErrCorrupt where they apply.
package storage

import (
	"bytes"
	"context"
	"crypto/md5"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	gcs "cloud.google.com/go/storage"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"gocloud.dev/blob"
	"gocloud.dev/gcerrors"
)

// Object describes a stored object. List fills Key, Size, ModTime, MD5 and, where the
// backend's listing carries it, ETag (S3, GCS, file://; not mem://), so a version is known
// without a request per object; Attributes and Read fill every field the backend reports.
type Object struct {
	Key     string
	Size    int64
	ETag    string // as the backend's Attributes report it, quotes included; may be empty
	MD5     []byte // nil when the backend has none (S3 multipart, GCS composite)
	ModTime time.Time
	// ContentType and Metadata are as written; backends lower-case
	// metadata keys.
	ContentType string
	Metadata    map[string]string
	// Err is set by List for an entry that cannot be read safely, listed so that its users
	// fail with this cause instead of losing it silently. Only Key, and Size and ModTime
	// where known, are set; never read it (Read and Attributes refuse its key too).
	//
	// On buckets opened from file:// URLs: a FIFO, socket or device, a symlink to a
	// directory (not followed) or an attributes sidecar that is not a regular file
	// (ErrNotRegular); a symlink out of the bucket's directory (ErrOutsideBucket); a name the
	// file store cannot map back to the same key: escape sequences "__0x<hex>__", control
	// characters, invalid UTF-8 (ErrKeyName). Key is the name as it is on disk. On S3 and
	// GCS: a stored key holding gocloud's escape sequences, which the driver would read as
	// another key (ErrKeyName); Key is the key as stored.
	Err error
}

// Options configures a Bucket. The zero value gives the defaults.
type Options struct {
	// Retry is the policy for transient errors.
	Retry RetryPolicy
	// OpTimeout bounds one attempt of one call (for Read: the attributes
	// and the whole download). 0 or less means 2 minutes.
	OpTimeout time.Duration
	// PageSize is the number of keys List asks for per page. 0 or less
	// means 1000.
	PageSize int
	// NoMD5Check turns off Read's MD5 check. Set it for S3 buckets with
	// SSE-KMS or SSE-C encryption, whose ETags (which s3blob reports as the
	// MD5) are not the MD5 of the content. The length check stays.
	NoMD5Check bool
	// Logger receives a warning per retry. nil means discard.
	Logger *slog.Logger
}

// WriteOptions sets the attributes of a written object.
type WriteOptions struct {
	// ContentType is stored with the object; "" means sniffed from the
	// first 512 bytes (http.DetectContentType).
	ContentType string
	// Metadata is stored with the object. Use lower-case keys: backends
	// lower-case them anyway.
	Metadata map[string]string
}

// Bucket is a pipeline's handle on one bucket. It is safe for concurrent
// use by multiple goroutines. Close it when done; it closes the
// *blob.Bucket it was made from.
type Bucket struct {
	b          *blob.Bucket
	file       *fileRoot // set for buckets opened from file:// URLs
	rawFile    bool      // a fileblob bucket handed to New: its listing is not trusted
	retry      RetryPolicy
	opTimeout  time.Duration
	pageSize   int
	noMD5Check bool
	log        *slog.Logger
}

// New wraps b, which the returned Bucket owns: Bucket.Close closes it.
func New(b *blob.Bucket, opts Options) *Bucket {
	bk := &Bucket{
		b:          b,
		retry:      opts.Retry.withDefaults(),
		opTimeout:  opts.OpTimeout,
		pageSize:   opts.PageSize,
		noMD5Check: opts.NoMD5Check,
		log:        opts.Logger,
	}
	// Only fileblob answers As with its directory's os.FileInfo.
	var fi os.FileInfo
	bk.rawFile = b.As(&fi)
	if bk.opTimeout <= 0 {
		bk.opTimeout = 2 * time.Minute
	}
	if bk.pageSize <= 0 {
		bk.pageSize = 1000
	}
	if bk.log == nil {
		bk.log = slog.New(slog.DiscardHandler)
	}
	return bk
}

// Open opens the bucket at bucketURL (s3://, gs://, file://, mem://...)
// through blob.OpenBucket; the URL's driver must be registered by a blank
// import. The error's message has the URL's secrets removed (see Redact);
// it wraps the driver's error. Opening is not retried: drivers dial lazily.
//
// For file:// URLs, Open sets fileblob's no_tmp_dir unless the URL sets it, so
// temporary files are written beside their final path and renamed within one
// filesystem (with the default, a bucket on another filesystem than the
// system's temporary directory fails every write with "invalid cross-device
// link"); it refuses the prefix= and key= options; and the Bucket lists the
// directory itself and checks files before fileblob opens them (see List,
// Read, Object.Err). Use Open, not New, for file buckets.
func Open(ctx context.Context, bucketURL string, opts Options) (*Bucket, error) {
	openURL := bucketURL
	var root *fileRoot
	u, err := url.Parse(bucketURL)
	if err == nil && u.Scheme == "file" {
		openURL, err = fileURL(u)
		if err != nil {
			return nil, &openError{msg: fmt.Sprintf("storage: open %s: %v", Redact(bucketURL), err), err: err}
		}
	}
	b, err := blob.OpenBucket(ctx, openURL)
	if err == nil && u != nil && u.Scheme == "file" {
		if root, err = openFileRoot(u); err != nil {
			b.Close()
		}
	}
	if err != nil {
		safe, secrets := redact(bucketURL)
		return nil, &openError{
			msg: fmt.Sprintf("storage: open %s: %s", safe, scrub(err.Error(), append(secrets, bucketURL, openURL))),
			err: err,
		}
	}
	bk := New(b, opts)
	bk.file, bk.rawFile = root, false
	return bk, nil
}

// Close closes the underlying *blob.Bucket. Calls in flight may fail.
func (b *Bucket) Close() error {
	if err := b.b.Close(); err != nil {
		return fmt.Errorf("storage: close: %w", err)
	}
	return nil
}

// List calls fn for every object whose key starts with prefix, once per key,
// in byte-lexical order of keys, on every backend. Directory placeholders
// (keys ending in "/", as S3 consoles create them) are skipped. If fn returns
// an error, List stops and returns it unchanged. fn runs on List's goroutine.
//
// On S3, GCS and mem, List reads pages of Options.PageSize keys, each retried
// on its own, and holds one page at a time; it skips a key repeated across a
// page boundary and fails if the backend goes back in the order. A stored key
// that the driver unescapes (S3 and GCS keys holding gocloud's escape
// sequences "__0x<hex>__", such as "x__0x2f__y.png", which s3blob would list
// as "x/y.png", beside a real "x/y.png") is listed under the stored key with
// Object.Err (ErrKeyName), never as another key. On buckets
// opened from file:// URLs (see Open) it walks the directory itself, each
// directory once, holding one directory's entries per level; it skips
// fileblob's attribute sidecars (".attrs") and temporary files
// ("<name>.<16 hex digits>.tmp"), takes MD5 from the sidecar where there is
// one and the ETag fileblob's Attributes would report, and lists entries that
// cannot be read safely with Object.Err set. A directory it cannot read fails
// the listing. List refuses a fileblob bucket given to New, whose own listing
// can repeat and skip keys.
func (b *Bucket) List(ctx context.Context, prefix string, fn func(Object) error) error {
	if b.file != nil {
		err := b.file.list(ctx, prefix, func(o Object) error {
			if err := fn(o); err != nil {
				return callbackError{err}
			}
			return nil
		})
		var ce callbackError
		if errors.As(err, &ce) {
			return ce.err
		}
		return wrap("list", prefix, err)
	}
	if b.rawFile {
		return wrap("list", prefix, errors.New("a fileblob bucket must be opened with storage.Open to be listed (fileblob's own listing repeats and skips keys)"))
	}
	lopts := &blob.ListOptions{Prefix: prefix}
	var last string
	started := false
	token := blob.FirstPageToken
	for len(token) > 0 {
		var (
			page []*blob.ListObject
			next []byte
		)
		err := b.do(ctx, "list", prefix, func(ctx context.Context, _ int) error {
			var err error
			page, next, err = b.b.ListPage(ctx, token, b.pageSize, lopts)
			return err
		})
		if err != nil {
			return wrap("list", prefix, err)
		}
		objs := make([]Object, 0, len(page))
		for _, o := range page {
			if o.IsDir || strings.HasSuffix(o.Key, "/") {
				continue
			}
			obj := Object{Key: o.Key, Size: o.Size, ModTime: o.ModTime, MD5: o.MD5}
			var raw string
			raw, obj.ETag = listedAs(o)
			if raw != "" && raw != o.Key {
				// The driver unescaped the stored key: list it as stored, in the store's
				// order, and unreadable (see Object.Err).
				obj = Object{Key: raw, Size: o.Size, ModTime: o.ModTime, Err: fmt.Errorf("storage: list %q: %w: it holds the store's escape sequences (\"__0x<hex>__\") and reads as %q", raw, ErrKeyName, o.Key)}
			}
			objs = append(objs, obj)
		}
		// The store sends a page in the order of its stored keys; gcsblob re-sorts it by
		// the unescaped ones.
		slices.SortFunc(objs, func(a, b Object) int { return strings.Compare(a.Key, b.Key) })
		for _, obj := range objs {
			if started && obj.Key <= last {
				if obj.Key == last {
					continue // the page boundary, repeated
				}
				return wrap("list", prefix, fmt.Errorf("the backend listed %q after %q, out of order", obj.Key, last))
			}
			started, last = true, obj.Key
			if err := fn(obj); err != nil {
				return err
			}
		}
		token = next
	}
	return nil
}

// callbackError carries fn's error through the file walk unchanged.
type callbackError struct{ err error }

func (e callbackError) Error() string { return e.err.Error() }

// listedAs returns what the driver's listing holds beyond gocloud's fields: the key as stored
// ("" where the driver exposes none: mem) and the ETag, spelled as the driver's Attributes
// spell it (S3's as is, GCS's in quotes: gcsblob adds them).
func listedAs(o *blob.ListObject) (raw, etag string) {
	var s3o s3types.Object
	if o.As(&s3o) {
		if s3o.Key != nil {
			raw = *s3o.Key
		}
		if s3o.ETag != nil {
			etag = *s3o.ETag
		}
		return raw, etag
	}
	var g gcs.ObjectAttrs
	if o.As(&g) {
		etag = g.Etag
		if etag != "" && !strings.HasPrefix(etag, "W/\"") && !strings.HasPrefix(etag, "\"") && !strings.HasSuffix(etag, "\"") {
			etag = fmt.Sprintf("%q", etag)
		}
		return g.Name, etag
	}
	return "", ""
}

// checkFile runs the file bucket's pre-open checks (see fileRoot.check) for key.
func (b *Bucket) checkFile(key string) error {
	if b.file == nil {
		return nil
	}
	return b.file.check(key)
}

// Attributes returns the object's attributes, or ErrNotFound. On a file bucket it refuses,
// before opening anything, what List would mark with Object.Err: ErrNotRegular,
// ErrOutsideBucket, ErrKeyName.
func (b *Bucket) Attributes(ctx context.Context, key string) (Object, error) {
	if err := b.checkFile(key); err != nil {
		return Object{}, wrap("attributes", key, err)
	}
	var obj Object
	err := b.do(ctx, "attributes", key, func(ctx context.Context, _ int) error {
		var err error
		obj, err = b.attributes(ctx, key)
		return err
	})
	return obj, wrap("attributes", key, err)
}

func (b *Bucket) attributes(ctx context.Context, key string) (Object, error) {
	a, err := b.b.Attributes(ctx, key)
	if err != nil {
		return Object{}, err
	}
	return Object{
		Key:         key,
		Size:        a.Size,
		ETag:        a.ETag,
		MD5:         a.MD5,
		ModTime:     a.ModTime,
		ContentType: a.ContentType,
		Metadata:    a.Metadata,
	}, nil
}

// Exists reports whether key exists. On a file bucket, an attributes sidecar that is not a
// regular file is an error (ErrNotRegular), found before fileblob opens it.
func (b *Bucket) Exists(ctx context.Context, key string) (bool, error) {
	if b.file != nil && keyProblem(key) == "" {
		if err := checkSidecar(filepath.Join(b.file.dir, filepath.FromSlash(key))); err != nil {
			return false, wrap("exists", key, err)
		}
	}
	var ok bool
	err := b.do(ctx, "exists", key, func(ctx context.Context, _ int) error {
		var err error
		ok, err = b.b.Exists(ctx, key)
		return err
	})
	return ok, wrap("exists", key, err)
}

// Read returns the whole object and its attributes. If the object is larger
// than maxBytes it returns ErrTooLarge without downloading it; maxBytes 0 or
// less means no limit. The bytes read must number exactly the object's size
// and, unless Options.NoMD5Check, hash to its MD5 when the backend reports
// one; otherwise the attempt fails with ErrCorrupt and is retried. Missing
// objects give ErrNotFound. On a file bucket it first refuses, without opening
// them, non-regular files (ErrNotRegular: a FIFO would block), paths out of the
// bucket's directory (ErrOutsideBucket) and keys it cannot locate (ErrKeyName).
func (b *Bucket) Read(ctx context.Context, key string, maxBytes int64) ([]byte, Object, error) {
	if err := b.checkFile(key); err != nil {
		return nil, Object{}, wrap("read", key, err)
	}
	var (
		data []byte
		obj  Object
	)
	err := b.do(ctx, "read", key, func(ctx context.Context, _ int) error {
		var err error
		data, obj, err = b.read(ctx, key, maxBytes)
		return err
	})
	if err != nil {
		return nil, Object{}, wrap("read", key, err)
	}
	return data, obj, nil
}

func (b *Bucket) read(ctx context.Context, key string, maxBytes int64) ([]byte, Object, error) {
	obj, err := b.attributes(ctx, key)
	if err != nil {
		return nil, Object{}, err
	}
	if maxBytes > 0 && obj.Size > maxBytes {
		return nil, Object{}, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, obj.Size, maxBytes)
	}
	r, err := b.b.NewReader(ctx, key, nil)
	if err != nil {
		return nil, Object{}, err
	}
	defer r.Close()
	if r.Size() != obj.Size {
		// Replaced between the two calls; the next attempt sees one version.
		return nil, Object{}, fmt.Errorf("%w: size changed from %d to %d while reading", ErrCorrupt, obj.Size, r.Size())
	}
	// Read one byte more than expected, to notice a body that runs long.
	data, err := io.ReadAll(io.LimitReader(r, obj.Size+1))
	if err != nil {
		return nil, Object{}, err
	}
	if int64(len(data)) != obj.Size {
		return nil, Object{}, fmt.Errorf("%w: read %d bytes, want %d", ErrCorrupt, len(data), obj.Size)
	}
	if len(obj.MD5) > 0 && !b.noMD5Check {
		if sum := md5.Sum(data); !bytes.Equal(sum[:], obj.MD5) {
			return nil, Object{}, fmt.Errorf("%w: MD5 %x, want %x", ErrCorrupt, sum, obj.MD5)
		}
	}
	return data, obj, nil
}

// WriteOnce stores data under key unless key exists, in which case it
// returns ErrExists and leaves the object alone. The object exists once
// WriteOnce returns nil; on any error nothing new is left under key (but see
// GCS below).
//
// The write asks the backend to refuse existing keys (WriterOptions
// .IfNotExist: S3 If-None-Match, GCS DoesNotExist), which S3, GCS and moto
// enforce atomically on the server; gofakes3 does only for objects uploaded
// in one part, under 16 MiB (storagetest.Caveats.LargeIfNotExistIgnored), and
// fileblob's check is racy. An Exists check goes first so that backends that
// ignore the condition still refuse in the common case; that check alone is
// racy.
//
// If an attempt fails transiently and a later one finds the key taken by an
// object with this data's MD5, the earlier attempt landed and WriteOnce
// returns nil. GCS may commit an object even though the write reported an
// error (a cancelled upload can land), so treat keys as "maybe written"
// after an error and keep outputs idempotent.
func (b *Bucket) WriteOnce(ctx context.Context, key string, data []byte, opts WriteOptions) error {
	var exists bool
	err := b.do(ctx, "write", key, func(ctx context.Context, _ int) error {
		var err error
		exists, err = b.b.Exists(ctx, key)
		return err
	})
	if err != nil {
		return wrap("write", key, err)
	}
	if exists {
		return fmt.Errorf("storage: write %q: %w", key, ErrExists)
	}
	sum := md5.Sum(data)
	failed := false
	err = b.do(ctx, "write", key, func(ctx context.Context, attempt int) error {
		err := b.put(ctx, key, data, sum[:], opts, true)
		if gcerrors.Code(err) != gcerrors.FailedPrecondition {
			failed = failed || err != nil
			return err
		}
		if failed {
			// Did our own failed attempt land after all?
			if a, aerr := b.b.Attributes(ctx, key); aerr == nil && a.Size == int64(len(data)) && bytes.Equal(a.MD5, sum[:]) {
				return nil
			}
		}
		return fmt.Errorf("%w: %w", ErrExists, err)
	})
	return wrap("write", key, err)
}

// Write stores data under key, replacing any object there. Use it for
// objects that are meant to change (checkpoints, run summaries); the old
// object stays readable until the new one is complete.
func (b *Bucket) Write(ctx context.Context, key string, data []byte, opts WriteOptions) error {
	sum := md5.Sum(data)
	err := b.do(ctx, "write", key, func(ctx context.Context, _ int) error {
		return b.put(ctx, key, data, sum[:], opts, false)
	})
	return wrap("write", key, err)
}

// put is one write attempt. It cancels the writer's context on any error
// before Close, which makes the driver abort instead of committing a
// partial object. After Close it reads the object's attributes back: a
// stored size (or, unless NoMD5Check, MD5) that differs from data's means
// the body was damaged on the way and stored anyway (s3blob sends no
// Content-MD5, so S3 and S3-compatible stores cannot refuse it; gofakes3
// over TLS stores aws-chunked framing verbatim); put then deletes the object
// and fails with ErrCorrupt, which is retried.
func (b *Bucket) put(ctx context.Context, key string, data, sum []byte, opts WriteOptions, ifNotExist bool) error {
	if err := b.putOnce(ctx, key, data, sum, opts, ifNotExist); err != nil {
		return err
	}
	a, err := b.b.Attributes(ctx, key)
	if err != nil {
		return fmt.Errorf("verify write: %w", err)
	}
	if a.Size == int64(len(data)) && (b.noMD5Check || len(a.MD5) == 0 || bytes.Equal(a.MD5, sum)) {
		return nil
	}
	note := "deleted"
	if derr := b.b.Delete(ctx, key); derr != nil {
		note = fmt.Sprintf("not deleted: %v", derr)
	}
	return fmt.Errorf("%w: stored %d bytes with MD5 %x, wrote %d with MD5 %x (%s)", ErrCorrupt, a.Size, a.MD5, len(data), sum, note)
}

func (b *Bucket) putOnce(ctx context.Context, key string, data, sum []byte, opts WriteOptions, ifNotExist bool) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := b.b.NewWriter(ctx, key, &blob.WriterOptions{
		ContentType: opts.ContentType,
		Metadata:    opts.Metadata,
		ContentMD5:  sum,
		IfNotExist:  ifNotExist,
	})
	if err != nil {
		return err
	}
	if _, err := w.Write(data); err != nil {
		cancel()
		_ = w.Close()
		return err
	}
	return w.Close()
}

// Delete removes key; a missing key gives ErrNotFound. If an attempt fails
// transiently and the retry finds the key gone, the earlier attempt is
// taken to have deleted it and Delete returns nil.
func (b *Bucket) Delete(ctx context.Context, key string) error {
	failed := false
	err := b.do(ctx, "delete", key, func(ctx context.Context, _ int) error {
		err := b.b.Delete(ctx, key)
		if failed && gcerrors.Code(err) == gcerrors.NotFound {
			return nil
		}
		failed = failed || err != nil
		return err
	})
	return wrap("delete", key, err)
}
