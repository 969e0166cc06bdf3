package pipeline

import (
	"context"
	"fmt"
	"path"
	"slices"
	"strings"
	"sync"

	"github.com/nst-project/nst/storage"
)

// shardItem is one item of a shard, as a pass over the pairs sees it.
type shardItem struct {
	slot uint64
	item *item // nil unless the pass builds items
	// err says why the item cannot run: an input that cannot be used, keys that would escape
	// the output prefix, a style whose outputs would take another's loss-plot names.
	err error
}

// forEachShardItem streams the items of shard i of n (every shard when n is 0) to fn, building
// each item only if build. fn's errors come back unchanged.
func forEachShardItem(ctx context.Context, cat *catalogue, i, n int, build bool, fn func(shardItem) error) error {
	return cat.forEachPair(ctx, func(p pairIn) error {
		for pi := range cat.presets {
			keys, h, err := cat.slotOf(p, pi)
			if err != nil {
				// No slot: shard the item by its names, so that exactly one shard reports it.
				h = slotHash("\x00unplaced\x00" + p.content.key + "\x00" + p.style.key + "\x00" + cat.presets[pi].Name)
			}
			if n > 0 && shardOf(h, n) != i {
				continue
			}
			si := shardItem{slot: h, err: err}
			if si.err == nil {
				si.err = cmpErr(p.content.err, "content", p.style.err, "style")
			}
			if build {
				si.item = cat.newItem(p, pi, keys, h)
			}
			if err := fn(si); err != nil {
				return err
			}
		}
		return nil
	})
}

// cmpErr returns the first non-nil input error, saying which input it is.
func cmpErr(a error, aw string, b error, bw string) error {
	switch {
	case a != nil:
		return fmt.Errorf("%s: %w", aw, a)
	case b != nil:
		return fmt.Errorf("%s: %w", bw, b)
	}
	return nil
}

// shardScan is the first pass over a shard's items: their slot hashes, sorted (8 bytes an
// item), to count them and to find slots that more than one item would write.
type shardScan struct {
	hashes   []uint64
	consumed []uint64 // a bit per hash: met by the second pass
	collided map[uint64]struct{}
	planned  int
}

func scanShard(ctx context.Context, cat *catalogue, i, n int) (*shardScan, error) {
	s := &shardScan{collided: map[uint64]struct{}{}}
	err := forEachShardItem(ctx, cat, i, n, false, func(si shardItem) error {
		s.hashes = append(s.hashes, si.slot)
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.Sort(s.hashes)
	s.hashes = slices.Clone(s.hashes) // exactly as long: the appends left up to twice the room
	for k := 1; k < len(s.hashes); k++ {
		if s.hashes[k] == s.hashes[k-1] {
			s.collided[s.hashes[k]] = struct{}{}
		}
	}
	s.consumed = make([]uint64, (len(s.hashes)+63)/64)
	s.planned = len(s.hashes)
	return s, nil
}

// has reports whether the first pass met slot h.
func (s *shardScan) has(h uint64) bool {
	_, ok := slices.BinarySearch(s.hashes, h)
	return ok
}

// consume marks one of the first pass's items of slot h as met again; false when none is left.
func (s *shardScan) consume(h uint64) bool {
	i, ok := slices.BinarySearch(s.hashes, h)
	if !ok {
		return false
	}
	for ; i < len(s.hashes) && s.hashes[i] == h; i++ {
		if s.consumed[i/64]&(1<<(i%64)) == 0 {
			s.consumed[i/64] |= 1 << (i % 64)
			return true
		}
	}
	return false
}

// markersOf returns the markers of slot h.
func (d *doneSet) markersOf(h uint64) []marker {
	first, end := d.lookup(h)
	return slices.Clone(d.m[first:end])
}

// checkpoints are the checkpoint keys of a shard's slots, listed once per run: only items
// that were interrupted have one.
type checkpoints struct {
	prefix string
	mu     sync.Mutex
	bySlot map[uint64][]string
	byID   map[string]string // keys of nst versions before the index: _checkpoints/<ID>.ckpt
}

func listCheckpoints(ctx context.Context, out source, lo, hi uint64) (*checkpoints, error) {
	c := &checkpoints{prefix: out.prefix, bySlot: map[uint64][]string{}, byID: map[string]string{}}
	err := out.bucket.List(ctx, out.prefix+ckptDir, func(o storage.Object) error {
		name, ok := strings.CutSuffix(path.Base(o.Key), ".ckpt")
		if !ok {
			return nil
		}
		slot, id, two := strings.Cut(name, ".")
		if !two {
			if len(slot) == 16 {
				c.byID[slot] = o.Key
			}
			return nil
		}
		m, ok := parseMarker(slot + "." + id + ".0000000000000000")
		if ok && m.slot >= lo && m.slot <= hi {
			c.bySlot[m.slot] = append(c.bySlot[m.slot], o.Key)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list checkpoints: %w", err)
	}
	return c, nil
}

// find returns the key of the item's own checkpoint, "" if it has none.
func (c *checkpoints) find(it *item) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	want := ckptKey(c.prefix, it.slot, it.pair.ID)
	if slices.Contains(c.bySlot[it.slot], want) {
		return want
	}
	return c.byID[it.pair.ID]
}

// dropOthers deletes the checkpoints of the item's slot but keep: they belong to other
// definitions of the slot and can never be resumed.
func (c *checkpoints) dropOthers(r *runner, it *item, keep string) {
	c.mu.Lock()
	keys := c.bySlot[it.slot]
	delete(c.bySlot, it.slot)
	c.mu.Unlock()
	for _, k := range keys {
		if k != keep {
			r.log.Info("deleting the checkpoint of an earlier definition", "pair", it.pair.ID, "key", k)
			r.deleteKey(r.grace, k, it)
		}
	}
	if keep != "" {
		c.mu.Lock()
		c.bySlot[it.slot] = []string{keep}
		c.mu.Unlock()
	}
}
