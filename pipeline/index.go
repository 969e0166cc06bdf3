package pipeline

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"

	"github.com/sourcegraph/conc/pool"

	"github.com/nst-project/nst/storage"
)

// doneSet holds the index markers of a range of slot hashes, sorted by slot: 24 bytes a
// marker, the only per-item memory a shard keeps of the items it does not run.
type doneSet struct {
	m []marker
	// With verification, per marker: the digest of the outputs the listing found, the kinds
	// found (a bit each) and whether every one came with an MD5.
	found  []outputsDigest
	kinds  []uint8
	noMD5  []bool
	verify bool
}

// readIndex lists the markers of the slot hashes lo..hi under out, one listing per prefix of
// indexPrefixes, ioJobs at a time.
func readIndex(ctx context.Context, out source, lo, hi uint64, ioJobs int) (*doneSet, error) {
	var (
		mu    sync.Mutex
		d     doneSet
		total float64 // the markers in the whole index, estimated
	)
	if lo != 0 || hi != math.MaxUint64 {
		// A first page tells how dense the index is: its last marker's slot hash says what
		// share of the hash space its markers cover. A small index ends within it.
		var probe []marker
		err := out.bucket.List(ctx, out.prefix+indexDir, func(o storage.Object) error {
			if m, ok := parseMarker(strings.TrimPrefix(o.Key, out.prefix+indexDir)); ok {
				probe = append(probe, m)
			}
			if len(probe) == probeMarkers {
				return errStop
			}
			return nil
		})
		switch {
		case err == nil:
			for _, m := range probe {
				if m.slot >= lo && m.slot <= hi {
					d.m = append(d.m, m)
				}
			}
			d.sort()
			return &d, nil
		case !errors.Is(err, errStop):
			return nil, fmt.Errorf("read the done index: %w", err)
		}
		total = probeMarkers * (1 << 64) / (float64(probe[len(probe)-1].slot) + 1)
	}
	p := pool.New().WithErrors().WithContext(ctx).WithMaxGoroutines(ioJobs)
	for _, pre := range indexPrefixes(lo, hi, total) {
		p.Go(func(ctx context.Context) error {
			var ms []marker
			err := out.bucket.List(ctx, out.prefix+indexDir+pre, func(o storage.Object) error {
				m, ok := parseMarker(strings.TrimPrefix(o.Key, out.prefix+indexDir))
				if ok && m.slot >= lo && m.slot <= hi {
					ms = append(ms, m)
				}
				return nil
			})
			if err != nil {
				return fmt.Errorf("read the done index: %w", err)
			}
			mu.Lock()
			d.m = append(d.m, ms...)
			mu.Unlock()
			return nil
		})
	}
	if err := p.Wait(); err != nil {
		return nil, err
	}
	d.sort()
	return &d, nil
}

// probeMarkers is how many markers readIndex reads to judge the index's size.
const probeMarkers = 1000

func (d *doneSet) sort() {
	slices.SortFunc(d.m, func(a, b marker) int { return cmp.Or(cmp.Compare(a.slot, b.slot), cmp.Compare(a.id, b.id)) })
	d.m = slices.Clone(d.m) // exactly as long: the appends left up to twice the room
}

// lookup returns the positions of slot h's markers.
func (d *doneSet) lookup(h uint64) (first, end int) {
	first, _ = slices.BinarySearchFunc(d.m, h, func(m marker, h uint64) int { return cmp.Compare(m.slot, h) })
	end = first
	for end < len(d.m) && d.m[end].slot == h {
		end++
	}
	return first, end
}

// state classifies slot h for item ID id: done (a marker of id whose outputs, when verified,
// are as written), damaged (such a marker, outputs changed), stale (only markers of other
// IDs, returned) or new (no marker).
func (d *doneSet) state(h uint64, id uint64) (st indexState, others []marker) {
	first, end := d.lookup(h)
	mine, intact := false, false
	for i := first; i < end; i++ {
		m := d.m[i]
		if m.id != id {
			others = append(others, m)
			continue
		}
		// Two runs at once can leave two markers of one ID (their provenances differ in
		// their times): one whose outputs are intact is enough.
		mine = true
		intact = intact || !d.verify || d.intact(i)
	}
	switch {
	case mine && intact:
		return indexDone, others
	case mine:
		return indexDamaged, others
	case len(others) > 0:
		return indexStale, others
	}
	return indexNew, nil
}

type indexState int

const (
	indexNew indexState = iota
	indexDone
	indexDamaged
	indexStale
)

// intact reports whether the outputs listed for marker i are those it recorded.
func (d *doneSet) intact(i int) bool {
	if d.kinds[i] != 1<<numKinds-1 {
		return false
	}
	if d.found[i].sizes() != d.m[i].digest.sizes() {
		return false
	}
	return d.noMD5[i] || d.found[i].md5s() == d.m[i].digest.md5s()
}

// verifyOutputs lists the outputs of every preset and folds each object into the marker of
// its slot (markers of other slots, and objects that are no output, are ignored), so that
// state can tell damaged slots. It costs one request per 1000 output objects, four per item.
// noMD5 makes it compare sizes only (Options.NoMD5Check: stores whose ETags are no MD5).
func (d *doneSet) verifyOutputs(ctx context.Context, cat *catalogue, noMD5 bool) error {
	d.verify = true
	d.found = make([]outputsDigest, len(d.m))
	d.kinds = make([]uint8, len(d.m))
	d.noMD5 = make([]bool, len(d.m))
	if noMD5 {
		for i := range d.noMD5 {
			d.noMD5[i] = true
		}
	}
	imageExt := ".png"
	if cat.m.Spec.Output.Format != "png" {
		imageExt = ".jpg"
	}
	for _, preset := range cat.presets {
		dir := cat.out.prefix + preset.Name + "/"
		err := cat.out.bucket.List(ctx, dir, func(o storage.Object) error {
			rel := strings.TrimPrefix(o.Key, cat.out.prefix)
			kind, base := outputKind(rel, imageExt)
			if kind < 0 {
				return nil
			}
			first, end := d.lookup(slotHash(base))
			for i := first; i < end; i++ {
				d.found[i] ^= outputTerm(kind, o.Size, o.MD5)
				d.kinds[i] |= 1 << kind
				if len(o.MD5) == 0 {
					d.noMD5[i] = true
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("verify outputs: list %s: %w", dir, err)
		}
	}
	return nil
}

// outputKind returns the kind of an output key (relative to the output prefix) and its slot,
// or -1 for a key that is no output. Style stems ending in ".loss" are refused (see
// lossStemError), so ".loss.png" is always a loss plot.
func outputKind(rel, imageExt string) (int, string) {
	for _, k := range []struct {
		suffix string
		kind   int
	}{{".loss.jsonl", kindLossLog}, {".loss.png", kindLossPlot}, {".json", kindProvenance}, {imageExt, kindImage}} {
		if base, ok := strings.CutSuffix(rel, k.suffix); ok {
			return k.kind, base
		}
	}
	return -1, ""
}

// markerBody is what a marker holds, for people: the index itself is read from keys alone.
type markerBody struct {
	Slot    string           `json:"slot"`
	ID      string           `json:"id"`
	Outputs map[string]int64 `json:"outputs"` // key -> size
}

// writeMarker records item it as done with the outputs objs (OutputKeys order).
func (r *runner) writeMarker(ctx context.Context, it *item, objs [numKinds]storage.Object) error {
	var d outputsDigest
	body := markerBody{Slot: strings.TrimPrefix(strings.TrimSuffix(it.keys.Provenance, ".json"), r.cat.out.prefix), ID: it.pair.ID,
		Outputs: map[string]int64{}}
	for kind, o := range objs {
		d ^= outputTerm(kind, o.Size, o.MD5)
		body.Outputs[strings.TrimPrefix(o.Key, r.cat.out.prefix)] = o.Size
	}
	data, err := json.Marshal(body)
	if err != nil {
		return err
	}
	m := marker{slot: it.slot, id: parseID(it.pair.ID), digest: d}
	err = r.cat.out.bucket.WriteOnce(ctx, m.key(r.cat.out.prefix), append(data, '\n'), storage.WriteOptions{ContentType: "application/json",
		Metadata: map[string]string{metaID: it.pair.ID}})
	if errors.Is(err, storage.ErrExists) {
		return nil // the same slot, ID and outputs: an earlier attempt wrote it
	}
	return err
}

// deleteMarkers removes markers of a slot (before its outputs are overwritten, so that the
// index never names an ID whose outputs are gone).
func (r *runner) deleteMarkers(ctx context.Context, ms []marker) error {
	for _, m := range ms {
		if err := r.cat.out.bucket.Delete(ctx, m.key(r.cat.out.prefix)); err != nil && !errors.Is(err, storage.ErrNotFound) {
			return fmt.Errorf("delete index marker: %w", err)
		}
	}
	return nil
}
