package imaging

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"testing"
)

// pattern returns an opaque w x h image whose every pixel differs from its neighbours.
func pattern(w, h int) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.SetNRGBA(x, y, color.NRGBA{uint8(x * 13), uint8(y * 17), uint8(255 - x*5 - y*3), 255})
		}
	}
	return img
}

// quadrants returns an opaque w x h image whose quadrants are red (top left), green (top
// right), blue (bottom left) and white (bottom right).
func quadrants(w, h int) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			c := color.NRGBA{255, 0, 0, 255}
			switch {
			case x >= w/2 && y < h/2:
				c = color.NRGBA{0, 255, 0, 255}
			case x < w/2 && y >= h/2:
				c = color.NRGBA{0, 0, 255, 255}
			case x >= w/2 && y >= h/2:
				c = color.NRGBA{255, 255, 255, 255}
			}
			img.SetNRGBA(x, y, c)
		}
	}
	return img
}

func encodePNG(t testing.TB, img image.Image) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func encodeJPEG(t testing.TB, img image.Image) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := jpeg.Encode(&b, img, &jpeg.Options{Quality: 100}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// withExif inserts an APP1 EXIF segment holding Orientation o, in byte order "II" or "MM",
// right after the SOI marker of a JPEG.
func withExif(t testing.TB, jpg []byte, order string, o uint16) []byte {
	t.Helper()
	var bo binary.AppendByteOrder = binary.BigEndian
	if order == "II" {
		bo = binary.LittleEndian
	}
	tiff := []byte(order)
	tiff = bo.AppendUint16(tiff, 42)
	tiff = bo.AppendUint32(tiff, 8)
	tiff = bo.AppendUint16(tiff, 2) // two entries: an unrelated tag first, then Orientation
	tiff = bo.AppendUint16(tiff, 0x010f)
	tiff = bo.AppendUint16(tiff, 2)
	tiff = bo.AppendUint32(tiff, 4)
	tiff = append(tiff, 'n', 's', 't', 0)
	tiff = bo.AppendUint16(tiff, 0x0112)
	tiff = bo.AppendUint16(tiff, 3)
	tiff = bo.AppendUint32(tiff, 1)
	tiff = bo.AppendUint16(tiff, o)
	tiff = append(tiff, 0, 0)
	tiff = bo.AppendUint32(tiff, 0)
	seg := append([]byte("Exif\x00\x00"), tiff...)
	out := append([]byte{}, jpg[:2]...)
	out = append(out, 0xff, 0xe1)
	out = binary.BigEndian.AppendUint16(out, uint16(len(seg)+2))
	out = append(out, seg...)
	return append(out, jpg[2:]...)
}

// pngHeader returns a PNG signature and a valid IHDR (correct CRC) claiming w x h 8-bit RGB,
// followed by tail.
func pngHeader(w, h uint32, tail []byte) []byte {
	out := []byte("\x89PNG\r\n\x1a\n")
	data := binary.BigEndian.AppendUint32(nil, w)
	data = binary.BigEndian.AppendUint32(data, h)
	data = append(data, 8, 2, 0, 0, 0)
	chunk := append([]byte("IHDR"), data...)
	out = binary.BigEndian.AppendUint32(out, uint32(len(data)))
	out = append(out, chunk...)
	out = binary.BigEndian.AppendUint32(out, crc32.ChecksumIEEE(chunk))
	return append(out, tail...)
}

// cmykJPEG hand-builds a baseline 8x8 four-component JPEG with an Adobe APP14 segment
// (transform 0: CMYK) whose every pixel is ink c, m, y, k. Adobe stores CMYK inverted.
func cmykJPEG(c, m, y, k uint8) []byte {
	seg := func(marker byte, payload []byte) []byte {
		out := []byte{0xff, marker}
		out = binary.BigEndian.AppendUint16(out, uint16(len(payload)+2))
		return append(out, payload...)
	}
	out := []byte{0xff, 0xd8}
	out = append(out, seg(0xee, []byte("Adobe\x00\x64\x00\x00\x00\x00\x00"))...)
	dqt := []byte{0}
	for range 64 {
		dqt = append(dqt, 1)
	}
	out = append(out, seg(0xdb, dqt)...)
	sof := []byte{8, 0, 8, 0, 8, 4}
	for id := byte(1); id <= 4; id++ {
		sof = append(sof, id, 0x11, 0)
	}
	out = append(out, seg(0xc0, sof)...)
	// DC table: categories 0..11, all 4-bit codes (code = category). AC table: EOB only, "0".
	dc := append([]byte{0x00}, make([]byte, 16)...)
	dc[4] = 12
	for s := byte(0); s < 12; s++ {
		dc = append(dc, s)
	}
	out = append(out, seg(0xc4, dc)...)
	ac := append([]byte{0x10}, make([]byte, 16)...)
	ac[1] = 1
	out = append(out, seg(0xc4, append(ac, 0))...)
	sos := []byte{4}
	for id := byte(1); id <= 4; id++ {
		sos = append(sos, id, 0x00)
	}
	out = append(out, seg(0xda, append(sos, 0, 63, 0))...)

	var bits []bool
	put := func(v uint32, n int) {
		for i := n - 1; i >= 0; i-- {
			bits = append(bits, v>>i&1 == 1)
		}
	}
	for _, ink := range []uint8{c, m, y, k} {
		stored := 255 - int(ink)
		d := 8 * (stored - 128) // DC coefficient giving a flat block of this sample
		cat, mag := 0, d
		if mag < 0 {
			mag = -mag
		}
		for mag>>cat != 0 {
			cat++
		}
		put(uint32(cat), 4)
		if d < 0 {
			d += 1<<cat - 1
		}
		put(uint32(d), cat)
		put(0, 1) // EOB
	}
	for len(bits)%8 != 0 {
		bits = append(bits, true)
	}
	for i := 0; i < len(bits); i += 8 {
		var b byte
		for _, bit := range bits[i : i+8] {
			b <<= 1
			if bit {
				b |= 1
			}
		}
		out = append(out, b)
		if b == 0xff {
			out = append(out, 0)
		}
	}
	return append(out, 0xff, 0xd9)
}

func near(a, b uint8, tol int) bool {
	d := int(a) - int(b)
	return d >= -tol && d <= tol
}
