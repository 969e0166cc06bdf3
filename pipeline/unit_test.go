package pipeline

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"testing"

	"github.com/nst-project/nst/internal/depcheck"

	"github.com/nst-project/nst/manifests"
	"github.com/nst-project/nst/transfer"
	"github.com/nst-project/nst/transfer/fake"
)

// pairsOf expands a manifest over mem:// contents and styles and returns its pairs, in order.
func pairsOf(t *testing.T, contents, styles []string, inputs string) (string, error) {
	t.Helper()
	e := memEnv()
	in := e.bucket(t, e.in)
	for _, k := range contents {
		put(t, in, "contents/"+k, []byte(k))
	}
	for _, k := range styles {
		put(t, in, "styles/"+k, []byte(k))
	}
	man := writeManifest(t, fmt.Sprintf(`apiVersion: nst/v1
kind: StyleBatch
metadata: {name: test}
spec:
  model: {weights: random}
  inputs:
    contents: {url: "mem://in/contents/"}
    styles: {url: "mem://in/styles/"}
%s  output: {url: "mem://out/"}
`, inputs))
	cfg, err := e.config(man).withDefaults(false)
	if err != nil {
		t.Fatal(err)
	}
	cat, err := expand(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	err = cat.forEachPair(t.Context(), func(p pairIn) error {
		out = append(out, p.content.key+p.style.key)
		return nil
	})
	return strings.Join(out, " "), err
}

// TestPairing: cross holds the smaller side and streams the other as the outer loop; zip
// pairs in key order and refuses unequal sides; list keeps the manifest's order.
func TestPairing(t *testing.T) {
	c, s := []string{"a", "b", "c"}, []string{"x", "y"}
	cases := []struct {
		name             string
		contents, styles []string
		inputs           string
		want             string
		err              string
	}{
		{"cross with fewer styles is content-major", c, s, "", "ax ay bx by cx cy", ""},
		{"cross with fewer contents is style-major", []string{"a"}, []string{"x", "y", "z"}, "", "ax ay az", ""},
		{"cross with fewer contents, more of each", []string{"a", "b"}, []string{"v", "w", "x", "y", "z"}, "", "av bv aw bw ax bx ay by az bz", ""},
		{"zip", c, []string{"x", "y", "z"}, "    pairing: zip\n", "ax by cz", ""},
		{"zip needs equal counts", c, s, "    pairing: zip\n", "", "zip needs as many contents as styles, found 3 contents and 2 styles"},
		{"zip needs equal counts, more styles", s, c, "    pairing: zip\n", "", "found 2 contents and 3 styles"},
		{"list keeps the manifest's order", c, s, "    pairing: list\n    pairs:\n      - {content: c, style: x}\n      - {content: a, style: y}\n      - {content: c, style: y}\n", "cx ay cy", ""},
		{"listed keys must exist", c, s, "    pairing: list\n    pairs:\n      - {content: nope, style: x}\n", "", "spec.inputs.contents: not found under mem://in/contents/: nope"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := pairsOf(t, tc.contents, tc.styles, tc.inputs)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, ErrInvalid) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("got %q (%v), want %q", got, err, tc.want)
			}
		})
	}
}

func TestItemID(t *testing.T) {
	c := object{key: "a.jpg", version: "md5:01", size: 10}
	s := object{key: "w.jpg", version: "md5:02", size: 20}
	out := manifests.Output{Format: "png"}
	pd := transfer.DefaultParams().Digest()
	base := itemID("s3://in/c/?region=x", c, "s3://in/s/", s, pd, "random:0", out)
	if len(base) != 16 || base != itemID("s3://in/c/?region=y", c, "s3://in/s/", s, pd, "random:0", out) {
		t.Fatalf("ID %q not stable (or depends on the query)", base)
	}
	p2 := transfer.DefaultParams()
	p2.StyleWeight = 2e6
	c2, s2 := c, s
	c2.version = "md5:03"
	s2.size = 21
	for name, id := range map[string]string{
		"content version": itemID("s3://in/c/", c2, "s3://in/s/", s, pd, "random:0", out),
		"style size":      itemID("s3://in/c/", c, "s3://in/s/", s2, pd, "random:0", out),
		"params":          itemID("s3://in/c/", c, "s3://in/s/", s, p2.Digest(), "random:0", out),
		"weights":         itemID("s3://in/c/", c, "s3://in/s/", s, pd, "sha256:ab", out),
		"format":          itemID("s3://in/c/", c, "s3://in/s/", s, pd, "random:0", manifests.Output{Format: "jpeg"}),
		"content url":     itemID("s3://other/c/", c, "s3://in/s/", s, pd, "random:0", out),
	} {
		if id == base {
			t.Errorf("changing the %s keeps the ID", name)
		}
	}
}

// TestShardPartition: for any count, every item is in exactly one shard, the shards' ranges
// tile the hash space, and a shard's marker prefixes cover its range.
func TestShardPartition(t *testing.T) {
	e := memEnv()
	standardInputs(t, e.bucket(t, e.in), "contents/", "styles/")
	man := writeManifest(t, manifestText("mem://in/contents/", "mem://in/styles/", "mem://out/", ""))
	for n := 1; n <= 13; n++ {
		cfg := e.config(man)
		cfg.ShardCount = n
		seen := map[string]int{}
		for i := range n {
			p, err := PlanRun(t.Context(), cfg, PlanOptions{Shard: i, Each: func(it PlanItem) error {
				if it.Shard != i {
					t.Errorf("n=%d: shard %d planned an item of shard %d", n, i, it.Shard)
				}
				seen[it.ID]++
				return nil
			}})
			if err != nil {
				t.Fatal(err)
			}
			if p.Shards[0].Items != p.Total.Items || p.Shards[0].Index != i {
				t.Errorf("n=%d shard %d: %+v", n, i, p)
			}
		}
		if len(seen) != 12 {
			t.Errorf("n=%d: %d distinct items, want 12", n, len(seen))
		}
		for id, k := range seen {
			if k != 1 {
				t.Errorf("n=%d: item %s in %d shards", n, id, k)
			}
		}
		prev := uint64(0)
		for i := range n {
			lo, hi := shardRange(i, n)
			if (i == 0 && lo != 0) || (i > 0 && lo != prev+1) || hi < lo || shardOf(lo, n) != i || shardOf(hi, n) != i {
				t.Errorf("n=%d shard %d: range %x..%x (previous end %x)", n, i, lo, hi, prev)
			}
			if i < n-1 && shardOf(hi+1, n) != i+1 {
				t.Errorf("n=%d shard %d: %x is not shard %d's", n, i, hi+1, i+1)
			}
			prev = hi
			for _, p := range indexPrefixes(lo, hi, 1e7) {
				if p == "" {
					continue
				}
				v, _ := strconv.ParseUint(p, 16, 64)
				shift := 64 - 4*len(p)
				if first, last := v<<shift, v<<shift|(1<<shift-1); last < lo || first > hi {
					t.Errorf("n=%d shard %d: prefix %s lists none of the range", n, i, p)
				}
			}
		}
		if prev != math.MaxUint64 {
			t.Errorf("n=%d: shards end at %x", n, prev)
		}
	}
}

// TestShardBalance: over 1M slots of a synthetic catalogue, every shard's share is within 1% of the mean for 2 to
// 100 shards (hash-range shards: the deviation is binomial, about 0.3% here).
func TestShardBalance(t *testing.T) {
	const slots = 1_000_000
	hashes := make([]uint64, slots)
	for i := range hashes {
		hashes[i] = slotHash(fmt.Sprintf("p/content-%d__style-%d", i/5, i%5))
	}
	for _, n := range []int{2, 3, 7, 10, 100} {
		count := make([]int, n)
		for _, h := range hashes {
			count[shardOf(h, n)]++
		}
		mean := float64(slots) / float64(n)
		worst := 0.0
		for _, c := range count {
			worst = max(worst, math.Abs(float64(c)-mean)/mean)
		}
		t.Logf("%d shards: largest deviation from the mean %.3f%%", n, 100*worst)
		if worst > 0.01+5/math.Sqrt(mean) {
			t.Errorf("%d shards: sizes %v deviate %.2f%% from the mean", n, count, 100*worst)
		}
	}
}

func TestOutputKeys(t *testing.T) {
	k, err := OutputKeysFor("out/", "soft", "dir/a.b.jpg", "styles/wave.png", "jpeg")
	if err != nil || k != (OutputKeys{Image: "out/soft/dir/a.b__wave.jpg", LossLog: "out/soft/dir/a.b__wave.loss.jsonl", LossPlot: "out/soft/dir/a.b__wave.loss.png", Provenance: "out/soft/dir/a.b__wave.json"}) {
		t.Errorf("keys %+v (%v)", k, err)
	}
	for _, bad := range []string{"../a.jpg", "/a.jpg", "a//b.jpg", "./a.jpg", `a\b.jpg`, "", "d/.jpg/../x"} {
		if _, err := OutputKeysFor("out/", "p", bad, "w.png", "png"); err == nil {
			t.Errorf("content %q accepted", bad)
		}
	}
	if _, err := OutputKeysFor("", "p", "a.jpg", "../w.png", "png"); err == nil {
		t.Error("style ../w.png accepted")
	}
}

// TestDuplicateOutputKeys: a.png and a.jpg would both write a__wave.png, and style
// wave.loss.png's image would be wave.png's loss plot: those items fail, naming the others,
// before any of them is written; the rest of the run is done.
func TestDuplicateOutputKeys(t *testing.T) {
	e := memEnv()
	in := e.bucket(t, e.in)
	standardInputs(t, in, "contents/", "styles/")
	put(t, in, "contents/a.jpg", jpegBytes(t, testImage(20, 20, 1)))
	put(t, in, "styles/wave.loss.png", pngBytes(t, testImage(16, 16, 6)))
	for _, n := range []int{1, 3} {
		out := fmt.Sprintf("mem://out/n%d/", n)
		failed, done := 0, 0
		var causes []string
		for i := range n {
			cfg := e.config(writeManifest(t, manifestText("mem://in/contents/", "mem://in/styles/", out, "")))
			cfg.ShardIndex, cfg.ShardCount = i, n
			rep, res, err := runResults(t.Context(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			failed += rep.Failed
			done += rep.Done
			for _, r := range res {
				if r.Status == StatusFailed {
					causes = append(causes, r.Err.Error())
					if !errors.Is(r.Err, ErrCollision) && !strings.Contains(r.Err.Error(), ".loss") {
						t.Errorf("%s: %v", r.Pair, r.Err)
					}
				}
			}
		}
		// 4 contents x 3 styles x 2 presets: a.png and a.jpg collide with both real styles (8
		// items), wave.loss.png is refused with every content (8 items).
		if failed != 8+8 || done != 8 {
			t.Errorf("n=%d: failed %d done %d, want 16 and 8:\n%s", n, failed, done, strings.Join(causes, "\n"))
		}
		all := strings.Join(causes, "\n")
		for _, want := range []string{"soft/a__wave", "(content a.jpg, style wave.png, preset soft)", "(content a.png, style wave.png, preset soft)"} {
			if !strings.Contains(all, want) {
				t.Errorf("n=%d: no failure says %q:\n%s", n, want, all)
			}
		}
		if strings.Contains(all, "--force") {
			t.Errorf("a collision message suggests --force:\n%s", all)
		}
		for _, k := range keysUnder(t, e.bucket(t, e.out), strings.TrimPrefix(out, "mem://out/")) {
			if strings.Contains(k, "/a__") || strings.Contains(k, "wave.loss.png") && !strings.HasSuffix(k, "__wave.loss.png") {
				t.Errorf("n=%d: a refused item wrote %s", n, k)
			}
		}
	}
}

func TestPresetParams(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	s := func(v string) *string { return &v }
	spec := manifests.Options{ContentLayer: s("conv9_1"), Lines: map[string]int{"contentLayer": 7}}
	preset := manifests.Preset{Name: "x", Line: 10, Options: manifests.Options{StyleWeight: f(-1), Optimizer: s("lbfgs"),
		Lines: map[string]int{"styleWeight": 11, "optimizer": 12}}}
	p, err := PresetParams(spec, preset, "spec.presets[0]")
	var me *manifests.Error
	if !errors.As(err, &me) || !errors.Is(err, ErrInvalid) || len(me.Problems) != 2 {
		t.Fatalf("err = %v", err)
	}
	if got := me.Problems[0].Error(); !strings.HasPrefix(got, "line 7: spec.params.contentLayer: unknown layer") {
		t.Errorf("problem 0: %s", got)
	}
	if got := me.Problems[1].Error(); !strings.HasPrefix(got, "line 11: spec.presets[0].styleWeight:") {
		t.Errorf("problem 1: %s", got)
	}
	if p.LR != 1 || p.Optimizer != transfer.LBFGS {
		t.Errorf("lbfgs without lr: lr %v", p.LR)
	}
	// A layer's problem names the layer, at its line.
	spec = manifests.Options{StyleLayers: manifests.StyleLayers{{Layer: "conv1_1", Weight: 1, Line: 8}, {Layer: "conv6_1", Weight: 1, Line: 9}},
		Lines: map[string]int{"styleLayers": 7}}
	_, err = PresetParams(spec, manifests.Preset{Name: "default"}, "spec.presets[0]")
	if !errors.As(err, &me) || len(me.Problems) != 1 || !strings.HasPrefix(me.Problems[0].Error(), `line 9: spec.params.styleLayers.conv6_1: unknown layer "conv6_1"`) {
		t.Errorf("unknown style layer: %v", err)
	}
	// Precedence: defaults < spec.params < preset.
	spec = manifests.Options{StyleWeight: f(5), TVWeight: f(2)}
	p, err = PresetParams(spec, manifests.Preset{Name: "y", Options: manifests.Options{StyleWeight: f(9)}}, "spec.presets[1]")
	d := transfer.DefaultParams()
	if err != nil || p.StyleWeight != 9 || p.TVWeight != 2 || p.ContentWeight != d.ContentWeight || p.Steps != d.Steps {
		t.Errorf("merged %+v (%v)", p, err)
	}
}

// TestPlan: totals, done counts after a run, and work estimates.
func TestPlan(t *testing.T) {
	e := memEnv()
	standardInputs(t, e.bucket(t, e.in), "contents/", "styles/")
	man := writeManifest(t, manifestText("mem://in/contents/", "mem://in/styles/", "mem://out/", ""))
	cfg := e.config(man)
	cfg.ShardCount = 2
	p, err := PlanRun(t.Context(), cfg, PlanOptions{Shard: -1})
	if err != nil || p.Total.Items != 12 || p.Total.New != 12 || p.Total.Work != 12*4*16*16 || len(p.Shards) != 2 ||
		p.Shards[0].Items+p.Shards[1].Items != 12 {
		t.Fatalf("plan %+v (%v)", p, err)
	}
	one := p.Shards[1].Items
	cfg.ShardIndex = 1
	if _, err := Run(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
	p, err = PlanRun(t.Context(), cfg, PlanOptions{Shard: -1})
	if err != nil || p.Total.Done != one || p.Shards[1].Done != one || p.Shards[0].Done != 0 || p.Total.TodoWork != int64(12-one)*4*16*16 {
		t.Fatalf("plan after shard 1: %+v (%v)", p, err)
	}
	if n := len(snapshot(t, e.bucket(t, e.out))); n != 5*one {
		t.Errorf("%d objects, want %d (plan must write nothing)", n, 5*one)
	}
}

func TestConfigValidation(t *testing.T) {
	for _, c := range []Config{
		{},
		{ManifestURL: "m.yaml", ShardIndex: 2, ShardCount: 2, NewEngine: fakeEngine(fake.Engine{AnySize: true})},
		{ManifestURL: "m.yaml", Lanes: -1, NewEngine: fakeEngine(fake.Engine{AnySize: true})},
		{ManifestURL: "m.yaml"}, // no engine
	} {
		if _, err := Run(t.Context(), c); !errors.Is(err, ErrInvalid) {
			t.Errorf("%+v: err = %v, want ErrInvalid", c, err)
		}
	}
}

// TestImportBoundary (STYLE.md #11): pipeline, storage and manifests never reach gotch or
// transfer/torch, so they build and test without cgo.
func TestImportBoundary(t *testing.T) {
	depcheck.Forbid(t, []string{"./", "../storage", "../manifests"}, func(dep string) bool {
		return depcheck.Native(dep) || depcheck.Driver(dep)
	})
}
