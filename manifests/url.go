package manifests

import (
	"errors"
	"fmt"
	"net/url"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// schemes are the URL schemes a manifest may use, as gocloud.dev/blob names them.
var schemes = []string{"s3", "gs", "file", "mem", "azblob"}

// Schemes returns the URL schemes a manifest may use for buckets: s3, gs, file, mem, azblob.
func Schemes() []string { return slices.Clone(schemes) }

// parsedURL is a bucket URL taken apart.
type parsedURL struct {
	scheme, host, path, query string
}

// parseURL checks u's scheme and shape. The error says what is wrong without repeating u,
// which may hold secrets in its query.
func parseURL(u string) (parsedURL, error) {
	if u == "" {
		return parsedURL{}, errors.New("is empty")
	}
	pu, err := url.Parse(u)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return parsedURL{}, fmt.Errorf("is not a valid URL: %v", err)
	}
	if pu.Scheme == "" {
		return parsedURL{}, fmt.Errorf("has no scheme (want %s, such as s3://bucket/prefix/)", strings.Join(schemes, ", "))
	}
	if !slices.Contains(schemes, pu.Scheme) {
		return parsedURL{}, fmt.Errorf("scheme %q is not supported (want %s)", pu.Scheme, strings.Join(schemes, ", "))
	}
	switch {
	case pu.Opaque != "":
		return parsedURL{}, fmt.Errorf("must be of the form %s://bucket/path", pu.Scheme)
	case pu.User != nil:
		return parsedURL{}, errors.New("must not hold user information (credentials belong in the environment)")
	case pu.Fragment != "" || strings.Contains(u, "#"):
		return parsedURL{}, errors.New("must not have a fragment (#)")
	case strings.Contains(pu.Path, `\`):
		return parsedURL{}, errors.New(`must not contain a backslash`)
	}
	for _, seg := range strings.Split(pu.Path, "/") {
		if seg == "." || seg == ".." {
			return parsedURL{}, fmt.Errorf("path must not contain %q segments", seg)
		}
	}
	p := parsedURL{scheme: pu.Scheme, host: pu.Host, path: pu.Path, query: pu.RawQuery}
	switch p.scheme {
	case "file":
		if p.host == "." {
			// file://./dir/ is relative to the manifest's directory (see ResolveFileURLs).
			if p.path == "" {
				p.path = "/"
			}
			break
		}
		if p.host != "" && p.host != "localhost" {
			return parsedURL{}, fmt.Errorf("file URL has host %q; write file:///absolute/path or file://./relative/path", p.host)
		}
		if !strings.HasPrefix(p.path, "/") {
			return parsedURL{}, errors.New("file URL needs an absolute path (file:///absolute/path)")
		}
	case "mem":
	default:
		if p.host == "" {
			return parsedURL{}, fmt.Errorf("names no bucket (want %s://bucket/prefix)", p.scheme)
		}
	}
	return p, nil
}

// bucket returns the bucket URL for directory dir (file) or the host (others), with the query.
func (p parsedURL) bucket(dir string) string {
	b := p.scheme + "://" + p.host
	if p.scheme == "file" {
		b += dir
	}
	if p.query != "" {
		b += "?" + p.query
	}
	return b
}

// SplitURL splits a bucket URL into the URL to open the bucket with (gocloud.dev/blob
// OpenBucket) and the key prefix inside it. For s3, gs, azblob and mem the host names the
// bucket and the path, without its leading slash, is the prefix; query parameters stay on the
// bucket URL: "s3://b/a/b/?region=x" gives "s3://b?region=x" and "a/b/". For file the whole
// path is the bucket's directory and the prefix is empty: "file:///data/in/" gives
// "file:///data/in" and "". mem URLs may leave out the host ("mem:///a/" gives "mem://", "a/").
//
// It fails for schemes other than s3, gs, file, mem and azblob, user information, fragments,
// "." or ".." path segments, backslashes, a missing bucket, and file URLs that are not absolute
// paths on the local host. Errors do not repeat the URL.
func SplitURL(u string) (bucketURL, prefix string, err error) {
	p, err := parseURL(u)
	if err != nil {
		return "", "", fmt.Errorf("URL %s", err)
	}
	if p.scheme == "file" {
		dir := strings.TrimRight(p.path, "/")
		if dir == "" {
			dir = "/"
		}
		return p.bucket(dir), "", nil
	}
	return p.bucket(""), strings.TrimPrefix(p.path, "/"), nil
}

// SplitObjectURL splits the URL of one object into the URL to open its bucket with and the
// object's key: "s3://models/vgg19.pth?region=x" gives "s3://models?region=x" and "vgg19.pth";
// "file:///models/vgg19.pth" gives "file:///models" and "vgg19.pth". It fails as SplitURL does,
// and when the URL names no object (an empty key, or one ending in "/").
func SplitObjectURL(u string) (bucketURL, key string, err error) {
	p, err := parseURL(u)
	if err != nil {
		return "", "", fmt.Errorf("URL %s", err)
	}
	if p.path == "" || strings.HasSuffix(p.path, "/") {
		return "", "", errors.New("URL names no object (it ends in / or has no path)")
	}
	if p.scheme == "file" {
		dir, base := path.Split(p.path)
		if dir != "/" {
			dir = strings.TrimSuffix(dir, "/")
		}
		return p.bucket(dir), base, nil
	}
	return p.bucket(""), strings.TrimPrefix(p.path, "/"), nil
}

// asDirectory returns u with a "/" added to its path if it does not end in one, keeping the
// query: "s3://b/out?region=x" becomes "s3://b/out/?region=x"; "s3://b" becomes "s3://b/".
func asDirectory(u string) string {
	base, query, hasQuery := strings.Cut(u, "?")
	if !strings.HasSuffix(base, "/") {
		base += "/"
	}
	if hasQuery {
		return base + "?" + query
	}
	return base
}

// IsRelativeFileURL reports whether u is a file URL relative to the manifest's directory,
// "file://./dir/" (the form gocloud.dev/blob/fileblob reads relative to the working directory).
func IsRelativeFileURL(u string) bool {
	return strings.HasPrefix(u, "file://./") || u == "file://." || strings.HasPrefix(u, "file://.?")
}

// ResolveFileURL returns u with a relative file URL ("file://./data/in/?create_dir=true")
// turned into an absolute one below dir, an absolute local directory
// ("file:///manifests/data/in/?create_dir=true"); trailing slash and query are kept. Other URLs
// come back unchanged.
func ResolveFileURL(u, dir string) string {
	if !IsRelativeFileURL(u) {
		return u
	}
	rest := strings.TrimPrefix(u, "file://.")
	rest, query, hasQuery := strings.Cut(rest, "?")
	abs := path.Join(filepath.ToSlash(dir), rest)
	if strings.HasSuffix(rest, "/") && !strings.HasSuffix(abs, "/") {
		abs += "/"
	}
	if !strings.HasPrefix(abs, "/") {
		abs = "/" + abs // a Windows drive path, as fileblob wants it: file:///C:/dir
	}
	out := "file://" + abs
	if hasQuery {
		out += "?" + query
	}
	return out
}

// ResolveFileURLs rewrites every relative file URL of m ("file://./data/in/": inputs, output,
// model weights, presetsFrom) against dir, the absolute directory of the manifest file. Call it
// for manifests read from a local file; a manifest read from a bucket should have none
// (see RelativeFileURLs).
func (m *Manifest) ResolveFileURLs(dir string) {
	for _, u := range m.urls() {
		*u = ResolveFileURL(*u, dir)
	}
}

// RelativeFileURLs returns the YAML paths of the fields of m that hold relative file URLs.
func (m *Manifest) RelativeFileURLs() []string {
	var paths []string
	names := []string{"spec.inputs.contents.url", "spec.inputs.styles.url", "spec.output.url", "spec.model.weights", "spec.presetsFrom"}
	for i, u := range m.urls() {
		if IsRelativeFileURL(*u) {
			paths = append(paths, names[i])
		}
	}
	return paths
}

func (m *Manifest) urls() []*string {
	s := &m.Spec
	return []*string{&s.Inputs.Contents.URL, &s.Inputs.Styles.URL, &s.Output.URL, &s.Model.Weights, &s.PresetsFrom}
}

// location returns a directory URL's place for comparing overlap: scheme, host and path with
// a trailing slash, without the query. Two directories overlap when one location is a prefix
// of the other.
func location(u string) (string, error) {
	p, err := parseURL(u)
	if err != nil {
		return "", err
	}
	pth := p.path
	if !strings.HasSuffix(pth, "/") {
		pth += "/"
	}
	return p.scheme + "://" + p.host + pth, nil
}
