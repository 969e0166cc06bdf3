// Package imaging decodes, encodes, resizes and recolours the images nst works on, in pure Go.
//
// Untrusted bytes only ever reach Go's memory-safe decoders (image/jpeg, image/png, image/gif
// and golang.org/x/image's webp, bmp and tiff), chosen by this package's own table of
// signatures rather than the process-wide image.RegisterFormat registry, so a decoder some
// other import registers never sees them. Sizes are checked from the header, with
// image.DecodeConfig, before any pixel is allocated.
//
// Every function returns new images or, where documented, its argument unchanged; none keeps
// a reference to its inputs, and all are safe for concurrent use.
package imaging

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/gif"
	"image/jpeg"
	"image/png"
	"io"

	"golang.org/x/image/bmp"
	"golang.org/x/image/tiff"
	"golang.org/x/image/webp"
)

// Errors Decode returns, for errors.Is. The returned error says what was found.
var (
	// ErrTooLarge: the input has more bytes, pixels or a longer side than the Limits allow.
	ErrTooLarge = errors.New("image too large")
	// ErrTooSmall: a side of the image is shorter than Limits.MinSide.
	ErrTooSmall = errors.New("image too small")
	// ErrUnsupported: the bytes are not in a format this package decodes (or encodes), or use
	// a feature of it that Go's decoder does not support (e.g. 12-bit JPEG).
	ErrUnsupported = errors.New("unsupported image format")
	// ErrCorrupt: the bytes start like a known format but are truncated or malformed. The
	// decoder's own error is wrapped too.
	ErrCorrupt = errors.New("corrupt image")
)

// Limits bound what Decode accepts. A field <= 0 takes DefaultLimits' value, so the zero
// Limits means the defaults.
type Limits struct {
	MaxBytes  int64 // longest input, in bytes
	MaxPixels int64 // most pixels (width*height)
	MaxSide   int   // longest side, in pixels
	MinSide   int   // shortest side allowed, in pixels
}

// DefaultLimits returns 256 MiB, 80 megapixels, 20000 pixels a side, at least 1 pixel a side.
func DefaultLimits() Limits {
	return Limits{MaxBytes: 256 << 20, MaxPixels: 80_000_000, MaxSide: 20000, MinSide: 1}
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	if l.MaxBytes <= 0 {
		l.MaxBytes = d.MaxBytes
	}
	if l.MaxPixels <= 0 {
		l.MaxPixels = d.MaxPixels
	}
	if l.MaxSide <= 0 {
		l.MaxSide = d.MaxSide
	}
	if l.MinSide <= 0 {
		l.MinSide = d.MinSide
	}
	return l
}

// Info describes a decoded image.
type Info struct {
	Format string // "jpeg", "png", "gif", "webp", "bmp" or "tiff"
	// Width and Height are the decoded image's, after Orientation was applied.
	Width, Height int
	// Orientation is the EXIF orientation (1..8) that was applied; 1 when there was none.
	Orientation int
}

// format is one decoder this package trusts.
type format struct {
	name   string
	magic  []string // '?' matches any byte
	decode func(io.Reader) (image.Image, error)
	config func(io.Reader) (image.Config, error)
}

// formats lists the decoders, by signature. It is a function, not a variable, so no state
// is shared.
func formats() []format {
	return []format{
		{"jpeg", []string{"\xff\xd8"}, jpeg.Decode, jpeg.DecodeConfig},
		{"png", []string{"\x89PNG\r\n\x1a\n"}, png.Decode, png.DecodeConfig},
		{"gif", []string{"GIF87a", "GIF89a"}, gif.Decode, gif.DecodeConfig},
		{"webp", []string{"RIFF????WEBPVP8"}, webp.Decode, webp.DecodeConfig},
		{"bmp", []string{"BM????\x00\x00\x00\x00"}, bmp.Decode, bmp.DecodeConfig},
		{"tiff", []string{"II*\x00", "MM\x00*"}, tiff.Decode, tiff.DecodeConfig},
	}
}

func match(magic string, b []byte) bool {
	if len(magic) > len(b) {
		return false
	}
	for i := range len(magic) {
		if magic[i] != '?' && magic[i] != b[i] {
			return false
		}
	}
	return true
}

func sniff(b []byte) (format, bool) {
	for _, f := range formats() {
		for _, m := range f.magic {
			if match(m, b) {
				return f, true
			}
		}
	}
	return format{}, false
}

// limitReader reads at most n bytes from r and remembers whether r had more.
type limitReader struct {
	r        io.Reader
	n        int64 // bytes still allowed
	max      int64
	exceeded bool
}

func (l *limitReader) Read(p []byte) (int, error) {
	if l.exceeded {
		return 0, l.err()
	}
	if int64(len(p)) > l.n+1 {
		p = p[:l.n+1]
	}
	n, err := l.r.Read(p)
	if int64(n) > l.n {
		n = int(l.n)
		l.n = 0
		l.exceeded = true
		return n, l.err()
	}
	l.n -= int64(n)
	return n, err
}

func (l *limitReader) err() error {
	return fmt.Errorf("%w: input is over the limit of %d bytes", ErrTooLarge, l.max)
}

// Decode reads one image from r and returns it as an opaque 8-bit *image.NRGBA with its
// origin at (0, 0), upright.
//
// It reads at most lim.MaxBytes bytes and fails with ErrTooLarge if r holds more, even when
// the image would decode from fewer. Before any pixel is decoded it reads the header with the
// format's DecodeConfig and refuses, with ErrTooLarge, width*height over lim.MaxPixels or a
// side over lim.MaxSide, and, with ErrTooSmall, a side under lim.MinSide; so a file claiming
// a huge image fails after reading and allocating a few kilobytes (TIFF, whose header may sit
// anywhere, after reading the whole input, at most MaxBytes). Decode does not close r.
//
// Formats: JPEG (baseline, progressive, grey, YCbCr, CMYK/YCCK), PNG (every colour type and
// depth), GIF (the first frame only, for an animated GIF), WebP (lossy and lossless), BMP and
// TIFF. A JPEG's EXIF Orientation tag (APP1, values 1..8, in the segments before the frame
// header) is applied, so the result is as a viewer shows it; other formats are not rotated.
//
// Colour: 16-bit samples keep their high byte; grey, CMYK, YCbCr and paletted pixels are
// converted to RGB. Alpha is dropped as PIL's convert("RGB") drops it: straight-alpha sources
// (PNG with alpha, GIF/PNG palettes) keep their stored colour even where fully transparent,
// premultiplied ones are unpremultiplied; every result pixel has alpha 255.
//
// Errors wrap ErrTooLarge, ErrTooSmall, ErrUnsupported (unknown format, or a feature Go's
// decoder lacks) or ErrCorrupt (empty, truncated or malformed, with the decoder's error), or
// are r's own read error.
func Decode(r io.Reader, lim Limits) (*image.NRGBA, Info, error) {
	lim = lim.withDefaults()
	lr := &limitReader{r: r, n: lim.MaxBytes, max: lim.MaxBytes}
	br := bufio.NewReaderSize(lr, 64)
	head, err := br.Peek(16)
	if lr.exceeded {
		return nil, Info{}, lr.err()
	}
	if len(head) == 0 {
		if err != nil && err != io.EOF {
			return nil, Info{}, fmt.Errorf("read image: %w", err)
		}
		return nil, Info{}, fmt.Errorf("%w: empty input", ErrCorrupt)
	}
	f, ok := sniff(head)
	if !ok {
		if err != nil && err != io.EOF {
			return nil, Info{}, fmt.Errorf("read image: %w", err)
		}
		// Say what was seen without quoting it: the bytes may be anything a symlink or a
		// careless upload pointed at (a key, a password file), and errors reach summaries.
		return nil, Info{}, fmt.Errorf("%w: unknown format: the first %d bytes match no JPEG, PNG, GIF, WebP, BMP or TIFF signature", ErrUnsupported, len(head))
	}
	info := Info{Format: f.name, Orientation: 1}

	// The header, kept to replay to the decoder and to find the EXIF orientation in.
	var seen bytes.Buffer
	cfg, err := f.config(io.TeeReader(br, &seen))
	if err != nil {
		return nil, info, decodeError(lr, f.name, "header", err)
	}
	if err := checkSize(cfg.Width, cfg.Height, lim); err != nil {
		return nil, info, err
	}
	if f.name == "jpeg" {
		info.Orientation = jpegOrientation(seen.Bytes())
	}

	img, err := f.decode(io.MultiReader(&seen, br))
	if err != nil {
		return nil, info, decodeError(lr, f.name, "pixels", err)
	}
	// Refuse trailing bytes beyond the limit, so the byte limit does not depend on how much
	// of its input a decoder happens to read.
	if _, err := io.Copy(io.Discard, br); err != nil {
		if lr.exceeded {
			return nil, info, lr.err()
		}
		return nil, info, fmt.Errorf("read image: %w", err)
	}
	// The pixels need not match the header: a GIF's first frame may be smaller than its logical
	// screen, or empty.
	if b := img.Bounds(); b.Dx() != cfg.Width || b.Dy() != cfg.Height {
		if b.Dx() <= 0 || b.Dy() <= 0 {
			return nil, info, fmt.Errorf("%w: the header says %dx%d pixels, the image holds %dx%d", ErrCorrupt, cfg.Width, cfg.Height, b.Dx(), b.Dy())
		}
		if err := checkSize(b.Dx(), b.Dy(), lim); err != nil {
			return nil, info, err
		}
	}
	out := orient(ToNRGBA(img), info.Orientation)
	info.Width, info.Height = out.Rect.Dx(), out.Rect.Dy()
	return out, info, nil
}

func checkSize(w, h int, lim Limits) error {
	switch {
	case w <= 0 || h <= 0:
		return fmt.Errorf("%w: header says %dx%d pixels", ErrCorrupt, w, h)
	case int64(w)*int64(h) > lim.MaxPixels:
		return fmt.Errorf("%w: image is %dx%d pixels, over the limit of %d", ErrTooLarge, w, h, lim.MaxPixels)
	case max(w, h) > lim.MaxSide:
		return fmt.Errorf("%w: image is %dx%d pixels, a side over the limit of %d", ErrTooLarge, w, h, lim.MaxSide)
	case min(w, h) < lim.MinSide:
		return fmt.Errorf("%w: image is %dx%d pixels, a side under the minimum of %d", ErrTooSmall, w, h, lim.MinSide)
	}
	return nil
}

// decodeError classifies a decoder's error.
func decodeError(lr *limitReader, name, part string, err error) error {
	if lr.exceeded {
		return lr.err()
	}
	var (
		jpegU jpeg.UnsupportedError
		pngU  png.UnsupportedError
		tiffU tiff.UnsupportedError
	)
	if errors.As(err, &jpegU) || errors.As(err, &pngU) || errors.As(err, &tiffU) {
		return fmt.Errorf("%w: %s %s: %w", ErrUnsupported, name, part, err)
	}
	if errors.Is(err, bmp.ErrUnsupported) {
		return fmt.Errorf("%w: %s %s: %w", ErrUnsupported, name, part, err)
	}
	return fmt.Errorf("%w: %s %s: %w", ErrCorrupt, name, part, err)
}
