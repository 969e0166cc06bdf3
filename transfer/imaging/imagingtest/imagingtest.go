// Package imagingtest builds the image files that Go's encoders cannot write and that tests of
// the decoder and of the pipeline need: JPEGs with an EXIF orientation, CMYK JPEGs, and PNG
// headers that claim any size. It is imported by tests only.
package imagingtest

import (
	"encoding/binary"
	"hash/crc32"
)

// WithExif inserts an APP1 EXIF segment holding Orientation o, in byte order "II" or "MM",
// right after the SOI marker of a JPEG. The IFD has an unrelated tag before Orientation.
func WithExif(jpg []byte, order string, o uint16) []byte {
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

// PNGHeader returns a PNG signature and a valid IHDR (correct CRC) claiming w x h 8-bit RGB,
// followed by tail.
func PNGHeader(w, h uint32, tail []byte) []byte {
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

// CMYKJPEG hand-builds a baseline side x side (a multiple of 8) four-component JPEG with an
// Adobe APP14 segment (transform 0: CMYK) whose every pixel is ink c, m, y, k (Go's encoder
// writes no CMYK). Adobe stores CMYK inverted. One 8x8 MCU per block; the DC differences after
// the first MCU are 0.
func CMYKJPEG(side int, c, m, y, k uint8) []byte {
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
	sof := []byte{8}
	sof = binary.BigEndian.AppendUint16(sof, uint16(side))
	sof = binary.BigEndian.AppendUint16(sof, uint16(side))
	sof = append(sof, 4)
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
	for mcu := range (side / 8) * (side / 8) {
		for _, ink := range []uint8{c, m, y, k} {
			d := 0
			if mcu == 0 {
				d = 8 * (255 - int(ink) - 128) // DC coefficient giving a flat block of this sample
			}
			cat, mag := 0, max(d, -d)
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
