package imaging

import (
	"bytes"
	"encoding/binary"
	"image"
)

// jpegOrientation returns the EXIF Orientation (1..8) found in the APP1 "Exif" segment among
// the JPEG segments in b before the first scan, or 1 if there is none or it is malformed. It
// reads only within b and never panics on any input.
//
// A hand parser of this one tag, rather than an EXIF library: the Go ones either panicked on
// malformed input found by fuzzing (rwcarlsen/goexif#49, with its author inactive) or recover
// panics internally and pull in a logging stack (dsoprea/go-exif#6, #55).
func jpegOrientation(b []byte) int {
	if len(b) < 2 || b[0] != 0xff || b[1] != 0xd8 {
		return 1
	}
	i := 2
	for i+4 <= len(b) {
		if b[i] != 0xff {
			return 1
		}
		m := b[i+1]
		switch {
		case m == 0xff: // fill byte
			i++
			continue
		case m == 0x01 || (m >= 0xd0 && m <= 0xd7): // standalone markers
			i += 2
			continue
		case m == 0xda || m == 0xd9: // start of scan, end of image
			return 1
		}
		n := int(binary.BigEndian.Uint16(b[i+2:]))
		if n < 2 || i+2+n > len(b) {
			return 1
		}
		seg := b[i+4 : i+2+n]
		if m == 0xe1 && bytes.HasPrefix(seg, []byte("Exif\x00\x00")) {
			return tiffOrientation(seg[6:])
		}
		i += 2 + n
	}
	return 1
}

// tiffOrientation reads tag 0x0112 from IFD0 of a TIFF structure (EXIF's container).
func tiffOrientation(t []byte) int {
	if len(t) < 8 {
		return 1
	}
	var bo binary.ByteOrder
	switch string(t[:2]) {
	case "II":
		bo = binary.LittleEndian
	case "MM":
		bo = binary.BigEndian
	default:
		return 1
	}
	if bo.Uint16(t[2:]) != 42 {
		return 1
	}
	off := uint64(bo.Uint32(t[4:]))
	if off+2 > uint64(len(t)) {
		return 1
	}
	n := uint64(bo.Uint16(t[off:]))
	for k := range n {
		e := off + 2 + 12*k
		if e+12 > uint64(len(t)) {
			return 1
		}
		ent := t[e : e+12]
		if bo.Uint16(ent) != 0x0112 {
			continue
		}
		// SHORT (type 3), count 1: the value sits in the first two bytes of the value field.
		if bo.Uint16(ent[2:]) != 3 || bo.Uint32(ent[4:]) < 1 {
			return 1
		}
		if v := int(bo.Uint16(ent[8:])); v >= 1 && v <= 8 {
			return v
		}
		return 1
	}
	return 1
}

// orient returns src as displayed under EXIF orientation o, or src itself for 1 (or an
// unknown value). 2 mirrors left-right, 3 rotates 180°, 4 mirrors top-bottom, 5 transposes,
// 6 rotates 90° clockwise, 7 transverses, 8 rotates 90° anticlockwise; src starts at (0, 0).
func orient(src *image.NRGBA, o int) *image.NRGBA {
	if o < 2 || o > 8 {
		return src
	}
	w, h := src.Rect.Dx(), src.Rect.Dy()
	dw, dh := w, h
	if o >= 5 {
		dw, dh = h, w
	}
	dst := image.NewNRGBA(image.Rect(0, 0, dw, dh))
	for y := range dh {
		for x := range dw {
			var sx, sy int
			switch o {
			case 2:
				sx, sy = w-1-x, y
			case 3:
				sx, sy = w-1-x, h-1-y
			case 4:
				sx, sy = x, h-1-y
			case 5:
				sx, sy = y, x
			case 6:
				sx, sy = y, h-1-x
			case 7:
				sx, sy = w-1-y, h-1-x
			case 8:
				sx, sy = w-1-y, x
			}
			copy(dst.Pix[y*dst.Stride+4*x:][:4], src.Pix[sy*src.Stride+4*sx:][:4])
		}
	}
	return dst
}
