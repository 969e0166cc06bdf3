package manifests

import (
	"errors"
	"fmt"
	"maps"
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

// queryOptions are the query options gocloud.dev v0.49's URL openers accept, per scheme
// (gocloud.dev/aws V2ConfigFromURLParams and s3blob, gcsblob, fileblob, memblob, azureblob).
// Anything else makes the opener fail when the run starts; the manifest refuses it at once,
// naming the field. gocloud's generic prefix= and key= are refused apart (see movingOptions).
var queryOptions = map[string][]string{
	"s3": {"region", "endpoint", "profile", "anonymous", "role", "role_session_name", "role_external_id",
		"role_duration", "web_identity_token_file", "hostname_immutable", "dualstack", "fips",
		"rate_limiter_capacity", "request_checksum_calculation", "response_checksum_validation", "awssdk",
		"ssetype", "kmskeyid", "accelerate", "use_path_style", "s3ForcePathStyle", "disable_https"},
	"gs":     {"access_id", "private_key_path", "anonymous", "universe_domain", "grpc", "zonal"},
	"file":   {"create_dir", "dir_file_mode", "no_tmp_dir", "metadata", "base_url", "secret_key_path"},
	"mem":    {"nomd5"},
	"azblob": {"domain", "protocol", "cdn", "localemu", "storage_account"},
}

// movingOptions are gocloud's generic URL options that make a bucket serve other keys than
// the URL's path names (prefix= puts every key under another prefix, key= serves one key).
// Objects would land, and be read, elsewhere than the manifest says, beyond the reach of the
// overlap check and of the keys nst prints: the path says where, so they are refused.
var movingOptions = []string{"prefix", "key"}

// QueryOptions returns the query options a manifest URL of scheme may carry (those gocloud.dev
// v0.49 accepts for it, less prefix and key), for tests that hold the list against gocloud's.
func QueryOptions(scheme string) []string { return slices.Clone(queryOptions[scheme]) }

// checkQuery refuses query options that move objects or that gocloud does not know.
func checkQuery(scheme, rawQuery string) error {
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return fmt.Errorf("has a query that does not parse: %v", err)
	}
	for _, name := range slices.Sorted(maps.Keys(q)) {
		switch {
		case slices.Contains(movingOptions, name):
			return fmt.Errorf("query option %s= would move the objects away from the path the URL names; write the prefix in the path (%s://bucket/prefix/)", name, scheme)
		case !slices.Contains(queryOptions[scheme], name):
			return fmt.Errorf("has an unknown query option %q for %s URLs (known: %s)", name, scheme, strings.Join(queryOptions[scheme], ", "))
		}
	}
	return nil
}

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
	if err := checkQuery(pu.Scheme, pu.RawQuery); err != nil {
		return parsedURL{}, err
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
// of the other. Spellings of one place give one location: a host is lower-cased (bucket names
// are case-insensitive where they are valid at all); for file URLs "localhost" is no host,
// and the path is cleaned ("//", "/./" and a trailing "/" go), and realDir, if not nil, maps
// an absolute directory to its real path (symlinks resolved). The endpoint, region and other
// options are left out on purpose: two URLs that differ only there are judged one place,
// which can refuse two different servers' buckets of one name, never miss an overlap.
func location(u string, realDir func(string) string) (string, error) {
	p, err := parseURL(u)
	if err != nil {
		return "", err
	}
	host, pth := strings.ToLower(p.host), p.path
	if p.scheme == "file" {
		if host == "localhost" {
			host = ""
		}
		pth = path.Clean("/" + pth)
		if host == "" && realDir != nil {
			pth = realDir(pth)
		}
	}
	if !strings.HasSuffix(pth, "/") {
		pth += "/"
	}
	return p.scheme + "://" + host + pth, nil
}
