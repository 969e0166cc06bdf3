package pipeline

import (
	"context"

	"github.com/sourcegraph/conc/pool"
)

// Plan is a dry run of a batch: every item, its shard and whether it is done.
type Plan struct {
	RunID      string
	ShardCount int
	Items      []PlanItem // in item order
	Shards     []ShardPlan
	// Total and Done count items; Work and TodoWork sum PlanItem.Work over all and over
	// those not done.
	Total, Done    int
	Work, TodoWork int64
}

// PlanItem is one item of a Plan.
type PlanItem struct {
	Pair
	Index, Shard int
	Outputs      OutputKeys
	Done         bool
	// Work estimates the item's cost as steps times output pixels, summed over scales, for an
	// output of Size x Size (an upper bound; 0 when size is 0: the content's own size).
	Work int64
}

// ShardPlan totals one shard of a Plan.
type ShardPlan struct {
	Index, Items, Done int
	Work, TodoWork     int64
}

// Plan expands cfg's manifest as Run does and reports every item of every shard (of
// cfg.ShardCount; cfg.ShardIndex is ignored) and which are done (cfg.Force counts none done). It
// opens no engine and writes nothing. Errors are Run's: ErrInvalid for the manifest and Config.
func PlanBatch(ctx context.Context, cfg Config) (*Plan, error) {
	cfg.ShardIndex = 0
	cfg, err := cfg.withDefaults(false)
	if err != nil {
		return nil, err
	}
	b, err := expand(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer b.buckets.close()
	p := &Plan{RunID: b.runID, ShardCount: cfg.ShardCount, Items: make([]PlanItem, len(b.items)), Shards: make([]ShardPlan, cfg.ShardCount)}
	checks := pool.New().WithErrors().WithContext(ctx).WithMaxGoroutines(cfg.IOJobs)
	for i, it := range b.items {
		p.Items[i] = PlanItem{Pair: it.pair, Index: it.index, Shard: it.shard, Outputs: it.keys, Work: work(it.params)}
		if cfg.Force {
			continue
		}
		checks.Go(func(ctx context.Context) error {
			id, err := b.doneID(ctx, it)
			p.Items[i].Done = id == it.pair.ID
			return err
		})
	}
	if err := checks.Wait(); err != nil {
		return nil, err
	}
	for i := range p.Shards {
		p.Shards[i].Index = i
	}
	for _, it := range p.Items {
		s := &p.Shards[it.Shard]
		s.Items++
		s.Work += it.Work
		p.Total++
		p.Work += it.Work
		if it.Done {
			s.Done++
			p.Done++
		} else {
			s.TodoWork += it.Work
			p.TodoWork += it.Work
		}
	}
	return p, nil
}
