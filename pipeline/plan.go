package pipeline

import (
	"context"
	"fmt"
)

// Plan is a dry run of a manifest: per shard, how many items are done, stale, new or refused, and
// the work left. Items themselves go to PlanOptions.Each, not into the Plan.
type Plan struct {
	RunID      string `json:"runId"`
	ShardCount int    `json:"shardCount"`
	// Shards has one entry per planned shard, by index.
	Shards []ShardPlan `json:"shards"`
	// Total sums Shards.
	Total ShardPlan `json:"total"`
	// Verified says whether the outputs were listed and compared (Config.Verify).
	Verified bool `json:"verified"`
}

// ShardPlan counts one shard's items by state (see PlanItem.State). Work and TodoWork sum
// PlanItem.Work over all items and over those not done.
type ShardPlan struct {
	Index    int   `json:"index"`
	Items    int   `json:"items"`
	Done     int   `json:"done"`
	Damaged  int   `json:"damaged"`
	Stale    int   `json:"stale"`
	New      int   `json:"new"`
	Refused  int   `json:"refused"`
	Work     int64 `json:"work"`
	TodoWork int64 `json:"todoWork"`
}

// Item states in a plan.
const (
	PlanDone    = "done"    // an index marker holds the item's ID (and, verified, its outputs are as written)
	PlanDamaged = "damaged" // done, but Verify found its outputs changed, missing or truncated: Run redoes it
	PlanStale   = "stale"   // outputs of another definition: Run acts on them as OnConflict says
	PlanNew     = "new"     // no index marker: Run computes it, unless its provenance shows it done (older nst versions)
	PlanRefused = "refused" // cannot run: a bad input or key, or outputs that collide with another item's
)

// PlanItem is one item of a Plan.
type PlanItem struct {
	Pair
	// Slot is the hash of the item's output slot, 16 hex digits: it decides the shard and
	// names the item's index marker (_index/v1/<slot>.<ID>.*) and checkpoint.
	Slot    string     `json:"slot"`
	Shard   int        `json:"shard"`
	State   string     `json:"state"`
	Cause   string     `json:"cause,omitempty"` // why a refused item cannot run
	Outputs OutputKeys `json:"outputs"`
	// Work estimates the item's cost as steps times output pixels, summed over scales, for an
	// output of Size x Size (an upper bound; 0 when size is 0: the content's own size).
	Work int64 `json:"work"`
}

// PlanOptions says what PlanRun covers.
type PlanOptions struct {
	// Shard plans only that shard of Config.ShardCount; -1 plans every shard.
	Shard int
	// Each, if set, is called with every planned item, in listing order; an error stops the
	// plan and is returned.
	Each func(PlanItem) error
}

// PlanRun expands cfg's manifest as Run does and counts the items of the planned shards by
// state, from the done index (and, with cfg.Verify, a listing of the outputs); cfg.Force counts
// every item new. It opens no engine, reads no provenance and writes nothing. Its memory is
// at most 64 bytes per planned item (their slots and index markers; TestMemoryPerItem). Errors
// are Run's: ErrInvalid for the manifest and Config.
func PlanRun(ctx context.Context, cfg Config, opts PlanOptions) (*Plan, error) {
	cfg.ShardIndex = 0
	cfg, err := cfg.withDefaults(false)
	if err != nil {
		return nil, err
	}
	if opts.Shard < -1 || opts.Shard >= cfg.ShardCount {
		return nil, invalidf("shard index %d is outside 0..%d", opts.Shard, cfg.ShardCount-1)
	}
	cat, err := expand(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer cat.buckets.close()
	i, n := opts.Shard, cfg.ShardCount
	lo, hi := shardRange(max(i, 0), n)
	if i < 0 {
		lo, hi = shardRange(0, 1)
		i, n = 0, 0 // every shard
	}
	done, err := readIndex(ctx, cat.out, lo, hi, cfg.IOJobs)
	if err != nil {
		return nil, err
	}
	if cfg.Verify {
		if err := done.verifyOutputs(ctx, cat, cfg.Storage.NoMD5Check); err != nil {
			return nil, err
		}
	}
	scan, err := scanShard(ctx, cat, i, n)
	if err != nil {
		return nil, err
	}
	p := &Plan{RunID: cat.runID, ShardCount: cfg.ShardCount, Verified: cfg.Verify}
	if opts.Shard < 0 {
		p.Shards = make([]ShardPlan, cfg.ShardCount)
		for k := range p.Shards {
			p.Shards[k].Index = k
		}
	} else {
		p.Shards = []ShardPlan{{Index: opts.Shard}}
	}
	err = forEachShardItem(ctx, cat, i, n, true, func(si shardItem) error {
		if !scan.consume(si.slot) && !scan.has(si.slot) {
			return nil // appeared since the first pass
		}
		it := si.item
		pi := PlanItem{Pair: it.pair, Slot: fmt.Sprintf("%016x", si.slot), Shard: shardOf(si.slot, cfg.ShardCount), Outputs: it.keys, Work: work(*it.params)}
		_, collided := scan.collided[si.slot]
		switch {
		case si.err != nil:
			pi.State, pi.Cause = PlanRefused, si.err.Error()
		case collided:
			pi.State, pi.Cause = PlanRefused, ErrCollision.Error()+": another item of the run writes "+it.keys.Provenance
		case cfg.Force:
			pi.State = PlanNew
		default:
			switch st, _ := done.state(si.slot, parseID(it.pair.ID)); st {
			case indexDone:
				pi.State = PlanDone
			case indexDamaged:
				pi.State = PlanDamaged
			case indexStale:
				pi.State = PlanStale
			default:
				pi.State = PlanNew
			}
		}
		s := &p.Shards[0]
		if opts.Shard < 0 {
			s = &p.Shards[pi.Shard]
		}
		s.add(pi)
		p.Total.add(pi)
		if opts.Each != nil {
			return opts.Each(pi)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	p.Total.Index = -1
	return p, nil
}

func (s *ShardPlan) add(pi PlanItem) {
	s.Items++
	s.Work += pi.Work
	switch pi.State {
	case PlanDone:
		s.Done++
		return
	case PlanDamaged:
		s.Damaged++
	case PlanStale:
		s.Stale++
	case PlanNew:
		s.New++
	case PlanRefused:
		s.Refused++
	}
	s.TodoWork += pi.Work
}
