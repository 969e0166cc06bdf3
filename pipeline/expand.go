package pipeline

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sourcegraph/conc/pool"

	"github.com/nst-project/nst/manifests"
	"github.com/nst-project/nst/storage"
	"github.com/nst-project/nst/transfer"
)

// batch is a manifest expanded into work items, with its buckets open.
type batch struct {
	cfg      Config
	m        *manifests.Manifest
	digest   string // sha256 of the manifest's bytes
	runID    string
	presets  []manifests.Preset
	contents source
	styles   source
	out      source
	weights  weightsRef
	items    []*item // every shard's, in item order
	buckets  *bucketSet
}

// source is an opened directory URL.
type source struct {
	url    string // as in the manifest (resolved)
	bucket *storage.Bucket
	prefix string
}

// object is one input image.
type object struct {
	key     string // relative to its source
	version string // MD5, else ETag, else modification time
	size    int64
}

// item is one work item.
type item struct {
	index, shard   int
	pair           Pair
	content, style object
	params         transfer.Params
	paramsDigest   string
	keys           OutputKeys
}

// weightsRef says which weights a batch uses, without downloading them.
type weightsRef struct {
	random bool
	seed   int64
	url    string // the object URL
	sha256 string // from the manifest, may be ""
	digest string // hashed into item IDs
	bucket *storage.Bucket
	key    string
	size   int64
}

// expand loads the manifest, checks it with the engine's parameter rules, lists the inputs and
// builds every item. It writes nothing.
func expand(ctx context.Context, cfg Config) (*batch, error) {
	b := &batch{cfg: cfg, buckets: &bucketSet{cfg: cfg}}
	ok := false
	defer func() {
		if !ok {
			b.buckets.close()
		}
	}()
	if err := b.loadManifest(ctx); err != nil {
		return nil, err
	}
	// Parameters of every preset: every problem at once.
	params := make([]transfer.Params, len(b.presets))
	var errs []error
	nManifest := 0
	for i, p := range b.presets {
		at := fmt.Sprintf("spec.presets[%d]", nManifest)
		if p.FromFile {
			at = fmt.Sprintf("presetsFrom presets[%d]", i-nManifest)
		} else {
			nManifest++
		}
		if p.Line == 0 && !p.FromFile {
			at = "spec.params" // the implicit default preset
		}
		var err error
		if params[i], err = PresetParams(b.m.Spec.Params, p, at); err != nil {
			errs = append(errs, err)
		}
	}
	if err := mergeProblems(errs); err != nil {
		return nil, err
	}
	var err error
	if b.contents, err = b.buckets.openDir(ctx, b.m.Spec.Inputs.Contents.URL); err != nil {
		return nil, err
	}
	if b.styles, err = b.buckets.openDir(ctx, b.m.Spec.Inputs.Styles.URL); err != nil {
		return nil, err
	}
	if b.out, err = b.buckets.openDir(ctx, b.m.Spec.Output.URL); err != nil {
		return nil, err
	}
	if err := b.resolveWeights(ctx); err != nil {
		return nil, err
	}
	pairs, err := b.pairs(ctx)
	if err != nil {
		return nil, err
	}
	if err := b.buildItems(pairs, params); err != nil {
		return nil, err
	}
	if b.runID = cfg.RunID; b.runID == "" {
		b.runID = fmt.Sprintf("%s-%s-%s", b.m.Metadata.Name, b.digest[:8], time.Now().UTC().Format("20060102"))
	}
	ok = true
	return b, nil
}

// resolveWeights finds the weights' digest without downloading them: the manifest's sha256,
// else the object's version.
func (b *batch) resolveWeights(ctx context.Context) error {
	mod := b.m.Spec.Model
	w := &b.weights
	if mod.IsRandom() {
		w.random = true
		if mod.RandomSeed != nil {
			w.seed = *mod.RandomSeed
		}
		w.digest = "random:" + strconv.FormatInt(w.seed, 10)
		return nil
	}
	w.url, w.sha256 = mod.Weights, mod.SHA256
	bu, key, err := manifests.SplitObjectURL(mod.Weights)
	if err != nil {
		return invalidf("spec.model.weights: %v", err)
	}
	if w.bucket, err = b.buckets.open(ctx, bu); err != nil {
		return err
	}
	w.key = key
	obj, err := w.bucket.Attributes(ctx, key)
	if errors.Is(err, storage.ErrNotFound) {
		return invalidError{fmt.Errorf("spec.model.weights %s: %w", storage.Redact(mod.Weights), err)}
	} else if err != nil {
		return fmt.Errorf("spec.model.weights: %w", err)
	}
	w.size = obj.Size
	if w.sha256 != "" {
		w.digest = "sha256:" + w.sha256
	} else {
		w.digest = "version:" + objectVersion(obj)
	}
	return nil
}

// objectVersion is what identifies an object's content: its MD5, else its ETag, else its
// modification time and size.
func objectVersion(o storage.Object) string {
	switch {
	case len(o.MD5) > 0:
		return "md5:" + hex.EncodeToString(o.MD5)
	case o.ETag != "":
		return "etag:" + strings.Trim(o.ETag, `"`)
	default:
		return "mtime:" + o.ModTime.UTC().Format(time.RFC3339Nano)
	}
}

// listSource returns a source's objects sorted by key: those named by Keys (or keys, for
// pairing list), or every object under it that Source.Match selects.
func (b *batch) listSource(ctx context.Context, src source, spec manifests.Source, at string, keys []string) ([]object, error) {
	var objs []object
	var need []int // objects without a version from the listing
	if keys == nil && spec.Keys == nil {
		err := src.bucket.List(ctx, src.prefix, func(o storage.Object) error {
			rel := strings.TrimPrefix(o.Key, src.prefix)
			if rel == "" || !spec.Match(rel) {
				return nil
			}
			ob := object{key: rel, size: o.Size}
			if len(o.MD5) > 0 {
				ob.version = objectVersion(o)
			} else {
				need = append(need, len(objs))
			}
			objs = append(objs, ob)
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("%s: list %s: %w", at, storage.Redact(src.url), err)
		}
	} else {
		if keys == nil {
			keys = spec.Keys
		}
		for _, k := range keys {
			objs = append(objs, object{key: k})
			need = append(need, len(objs)-1)
		}
	}
	// Attributes for the rest, IOJobs at a time.
	var mu sync.Mutex
	var missing []string
	p := pool.New().WithErrors().WithContext(ctx).WithMaxGoroutines(b.cfg.IOJobs)
	for _, i := range need {
		p.Go(func(ctx context.Context) error {
			o, err := src.bucket.Attributes(ctx, src.prefix+objs[i].key)
			if errors.Is(err, storage.ErrNotFound) {
				mu.Lock()
				missing = append(missing, objs[i].key)
				mu.Unlock()
				return nil
			}
			if err != nil {
				return fmt.Errorf("%s: %w", at, err)
			}
			objs[i].version, objs[i].size = objectVersion(o), o.Size
			return nil
		})
	}
	if err := p.Wait(); err != nil {
		return nil, err
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return nil, invalidf("%s: not found under %s: %s", at, storage.Redact(src.url), strings.Join(missing, ", "))
	}
	slices.SortFunc(objs, func(a, b object) int { return strings.Compare(a.key, b.key) })
	return objs, nil
}

type pairIn struct{ content, style object }

// pairs lists the inputs and pairs them as the manifest says.
func (b *batch) pairs(ctx context.Context) ([]pairIn, error) {
	in := b.m.Spec.Inputs
	var ckeys, skeys []string
	if in.Pairing == manifests.PairingList {
		ckeys, skeys = []string{}, []string{}
		for _, p := range in.Pairs {
			ckeys = append(ckeys, p.Content)
			skeys = append(skeys, p.Style)
		}
		slices.Sort(ckeys)
		slices.Sort(skeys)
		ckeys, skeys = slices.Compact(ckeys), slices.Compact(skeys)
	}
	contents, err := b.listSource(ctx, b.contents, in.Contents, "spec.inputs.contents", ckeys)
	if err != nil {
		return nil, err
	}
	styles, err := b.listSource(ctx, b.styles, in.Styles, "spec.inputs.styles", skeys)
	if err != nil {
		return nil, err
	}
	return pairUp(in, contents, styles)
}

// pairUp pairs sorted contents and styles: cross (content-major), zip or the listed pairs in
// the manifest's order.
func pairUp(in manifests.Inputs, contents, styles []object) ([]pairIn, error) {
	var out []pairIn
	switch in.Pairing {
	case manifests.PairingZip:
		if len(contents) != len(styles) {
			return nil, invalidf("spec.inputs.pairing: zip needs as many contents as styles, found %d contents and %d styles", len(contents), len(styles))
		}
		for i := range contents {
			out = append(out, pairIn{contents[i], styles[i]})
		}
	case manifests.PairingList:
		find := func(objs []object, k string) object {
			i, _ := slices.BinarySearchFunc(objs, k, func(o object, k string) int { return strings.Compare(o.key, k) })
			return objs[i]
		}
		for _, p := range in.Pairs {
			out = append(out, pairIn{find(contents, p.Content), find(styles, p.Style)})
		}
	default:
		for _, c := range contents {
			for _, s := range styles {
				out = append(out, pairIn{c, s})
			}
		}
	}
	return out, nil
}

// buildItems makes the items (pairs times presets), their IDs and keys, and refuses keys that
// escape the output prefix or collide.
func (b *batch) buildItems(pairs []pairIn, params []transfer.Params) error {
	spec := b.m.Spec
	var problems []string
	owner := map[string]string{}
	for _, pr := range pairs {
		for i, preset := range b.presets {
			it := &item{index: len(b.items), content: pr.content, style: pr.style, params: params[i]}
			it.shard = it.index % b.cfg.ShardCount
			it.paramsDigest = params[i].Digest()
			keys, err := outputKeys(b.out.prefix, preset.Name, pr.content.key, pr.style.key, spec.Output.Format)
			if err != nil {
				if !slices.Contains(problems, err.Error()) { // once, not once per pair and preset
					problems = append(problems, err.Error())
				}
				continue
			}
			it.keys = keys
			it.pair = Pair{Content: pr.content.key, Style: pr.style.key, Preset: preset.Name}
			it.pair.ID = itemID(b.contents.url, pr.content, b.styles.url, pr.style, it.paramsDigest, b.weights.digest, spec.Output)
			for _, k := range []string{keys.Image, keys.LossLog, keys.Provenance} {
				desc := fmt.Sprintf("content %s, style %s, preset %s", pr.content.key, pr.style.key, preset.Name)
				if prev, dup := owner[k]; dup {
					problems = append(problems, fmt.Sprintf("output key %s is written by both (%s) and (%s): rename an input", k, prev, desc))
				}
				owner[k] = desc
			}
			b.items = append(b.items, it)
		}
	}
	if len(problems) > 0 {
		if len(problems) > 20 {
			problems = append(problems[:20], fmt.Sprintf("and %d more", len(problems)-20))
		}
		return invalidf("%s", strings.Join(problems, "\n"))
	}
	return nil
}

// OutputKeysFor returns the output keys of content key content (relative to the contents
// URL) and style key style with preset, under prefix (the output URL's prefix) for format
// ("png" or "jpeg"): prefix+"preset/contentStem__styleStem" plus ".png"/".jpg", ".loss.jsonl",
// ".loss.png" and ".json". contentStem is content without its extension (directories kept), styleStem the
// style's base name without extension. Keys that would escape the prefix (absolute, "..",
// "." or empty segments, backslashes) are refused.
func OutputKeysFor(prefix, preset, content, style, format string) (OutputKeys, error) {
	return outputKeys(prefix, preset, content, style, format)
}

func outputKeys(prefix, preset, content, style, format string) (OutputKeys, error) {
	for _, k := range []struct{ what, key string }{{"content", content}, {"style", style}} {
		if err := checkRelKey(k.key); err != nil {
			return OutputKeys{}, fmt.Errorf("%s key %q %v", k.what, k.key, err)
		}
	}
	cstem := strings.TrimSuffix(content, path.Ext(content))
	sbase := path.Base(style)
	sstem := strings.TrimSuffix(sbase, path.Ext(sbase))
	if path.Base(cstem) == "" || sstem == "" || strings.HasSuffix(cstem, "/") {
		return OutputKeys{}, fmt.Errorf("content %q or style %q has an empty name without its extension", content, style)
	}
	base := prefix + preset + "/" + cstem + "__" + sstem
	ext := ".png"
	if format == manifests.FormatJPEG {
		ext = ".jpg"
	}
	return OutputKeys{Image: base + ext, LossLog: base + ".loss.jsonl", LossPlot: base + ".loss.png", Provenance: base + ".json"}, nil
}

func checkRelKey(k string) error {
	switch {
	case k == "":
		return errors.New("is empty")
	case strings.HasPrefix(k, "/"):
		return errors.New("is absolute and would escape the output prefix")
	case strings.Contains(k, `\`):
		return errors.New("holds a backslash")
	}
	for _, seg := range strings.Split(k, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("has a %q path segment and would escape the output prefix", seg)
		}
	}
	return nil
}

// itemID hashes what determines an item's result.
func itemID(curl string, c object, surl string, s object, paramsDigest, weightsDigest string, out manifests.Output) string {
	h := sha256.New()
	q := 0
	if out.JPEGQuality != nil {
		q = *out.JPEGQuality
	}
	fmt.Fprintf(h, "nst-item-v1\ncontent %s %q %s %d\nstyle %s %q %s %d\nparams %s\nweights %s\noutput %s %d\n",
		stripQuery(curl), c.key, c.version, c.size, stripQuery(surl), s.key, s.version, s.size,
		paramsDigest, weightsDigest, out.Format, q)
	return hex.EncodeToString(h.Sum(nil))[:16]
}

func stripQuery(u string) string {
	base, _, _ := strings.Cut(u, "?")
	return base
}

// doneID returns the ID recorded in an item's provenance, "" if there is none.
func (b *batch) doneID(ctx context.Context, it *item) (string, error) {
	data, _, err := b.out.bucket.Read(ctx, it.keys.Provenance, 16<<20)
	if errors.Is(err, storage.ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	var p struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(data, &p); err != nil || p.ID == "" {
		return "unreadable", nil
	}
	return p.ID, nil
}

// work estimates an item's cost: steps times output pixels, summed over scales, taking the
// output as a square of Size (an upper bound; 0 when Size is 0, the content's own size).
func work(p transfer.Params) int64 {
	scales := max(p.Scales, 1)
	var w int64
	for s := range scales {
		side := int64(p.Size >> (scales - 1 - s))
		w += int64(p.Steps) * side * side
	}
	return w
}
