package pipeline

import (
	"errors"
	"github.com/nst-project/nst/internal/depcheck"
	"slices"
	"strings"
	"testing"

	"github.com/nst-project/nst/manifests"
	"github.com/nst-project/nst/transfer"
	"github.com/nst-project/nst/transfer/fake"
)

func objs(keys ...string) []object {
	var o []object
	for _, k := range keys {
		o = append(o, object{key: k, version: "v", size: 1})
	}
	return o
}

func TestPairUpOrder(t *testing.T) {
	c, s := objs("a", "b", "c"), objs("x", "y")
	str := func(ps []pairIn) string {
		var out []string
		for _, p := range ps {
			out = append(out, p.content.key+p.style.key)
		}
		return strings.Join(out, " ")
	}
	cases := []struct {
		name   string
		in     manifests.Inputs
		styles []object
		want   string
		err    string
	}{
		{"cross is content-major", manifests.Inputs{Pairing: manifests.PairingCross}, s, "ax ay bx by cx cy", ""},
		{"zip", manifests.Inputs{Pairing: manifests.PairingZip}, objs("x", "y", "z"), "ax by cz", ""},
		{"zip needs equal counts", manifests.Inputs{Pairing: manifests.PairingZip}, s, "", "zip needs as many contents as styles"},
		{"list keeps the manifest's order", manifests.Inputs{Pairing: manifests.PairingList,
			Pairs: []manifests.Pair{{Content: "c", Style: "x"}, {Content: "a", Style: "y"}, {Content: "c", Style: "y"}}}, s, "cx ay cy", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := pairUp(tc.in, c, tc.styles)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, ErrInvalid) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || str(got) != tc.want {
				t.Errorf("got %q (%v), want %q", str(got), err, tc.want)
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

// TestShardPartition: for any count, every item is in exactly one shard and shards differ in
// size by at most one.
func TestShardPartition(t *testing.T) {
	e := memEnv()
	standardInputs(t, e.bucket(t, e.in), "contents/", "styles/")
	man := writeManifest(t, manifestText("mem://in/contents/", "mem://in/styles/", "mem://out/", ""))
	for n := 1; n <= 13; n++ {
		cfg := e.config(man)
		cfg.ShardCount = n
		p, err := PlanBatch(t.Context(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		count := make([]int, n)
		for i, it := range p.Items {
			if it.Index != i || it.Shard != i%n {
				t.Fatalf("n=%d: item %d in shard %d", n, i, it.Shard)
			}
			count[it.Shard]++
		}
		if slices.Max(count)-slices.Min(count) > 1 || p.Total != 12 {
			t.Errorf("n=%d: shard sizes %v", n, count)
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

// TestDuplicateOutputKeys: a.png and a.jpg would both write a__wave.png: refused up front.
func TestDuplicateOutputKeys(t *testing.T) {
	e := memEnv()
	in := e.bucket(t, e.in)
	standardInputs(t, in, "contents/", "styles/")
	put(t, in, "contents/a.jpg", jpegBytes(t, testImage(10, 10, 1)))
	_, err := Run(t.Context(), e.config(writeManifest(t, manifestText("mem://in/contents/", "mem://in/styles/", "mem://out/", ""))))
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "output key soft/a__wave.png is written by both") {
		t.Fatalf("err = %v", err)
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
	// Precedence: defaults < spec.params < preset.
	spec = manifests.Options{StyleWeight: f(5), TVWeight: f(2)}
	p, err = PresetParams(spec, manifests.Preset{Name: "y", Options: manifests.Options{StyleWeight: f(9)}}, "spec.presets[1]")
	d := transfer.DefaultParams()
	if err != nil || p.StyleWeight != 9 || p.TVWeight != 2 || p.ContentWeight != d.ContentWeight || p.Steps != d.Steps {
		t.Errorf("merged %+v (%v)", p, err)
	}
}

// TestPlan: totals, done flags after a run, and work estimates.
func TestPlan(t *testing.T) {
	e := memEnv()
	standardInputs(t, e.bucket(t, e.in), "contents/", "styles/")
	man := writeManifest(t, manifestText("mem://in/contents/", "mem://in/styles/", "mem://out/", ""))
	cfg := e.config(man)
	cfg.ShardCount = 2
	p, err := PlanBatch(t.Context(), cfg)
	if err != nil || p.Total != 12 || p.Done != 0 || p.Work != 12*4*16*16 || p.Shards[1].Items != 6 {
		t.Fatalf("plan %+v (%v)", p, err)
	}
	cfg.ShardIndex = 1
	if _, err := Run(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
	p, err = PlanBatch(t.Context(), cfg)
	if err != nil || p.Done != 6 || p.Shards[1].Done != 6 || p.Shards[0].Done != 0 || p.TodoWork != 6*4*16*16 {
		t.Fatalf("plan after shard 1: %+v (%v)", p, err)
	}
	if n := len(snapshot(t, e.bucket(t, e.out))); n != 24 {
		t.Errorf("%d objects (plan must write nothing)", n)
	}
}

func TestConfigValidation(t *testing.T) {
	for _, c := range []Config{
		{},
		{ManifestURL: "m.yaml", ShardIndex: 2, ShardCount: 2, NewEngine: fakeEngine(fake.Engine{AnySize: true})},
		{ManifestURL: "m.yaml", GPUJobs: -1, NewEngine: fakeEngine(fake.Engine{AnySize: true})},
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
