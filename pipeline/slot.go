package pipeline

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
	"strconv"
	"strings"
)

// A slot is the place of one work item's outputs: "<preset>/<content stem>__<style stem>"
// under the output prefix, to which OutputKeys add ".png", ".loss.jsonl", ".loss.png" and
// ".json". Its hash, the first 8 bytes of a SHA-256 of the slot, decides the item's shard and
// names its index markers and checkpoints. Two items with the same slot would write the same
// keys; since they have the same hash, they always meet in the same shard, which refuses them.
const slotHashVersion = "nst-slot-v1\x00"

// slotHash returns the hash of slot base (relative to the output prefix).
func slotHash(base string) uint64 {
	h := sha256.New()
	h.Write([]byte(slotHashVersion))
	h.Write([]byte(base))
	var sum [sha256.Size]byte
	return binary.BigEndian.Uint64(h.Sum(sum[:0]))
}

// shardOf returns the shard of n that owns slot hash h. Shards are contiguous, equal ranges of
// the 64-bit hash space: shard i takes the hashes h with floor(h*n/2^64) = i. A slot keeps its
// shard when the catalogue grows, every slot belongs to exactly one shard, and each shard's
// index markers are one contiguous run of keys (see indexPrefixes).
func shardOf(h uint64, n int) int {
	hi, _ := bits.Mul64(h, uint64(n))
	return int(hi)
}

// shardRange returns the first and last slot hash of shard i of n (inclusive).
func shardRange(i, n int) (lo, hi uint64) {
	start := func(i int) uint64 {
		if i == 0 {
			return 0
		}
		q, r := bits.Div64(uint64(i), 0, uint64(n))
		if r != 0 {
			q++
		}
		return q
	}
	lo = start(i)
	if i == n-1 {
		return lo, math.MaxUint64
	}
	return lo, start(i+1) - 1
}

// The done index lives under the output prefix:
//
//	_index/v1/<slot hash>.<item ID>.<outputs digest>
//
// one empty-bodied marker per done item (16 hex digits each), written after the item's
// provenance. Listing a shard's markers tells which of its slots are done, and with which
// item ID, at one request per 1000 items and without reading any provenance. The outputs
// digest folds the size and MD5 of the image, loss log, loss plot and provenance as they
// were written, so that a listing of the outputs (Config.Verify) can tell a damaged slot.
const indexDir = "_index/v1/"

// marker is one parsed index marker.
type marker struct {
	slot   uint64
	id     uint64
	digest outputsDigest
}

// outputsDigest folds a slot's outputs: the high 32 bits over their kinds and sizes, the low
// 32 bits over their kinds and MD5s. Each output contributes one term, XORed, so the digest
// can be accumulated from a listing in any order.
type outputsDigest uint64

// outputTerm is one output's contribution to an outputsDigest.
func outputTerm(kind int, size int64, md5 []byte) outputsDigest {
	var b [9]byte
	b[0] = byte(kind)
	binary.BigEndian.PutUint64(b[1:], uint64(size))
	s := sha256.Sum256(b[:])
	m := sha256.Sum256(append([]byte{byte(kind), 'm'}, md5...))
	return outputsDigest(uint64(binary.BigEndian.Uint32(s[:4]))<<32 | uint64(binary.BigEndian.Uint32(m[:4])))
}

// sizes and md5s split a digest into its two halves.
func (d outputsDigest) sizes() uint32 { return uint32(d >> 32) }
func (d outputsDigest) md5s() uint32  { return uint32(d) }

// Output kinds, in OutputKeys order, for outputTerm.
const (
	kindImage = iota
	kindLossLog
	kindLossPlot
	kindProvenance
	numKinds
)

func (m marker) key(prefix string) string {
	return fmt.Sprintf("%s%s%016x.%016x.%016x", prefix, indexDir, m.slot, m.id, uint64(m.digest))
}

// parseMarker parses a marker key's name (after indexDir).
func parseMarker(name string) (marker, bool) {
	parts := strings.Split(name, ".")
	if len(parts) != 3 {
		return marker{}, false
	}
	var v [3]uint64
	for i, p := range parts {
		if len(p) != 16 {
			return marker{}, false
		}
		n, err := strconv.ParseUint(p, 16, 64)
		if err != nil {
			return marker{}, false
		}
		v[i] = n
	}
	return marker{slot: v[0], id: v[1], digest: outputsDigest(v[2])}, true
}

// parseID turns an item ID (16 hex digits) into its number.
func parseID(id string) uint64 {
	n, _ := strconv.ParseUint(id, 16, 64)
	return n
}

// indexPrefixes returns the key prefixes (relative to indexDir) to list for the markers of
// the slot hashes lo..hi when the whole index holds about total markers: all of them ("")
// for the whole space, else the hex prefixes of the depth that makes the fewest requests,
// counting a request per prefix (plus half a page for its last, partial one) and a request per
// 1000 markers listed, those outside the range at its two ends included.
func indexPrefixes(lo, hi uint64, total float64) []string {
	if lo == 0 && hi == math.MaxUint64 {
		return []string{""}
	}
	best, bestCost := 0, total/1000+1
	for d := 1; d <= 8; d++ {
		shift := 64 - 4*d
		n := float64(hi>>shift-lo>>shift) + 1
		listed := total * n / float64(uint64(1)<<(4*d)) // the prefixes' share of the markers
		if cost := 1.5*n + listed/1000; cost < bestCost {
			best, bestCost = d, cost
		}
	}
	if best == 0 {
		return []string{""}
	}
	shift := 64 - 4*best
	var out []string
	for p := lo >> shift; ; p++ {
		out = append(out, fmt.Sprintf("%0*x", best, p))
		if p == hi>>shift {
			break
		}
	}
	return out
}

// ckptDir holds checkpoints: _checkpoints/<slot hash>.<item ID>.ckpt. Keys of nst versions
// before the done index, _checkpoints/<item ID>.ckpt, are still read.
const ckptDir = "_checkpoints/"

func ckptKey(prefix string, slot uint64, id string) string {
	return fmt.Sprintf("%s%s%016x.%s.ckpt", prefix, ckptDir, slot, id)
}
