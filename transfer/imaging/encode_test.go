package imaging

import (
	"bytes"
	"errors"
	"testing"
)

func TestEncodeRoundTrip(t *testing.T) {
	img := pattern(24, 16)
	tests := []struct {
		format  string
		quality int
		tol     int
		wantErr error
	}{
		{"png", 0, 0, nil},
		{"PNG", 0, 0, nil},
		{"jpeg", 100, 12, nil},
		{"jpg", 0, 20, nil},
		{"jpeg", 101, 0, errors.New("quality")},
		{"jpeg", -1, 0, errors.New("quality")},
		{"webp", 0, 0, ErrUnsupported},
		{"", 0, 0, ErrUnsupported},
	}
	for _, tt := range tests {
		var b bytes.Buffer
		err := Encode(&b, img, tt.format, tt.quality)
		if tt.wantErr != nil {
			if err == nil || (errors.Is(tt.wantErr, ErrUnsupported) && !errors.Is(err, ErrUnsupported)) {
				t.Errorf("Encode(%q, %d) = %v, want %v", tt.format, tt.quality, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Fatalf("Encode(%q): %v", tt.format, err)
		}
		got, info, err := Decode(&b, Limits{})
		if err != nil {
			t.Fatal(err)
		}
		if info.Format != normalise(tt.format) || got.Rect != img.Rect {
			t.Fatalf("%s: decoded %+v %v", tt.format, info, got.Rect)
		}
		var sum, n int
		for i := range got.Pix {
			d := int(got.Pix[i]) - int(img.Pix[i])
			sum += d * d
			n++
		}
		if rms := sum / n; rms > tt.tol*tt.tol {
			t.Errorf("%s q%d: mean squared error %d, want <= %d", tt.format, tt.quality, rms, tt.tol*tt.tol)
		}
	}
}

func TestEncodeWriterError(t *testing.T) {
	boom := errors.New("disk full")
	for _, f := range []string{"png", "jpeg"} {
		if err := Encode(&failWriter{boom}, pattern(64, 64), f, 0); !errors.Is(err, boom) {
			t.Errorf("%s: %v, want %v", f, err, boom)
		}
	}
}

type failWriter struct{ err error }

func (w *failWriter) Write([]byte) (int, error) { return 0, w.err }

func TestFormatForNameAndContentType(t *testing.T) {
	tests := []struct {
		name, format, ctype string
		err                 bool
	}{
		{"out/a.png", "png", "image/png", false},
		{"b.JPG", "jpeg", "image/jpeg", false},
		{"dir.v2/c.jpeg", "jpeg", "image/jpeg", false},
		{"d.jpe", "jpeg", "image/jpeg", false},
		{"e.webp", "", "", true},
		{"noext", "", "", true},
		{"f.png.gz", "", "", true},
	}
	for _, tt := range tests {
		f, err := FormatForName(tt.name)
		if (err != nil) != tt.err || f != tt.format {
			t.Errorf("FormatForName(%q) = %q, %v", tt.name, f, err)
		}
		if err != nil && !errors.Is(err, ErrUnsupported) {
			t.Errorf("FormatForName(%q): %v does not wrap ErrUnsupported", tt.name, err)
		}
		if err == nil && ContentType(f) != tt.ctype {
			t.Errorf("ContentType(%q) = %q", f, ContentType(f))
		}
	}
	for f, want := range map[string]string{"gif": "image/gif", "webp": "image/webp", "bmp": "image/bmp", "tiff": "image/tiff", "jpg": "image/jpeg", "xcf": "application/octet-stream"} {
		if got := ContentType(f); got != want {
			t.Errorf("ContentType(%q) = %q, want %q", f, got, want)
		}
	}
}
