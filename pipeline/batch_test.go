package pipeline

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nst-project/nst/transfer"
	"github.com/nst-project/nst/transfer/fake"
)

// batchingFake is fake.Engine as a BatchEngine: it records the size of every batch and
// runs its requests one after another (Fake's results are deterministic, so a batched run's
// outputs must equal an unbatched one's).
type batchingFake struct {
	fake.Engine
	mu      sync.Mutex
	sizes   []int
	singles int
}

func (b *batchingFake) Stylize(ctx context.Context, req transfer.Request) (*transfer.Result, error) {
	b.mu.Lock()
	b.singles++
	b.mu.Unlock()
	return b.Engine.Stylize(ctx, req)
}

func (b *batchingFake) StylizeBatch(ctx context.Context, reqs []transfer.Request) ([]*transfer.Result, []error) {
	b.mu.Lock()
	b.sizes = append(b.sizes, len(reqs))
	b.mu.Unlock()
	res, errs := make([]*transfer.Result, len(reqs)), make([]error, len(reqs))
	for i, r := range reqs {
		res[i], errs[i] = b.Engine.Stylize(ctx, r)
	}
	return res, errs
}

// TestBatchSize: with BatchSize 4 a lane hands waiting items of one preset to a batching engine
// together (never more than 4, never mixing presets' parameters), and the outputs are exactly
// those of a run that stylises one item at a time.
func TestBatchSize(t *testing.T) {
	run := func(batch int, eng transfer.Engine) (map[string][]byte, *ShardResult) {
		e := memEnv()
		standardInputs(t, e.bucket(t, e.in), "contents/", "styles/")
		cfg := e.config(writeManifest(t, manifestText("mem://in/contents/", "mem://in/styles/", "mem://out/r/", "")))
		cfg.BatchSize, cfg.MaxInFlight = batch, 8
		cfg.NewEngine = func(context.Context, EngineSpec) (transfer.Engine, func() error, error) { return eng, nil, nil }
		rep, err := Run(t.Context(), cfg)
		if err != nil || !rep.OK() {
			t.Fatalf("batch %d: %v %+v", batch, err, rep)
		}
		out := map[string][]byte{}
		b := e.bucket(t, e.out)
		for k := range snapshot(t, b) {
			if data, err := b.ReadAll(t.Context(), k); err == nil && !slices.Contains([]string{".json"}, k[len(k)-5:]) {
				out[k] = data
			}
		}
		return out, rep
	}
	bf := &batchingFake{Engine: fake.Engine{AnySize: true, StepDelay: 5 * time.Millisecond}} // items queue up behind compute
	batched, rep := run(4, bf)
	single, _ := run(1, fake.Engine{AnySize: true, StepDelay: 5 * time.Millisecond})
	if rep.Done != 12 {
		t.Fatalf("done %d, want 12", rep.Done)
	}
	if len(bf.sizes) == 0 || slices.Max(bf.sizes) > 4 {
		t.Errorf("batch sizes %v: want some batches, none over 4", bf.sizes)
	}
	n := 0
	for _, s := range bf.sizes {
		n += s
	}
	// How many items wait when a lane asks depends on scheduling: every item must be run
	// exactly once, and some must have been batched.
	if n+bf.singles != 12 || n < 2 {
		t.Errorf("%d items in batches %v and %d alone: want all 12, some of them batched", n, bf.sizes, bf.singles)
	}
	for k, v := range single {
		if string(batched[k]) != string(v) && k[len(k)-5:] != ".html" && !strings.Contains(k, "/_index/") {
			t.Errorf("%s differs between batched and one-at-a-time runs", k)
		}
	}
	t.Logf("batch sizes %v, %d alone", bf.sizes, bf.singles)
}
