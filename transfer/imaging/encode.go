package imaging

import (
	"fmt"
	"image"
	"image/jpeg"
	"image/png"
	"io"
	"path"
	"strings"
)

// DefaultJPEGQuality is the quality Encode uses for JPEG when asked for 0.
const DefaultJPEGQuality = 92

// Encode writes img to w as format "png" or "jpeg" (or "jpg"). jpegQuality is 1..100, or 0
// for DefaultJPEGQuality; PNG ignores it. JPEG has no alpha: encode opaque images (Decode's
// results are). Other formats fail with ErrUnsupported; w's errors are returned wrapped.
// Encode does not close w.
func Encode(w io.Writer, img image.Image, format string, jpegQuality int) error {
	switch normalise(format) {
	case "png":
		if err := png.Encode(w, img); err != nil {
			return fmt.Errorf("encode png: %w", err)
		}
	case "jpeg":
		q := jpegQuality
		if q == 0 {
			q = DefaultJPEGQuality
		}
		if q < 1 || q > 100 {
			return fmt.Errorf("encode jpeg: quality %d is outside 1..100", jpegQuality)
		}
		if err := jpeg.Encode(w, img, &jpeg.Options{Quality: q}); err != nil {
			return fmt.Errorf("encode jpeg: %w", err)
		}
	default:
		return fmt.Errorf("%w: cannot encode %q (want png or jpeg)", ErrUnsupported, format)
	}
	return nil
}

func normalise(format string) string {
	f := strings.ToLower(strings.TrimSpace(format))
	if f == "jpg" {
		return "jpeg"
	}
	return f
}

// FormatForName returns the format Encode writes for a file or object name, by its extension
// (case-insensitive): ".png" gives "png", ".jpg", ".jpeg" and ".jpe" give "jpeg". Any other
// extension, or none, fails with ErrUnsupported.
func FormatForName(name string) (string, error) {
	ext := strings.ToLower(path.Ext(name))
	switch ext {
	case ".png":
		return "png", nil
	case ".jpg", ".jpeg", ".jpe":
		return "jpeg", nil
	case "":
		return "", fmt.Errorf("%w: %q has no extension (want .png or .jpg)", ErrUnsupported, name)
	}
	return "", fmt.Errorf("%w: cannot write %s for %q (want .png or .jpg)", ErrUnsupported, ext, name)
}

// ContentType returns the MIME type of a format name as Info.Format or FormatForName give it
// ("jpg" too), or "application/octet-stream" for an unknown one.
func ContentType(format string) string {
	switch normalise(format) {
	case "png":
		return "image/png"
	case "jpeg":
		return "image/jpeg"
	case "gif":
		return "image/gif"
	case "webp":
		return "image/webp"
	case "bmp":
		return "image/bmp"
	case "tiff":
		return "image/tiff"
	}
	return "application/octet-stream"
}
