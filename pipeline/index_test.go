package pipeline

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gocloud.dev/blob"

	"github.com/nst-project/nst/manifests"
	"github.com/nst-project/nst/transfer/fake"
)

// weightsManifest is the standard manifest with random weights of seed seed (other weights: other
// item IDs, the same output keys).
func weightsManifest(t *testing.T, out string, seed int) string {
	return writeManifest(t, strings.Replace(manifestText("mem://in/contents/", "mem://in/styles/", out, ""),
		"model: {weights: random}", fmt.Sprintf("model: {weights: random, randomSeed: %d}", seed), 1))
}

// outputIDs returns the nst-id of every output object under prefix, by key, and the item IDs
// the index markers name, by slot.
func outputIDs(t *testing.T, b *blob.Bucket, prefix string) (outputs map[string]string, markers map[uint64][]uint64) {
	t.Helper()
	outputs, markers = map[string]string{}, map[uint64][]uint64{}
	for _, k := range keysUnder(t, b, prefix) {
		rel := strings.TrimPrefix(k, prefix)
		switch {
		case strings.HasPrefix(rel, indexDir):
			m, ok := parseMarker(strings.TrimPrefix(rel, indexDir))
			if !ok {
				t.Fatalf("bad marker %s", k)
			}
			markers[m.slot] = append(markers[m.slot], m.id)
		case !strings.HasPrefix(rel, "_"):
			a, err := b.Attributes(context.Background(), k)
			if err != nil {
				t.Fatal(err)
			}
			outputs[k] = a.Metadata[metaID]
		}
	}
	return outputs, markers
}

// TestOnConflict: after the weights change (new item IDs, the same keys), fail fails every item
// and keep counts them stale, both leaving the outputs as they were; replace redoes them, and a
// replace interrupted half-way resumes where it stopped: across both attempts every item is
// computed exactly once. The plan counts them stale before and done after. Force redoes all.
func TestOnConflict(t *testing.T) {
	e := memEnv()
	standardInputs(t, e.bucket(t, e.in), "contents/", "styles/")
	out := e.bucket(t, e.out)
	if rep, err := Run(t.Context(), e.config(weightsManifest(t, "mem://out/r/", 1))); err != nil || rep.Done != 12 {
		t.Fatalf("first run: %v %+v", err, rep)
	}
	before := snapshot(t, out)
	man := weightsManifest(t, "mem://out/r/", 2)
	p, err := PlanRun(t.Context(), e.config(man), PlanOptions{Shard: -1})
	if err != nil || p.Total.Stale != 12 || p.Total.Done != 0 {
		t.Fatalf("plan after the weights changed: %v %+v", err, p.Total)
	}

	for _, policy := range []string{"", manifests.ConflictFail, manifests.ConflictKeep} {
		cfg := e.config(man)
		cfg.OnConflict = policy
		rep, res, err := runResults(t.Context(), cfg)
		if err != nil {
			t.Fatalf("%q: %v", policy, err)
		}
		if policy == manifests.ConflictKeep {
			if rep.Stale != 12 || !rep.OK() {
				t.Errorf("keep: %+v", rep)
			}
		} else if rep.Failed != 12 || !errors.Is(res[0].Err, ErrConflict) || !strings.Contains(res[0].Err.Error(), "--on-conflict replace") {
			t.Errorf("%q: failed %d: %v", policy, rep.Failed, res[0].Err)
		}
		if after := snapshot(t, out); !maps.Equal(before, after) {
			t.Errorf("%q changed the outputs", policy)
		}
	}
	// The manifest's spec.output.onConflict says the same as the flag.
	text, err := os.ReadFile(man)
	if err != nil {
		t.Fatal(err)
	}
	keepMan := writeManifest(t, strings.Replace(string(text), `output: {url: "mem://out/r/"}`, `output: {url: "mem://out/r/", onConflict: keep}`, 1))
	if rep, err := Run(t.Context(), e.config(keepMan)); err != nil || rep.Stale != 12 {
		t.Fatalf("onConflict: keep in the manifest: %v %+v", err, rep)
	}

	// replace, interrupted after 5 items were done, then resumed.
	var mu sync.Mutex
	computed := map[string]int{}
	count := func(r PairResult) {
		if r.Status == StatusDone {
			mu.Lock()
			computed[r.ID]++
			mu.Unlock()
		}
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	cfg := e.config(man)
	cfg.OnConflict, cfg.Lanes = manifests.ConflictReplace, 1
	cfg.NewEngine = fakeEngine(fake.Engine{AnySize: true, StepDelay: 5 * time.Millisecond})
	var done atomic.Int64
	cfg.Progress = progressFunc(func(r PairResult) {
		count(r)
		if r.Status == StatusDone && done.Add(1) == 5 {
			cancel()
		}
	})
	rep, err := Run(ctx, cfg)
	if !errors.Is(err, context.Canceled) || rep.Done < 5 || rep.Done >= 12 {
		t.Fatalf("interrupted replace: %v, done %d", err, rep.Done)
	}
	first := rep.Done
	cfg.Progress = progressFunc(count)
	rep, err = Run(t.Context(), cfg)
	if err != nil || rep.Done != 12-first || rep.Skipped != first || !rep.OK() {
		t.Fatalf("resumed replace: %v, done %d skipped %d (first attempt did %d)", err, rep.Done, rep.Skipped, first)
	}
	if len(computed) != 12 {
		t.Errorf("%d items computed, want 12", len(computed))
	}
	for id, n := range computed {
		if n != 1 {
			t.Errorf("item %s computed %d times", id, n)
		}
	}
	p, err = PlanRun(t.Context(), e.config(man), PlanOptions{Shard: -1})
	if err != nil || p.Total.Done != 12 {
		t.Fatalf("plan after replace: %v %+v", err, p.Total)
	}
	outputs, markers := outputIDs(t, out, "r/")
	if len(outputs) != 48 || len(markers) != 12 {
		t.Fatalf("%d outputs, %d slots marked", len(outputs), len(markers))
	}
	for k, id := range outputs {
		if computed[id] != 1 {
			t.Errorf("%s holds item %s of the old weights", k, id)
		}
	}
	for slot, ids := range markers {
		if len(ids) != 1 || computed[idString(ids[0])] != 1 {
			t.Errorf("slot %016x: markers %x, want one of the new item", slot, ids)
		}
	}
	// Force redoes every item, done ones too.
	cfg = e.config(man)
	cfg.Force = true
	if rep, err := Run(t.Context(), cfg); err != nil || rep.Done != 12 {
		t.Fatalf("force: %v %+v", err, rep)
	}
}

// progressFunc is a Progress that calls itself with every ended item.
type progressFunc func(PairResult)

func (progressFunc) Planned(int)               {}
func (progressFunc) PairStarted(string)        {}
func (progressFunc) PairStep(string, int, int) {}
func (f progressFunc) PairDone(r PairResult)   { f(r) }

// TestIndexRecovery: the done index and the outputs can disagree in four ways, and none loses a
// result, redoes finished work unnoticed, or counts an unfinished item done:
//   - a crash between an item's provenance and its marker (here: the marker write refused),
//     and a deleted marker: the next run finds the provenance with the item's ID and its
//     outputs as written, restores the marker and skips the item (no step computed);
//   - outputs changed after they were written (an image deleted, one replaced by garbage, a
//     provenance truncated or rewritten by another tool): a run with Verify redoes exactly
//     those items over their own outputs, and plan with Verify counts them damaged; a run
//     without it trusts the index (docs/RELIABILITY.md);
//   - a marker whose provenance is gone: the same as damage, found by Verify.
func TestIndexRecovery(t *testing.T) {
	s := newCountedS3(t)
	for i, k := range []string{"contents/a.png", "contents/b.png", "contents/c.png", "contents/d.png", "contents/e.png", "contents/f.png"} {
		s.seed(t, "in", k, pngBytes(t, testImage(20, 18, i)))
	}
	s.seed(t, "in", "styles/wave.png", pngBytes(t, testImage(16, 16, 9)))
	man := writeManifest(t, strings.Replace(manifestText(s.url("in", "contents/"), s.url("in", "styles/"), s.url("out", "r/"), ""),
		"  presets:\n    - {name: soft, styleWeight: 10}\n    - {name: bold, styleWeight: 1000}\n", "", 1))
	out := s.direct(t, "out")
	steps := &countingProgress{}
	cfg := Config{ManifestURL: man, NewEngine: fakeEngine(fake.Engine{AnySize: true}), RunID: "recovery", Version: "test", Progress: steps}

	// The marker of a.png cannot be written: its item fails after its provenance.
	s.mu.Lock()
	s.deny = func(r *http.Request) bool {
		return r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/_index/") && markerOf(t, out, "r/default/a__wave.json", r.URL.Path)
	}
	s.mu.Unlock()
	cfg.Storage.Retry.Attempts = 1
	rep, err := Run(t.Context(), cfg)
	if err != nil || rep.Done != 5 || rep.Failed != 1 || !strings.Contains(rep.Failures[0].Err.Error(), "index marker") {
		t.Fatalf("run with a refused marker: %v %+v", err, rep)
	}
	s.mu.Lock()
	s.deny = nil
	s.mu.Unlock()
	// b.png's marker is deleted.
	_, markers := outputIDs(t, out, "r/")
	for _, k := range keysUnder(t, out, "r/"+indexDir) {
		if markerOf(t, out, "r/default/b__wave.json", k) {
			if err := out.Delete(t.Context(), k); err != nil {
				t.Fatal(err)
			}
		}
	}
	steps.steps.Store(0)
	rep, err = Run(t.Context(), cfg)
	if err != nil || rep.Skipped != 6 || rep.Reindexed != 2 || rep.Done != 0 || steps.steps.Load() != 0 {
		t.Fatalf("re-run: %v, skipped %d reindexed %d done %d, %d steps", err, rep.Skipped, rep.Reindexed, rep.Done, steps.steps.Load())
	}
	if _, again := outputIDs(t, out, "r/"); len(again) != 6 || len(markers) != 5 {
		t.Errorf("markers: %d slots now, %d before the re-run", len(again), len(markers))
	}

	// Damage: c's image deleted, d's replaced by garbage, e's provenance truncated, f's
	// provenance rewritten by another tool (no nst-id). a's provenance deleted (its marker stays).
	ctx := t.Context()
	mustDelete(t, out, "r/default/c__wave.png")
	put(t, out, "r/default/d__wave.png", []byte("garbage"))
	prov, _ := out.ReadAll(ctx, "r/default/e__wave.json")
	put(t, out, "r/default/e__wave.json", prov[:len(prov)/2])
	mustDelete(t, out, "r/default/f__wave.json") // so that no nst-id survives (gofakes3 keeps an overwritten object's metadata)
	put(t, out, "r/default/f__wave.json", []byte(`{"note": "rewritten by another tool"}`))
	mustDelete(t, out, "r/default/a__wave.json")
	// Without Verify the index is trusted: nothing is read, nothing redone.
	if rep, err := Run(t.Context(), cfg); err != nil || rep.Skipped != 6 {
		t.Fatalf("run without verify: %v %+v", err, rep)
	}
	vcfg := cfg
	vcfg.Verify = true
	p, err := PlanRun(t.Context(), vcfg, PlanOptions{Shard: -1})
	if err != nil || p.Total.Damaged != 5 || p.Total.Done != 1 || !p.Verified {
		t.Fatalf("plan --verify: %v %+v", err, p.Total)
	}
	steps.steps.Store(0)
	rep, res, err := runResults(t.Context(), vcfg)
	if err != nil || rep.Done != 5 || rep.Skipped != 1 {
		t.Fatalf("run with verify: %v, done %d skipped %d: %+v", err, rep.Done, rep.Skipped, rep.Failures)
	}
	for _, r := range res {
		if (r.Content == "b.png") != (r.Status == StatusSkipped) {
			t.Errorf("%s: %s", r.Content, r.Status)
		}
	}
	checkOutputs(t, out, rep, res, 4)
	if p, err := PlanRun(t.Context(), vcfg, PlanOptions{Shard: -1}); err != nil || p.Total.Done != 6 {
		t.Fatalf("plan --verify after the repair: %v %+v", err, p.Total)
	}
	outputs, markers := outputIDs(t, out, "r/")
	if len(outputs) != 24 || len(markers) != 6 {
		t.Errorf("%d outputs and %d marked slots after the repair, want 24 and 6", len(outputs), len(markers))
	}
	for slot, ids := range markers {
		if len(ids) != 1 {
			t.Errorf("slot %016x: %d markers", slot, len(ids))
		}
	}
}

// markerOf reports whether the marker key k (a request path or a key) is the one of the item
// whose provenance is at prov.
func markerOf(t *testing.T, b *blob.Bucket, prov, k string) bool {
	i := strings.Index(k, indexDir)
	m, ok := parseMarker(k[i+len(indexDir):])
	return ok && m.slot == slotHash(strings.TrimSuffix(strings.TrimPrefix(prov, "r/"), ".json"))
}

func mustDelete(t *testing.T, b *blob.Bucket, key string) {
	t.Helper()
	if err := b.Delete(context.Background(), key); err != nil {
		t.Fatal(err)
	}
}
