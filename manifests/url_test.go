package manifests

import "testing"

func TestSplitURL(t *testing.T) {
	for _, tc := range []struct {
		in, bucket, prefix, err string
	}{
		{in: "s3://b/a/b/?region=x", bucket: "s3://b?region=x", prefix: "a/b/"},
		{in: "s3://b", bucket: "s3://b", prefix: ""},
		{in: "s3://b/", bucket: "s3://b", prefix: ""},
		{in: "s3://b/x?endpoint=http://localhost:9000&use_path_style=true", bucket: "s3://b?endpoint=http://localhost:9000&use_path_style=true", prefix: "x"},
		{in: "gs://art/styles/", bucket: "gs://art", prefix: "styles/"},
		{in: "azblob://container/p/", bucket: "azblob://container", prefix: "p/"},
		{in: "mem://in/contents/", bucket: "mem://in", prefix: "contents/"},
		{in: "mem:///a/", bucket: "mem://", prefix: "a/"},
		{in: "mem://", bucket: "mem://", prefix: ""},
		{in: "file:///data/in/", bucket: "file:///data/in", prefix: ""},
		{in: "file:///data/in", bucket: "file:///data/in", prefix: ""},
		{in: "file:///", bucket: "file:///", prefix: ""},
		{in: "file:///data/in/?create_dir=true", bucket: "file:///data/in?create_dir=true", prefix: ""},
		{in: "s3://b/with%20space/", bucket: "s3://b", prefix: "with space/"},
		{in: "ftp://b/x", err: `URL scheme "ftp" is not supported (want s3, gs, file, mem, azblob)`},
		{in: "S3://b/x", bucket: "s3://b", prefix: "x"}, // schemes are case-insensitive
		{in: "", err: "URL is empty"},
		{in: "/data/in", err: "URL has no scheme (want s3, gs, file, mem, azblob, such as s3://bucket/prefix/)"},
		{in: "s3:b/x", err: "URL must be of the form s3://bucket/path"},
		{in: "s3:///x", err: "URL names no bucket (want s3://bucket/prefix)"},
		{in: "gs://u:p@b/x", err: "URL must not hold user information (credentials belong in the environment)"},
		{in: "s3://b/x#y", err: "URL must not have a fragment (#)"},
		{in: "s3://b/a/../c", err: `URL path must not contain ".." segments`},
		{in: "s3://b/./c", err: `URL path must not contain "." segments`},
		{in: `s3://b/a\c`, err: "URL must not contain a backslash"},
		{in: "file://host/data", err: `URL file URL has host "host"; write file:///absolute/path or file://./relative/path`},
		{in: "file://./data/in/", bucket: "file://./data/in", prefix: ""},
		{in: "file://./../in/", err: `URL path must not contain ".." segments`},
		{in: "s3://b/%zz", err: `URL is not a valid URL: invalid URL escape "%zz"`},
	} {
		t.Run(tc.in, func(t *testing.T) {
			b, p, err := SplitURL(tc.in)
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("SplitURL(%q) = %q, %q, %v; want error %q", tc.in, b, p, err, tc.err)
				}
				return
			}
			if err != nil || b != tc.bucket || p != tc.prefix {
				t.Errorf("SplitURL(%q) = %q, %q, %v; want %q, %q", tc.in, b, p, err, tc.bucket, tc.prefix)
			}
		})
	}
}

func TestSplitObjectURL(t *testing.T) {
	for _, tc := range []struct {
		in, bucket, key, err string
	}{
		{in: "s3://models/vgg19-dcbb9e9d.pth?region=x", bucket: "s3://models?region=x", key: "vgg19-dcbb9e9d.pth"},
		{in: "gs://m/a/b/w.pth", bucket: "gs://m", key: "a/b/w.pth"},
		{in: "file:///models/vgg19.pth", bucket: "file:///models", key: "vgg19.pth"},
		{in: "file:///vgg19.pth", bucket: "file:///", key: "vgg19.pth"},
		{in: "mem://m/w", bucket: "mem://m", key: "w"},
		{in: "s3://models/", err: "URL names no object (it ends in / or has no path)"},
		{in: "s3://models", err: "URL names no object (it ends in / or has no path)"},
		{in: "http://models/w.pth", err: `URL scheme "http" is not supported (want s3, gs, file, mem, azblob)`},
	} {
		t.Run(tc.in, func(t *testing.T) {
			b, k, err := SplitObjectURL(tc.in)
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("SplitObjectURL(%q) = %q, %q, %v; want error %q", tc.in, b, k, err, tc.err)
				}
				return
			}
			if err != nil || b != tc.bucket || k != tc.key {
				t.Errorf("SplitObjectURL(%q) = %q, %q, %v; want %q, %q", tc.in, b, k, err, tc.bucket, tc.key)
			}
		})
	}
}

func TestAsDirectory(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"s3://b/out", "s3://b/out/"},
		{"s3://b/out/", "s3://b/out/"},
		{"s3://b", "s3://b/"},
		{"s3://b/out?region=x", "s3://b/out/?region=x"},
		{"file:///data/out", "file:///data/out/"},
	} {
		if got := asDirectory(tc.in); got != tc.want {
			t.Errorf("asDirectory(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestSourceMatch(t *testing.T) {
	s := Source{Include: []string{"*.jpg", "*.png"}, Exclude: []string{"drafts/*", "*-thumb.*"}}
	for _, tc := range []struct {
		src  Source
		key  string
		want bool
	}{
		{s, "a.jpg", true},
		{s, "deep/dir/a.png", true},
		{s, "a.gif", false},
		{s, "drafts/a.jpg", false},
		{s, "x/drafts/a.jpg", true}, // "drafts/*" is matched against the whole key
		{s, "x/a-thumb.jpg", false},
		{Source{}, "anything/at.all", true},
		{Source{Exclude: []string{"*.txt"}}, "notes.txt", false},
		{Source{Include: []string{"a/*/c.jpg"}}, "a/b/c.jpg", true},
		{Source{Include: []string{"a/*/c.jpg"}}, "a/b/x/c.jpg", false},
	} {
		if got := tc.src.Match(tc.key); got != tc.want {
			t.Errorf("%+v.Match(%q) = %v, want %v", tc.src, tc.key, got, tc.want)
		}
	}
}

func TestResolveFileURLs(t *testing.T) {
	cases := []struct{ in, want string }{
		{"file://./data/in/", "file:///m/dir/data/in/"},
		{"file://./data/in/?create_dir=true", "file:///m/dir/data/in/?create_dir=true"},
		{"file://./w.pth", "file:///m/dir/w.pth"},
		{"file:///abs/in/", "file:///abs/in/"},
		{"s3://b/in/", "s3://b/in/"},
		{"random", "random"},
	}
	for _, c := range cases {
		if got := ResolveFileURL(c.in, "/m/dir"); got != c.want {
			t.Errorf("ResolveFileURL(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	m, err := Parse([]byte(`apiVersion: nst/v1
kind: StyleBatch
metadata: {name: demo}
spec:
  model: {weights: random}
  inputs:
    contents: {url: "file://./data/contents/"}
    styles: {url: "file://./data/styles/"}
  output: {url: "file://./out/"}
`))
	if err != nil {
		t.Fatal(err)
	}
	if got := m.RelativeFileURLs(); len(got) != 3 {
		t.Errorf("RelativeFileURLs = %q, want contents, styles and output", got)
	}
	m.ResolveFileURLs("/m")
	if m.Spec.Inputs.Contents.URL != "file:///m/data/contents/" || m.Spec.Output.URL != "file:///m/out/" || m.Spec.Model.Weights != "random" {
		t.Errorf("resolved: %+v", m.Spec)
	}
	if got := m.RelativeFileURLs(); len(got) != 0 {
		t.Errorf("after resolving: %q", got)
	}
}
