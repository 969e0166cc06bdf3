package pipeline

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/sourcegraph/conc/pool"

	"github.com/nst-project/nst/manifests"
	"github.com/nst-project/nst/storage"
	"github.com/nst-project/nst/transfer"
)

// catalogue is a manifest's work: the manifest with its buckets open and its parameters resolved. Its pairs are not
// held: forEachSlot streams them from the listings, as often as a caller needs.
type catalogue struct {
	cfg      Config
	m        *manifests.Manifest
	digest   string // sha256 of the manifest's bytes
	runID    string
	presets  []manifests.Preset
	params   []transfer.Params // per preset
	pdigest  []string          // params[i].Digest()
	contents source
	styles   source
	out      source
	weights  weightsRef
	buckets  *bucketSet
	// onConflict is the effective policy: Config.OnConflict, else the manifest's.
	onConflict string
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
	// err says why the object cannot be an input (an unusable key, a special file), nil if
	// it can; its pairs fail with it.
	err error
}

// weightsRef says which weights a manifest uses, without downloading them.
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

// expand loads the manifest, checks it with the engine's parameter rules, opens its buckets
// and resolves the weights. It lists no input and writes nothing.
func expand(ctx context.Context, cfg Config) (*catalogue, error) {
	cat := &catalogue{cfg: cfg, buckets: &bucketSet{cfg: cfg}}
	ok := false
	defer func() {
		if !ok {
			cat.buckets.close()
		}
	}()
	if err := cat.loadManifest(ctx); err != nil {
		return nil, err
	}
	// Parameters of every preset: every problem at once.
	cat.params = make([]transfer.Params, len(cat.presets))
	cat.pdigest = make([]string, len(cat.presets))
	var errs []error
	nManifest := 0
	for i, p := range cat.presets {
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
		if cat.params[i], err = PresetParams(cat.m.Spec.Params, p, at); err != nil {
			errs = append(errs, err)
		}
		cat.pdigest[i] = cat.params[i].Digest()
	}
	if err := mergeProblems(errs); err != nil {
		return nil, err
	}
	var err error
	if cat.contents, err = cat.buckets.openDir(ctx, cat.m.Spec.Inputs.Contents.URL); err != nil {
		return nil, err
	}
	if cat.styles, err = cat.buckets.openDir(ctx, cat.m.Spec.Inputs.Styles.URL); err != nil {
		return nil, err
	}
	if cat.out, err = cat.buckets.openDir(ctx, cat.m.Spec.Output.URL); err != nil {
		return nil, err
	}
	if err := cat.resolveWeights(ctx); err != nil {
		return nil, err
	}
	cat.onConflict = cmp.Or(cfg.OnConflict, cat.m.Spec.Output.OnConflict, manifests.ConflictFail)
	if cat.runID = cfg.RunID; cat.runID == "" {
		cat.runID = fmt.Sprintf("%s-%s-%s", cat.m.Metadata.Name, cat.digest[:8], time.Now().UTC().Format("20060102"))
	}
	ok = true
	return cat, nil
}

// side is one input source of the manifest, with the keys it names (nil: list it).
type side struct {
	src  source
	spec manifests.Source
	at   string   // YAML path, for errors
	keys []string // sorted, distinct; nil unless the manifest names the keys
}

func (cat *catalogue) sides() (contents, styles side) {
	in := cat.m.Spec.Inputs
	contents = side{src: cat.contents, spec: in.Contents, at: "spec.inputs.contents", keys: in.Contents.Keys}
	styles = side{src: cat.styles, spec: in.Styles, at: "spec.inputs.styles", keys: in.Styles.Keys}
	if in.Pairing == manifests.PairingList {
		contents.keys, styles.keys = []string{}, []string{}
		for _, p := range in.Pairs {
			contents.keys = append(contents.keys, p.Content)
			styles.keys = append(styles.keys, p.Style)
		}
	}
	for _, s := range []*side{&contents, &styles} {
		if s.keys != nil {
			s.keys = slices.Compact(slices.Sorted(slices.Values(s.keys)))
		}
	}
	return contents, styles
}

// maxProbedKeys is how many named keys a side reads one by one (a HEAD each); above it, the
// side's URL is listed and the named keys picked out, which costs a request per 1000 objects
// under the URL instead of one per key.
const maxProbedKeys = 200

// listSide calls fn with each of a side's objects in key order (byte-wise): the objects under
// its URL that its Include/Exclude select, or the keys it names. Named keys that do not exist
// make an ErrInvalid error listing them (after the others were passed to fn). fn's errors come
// back unchanged.
func (cat *catalogue) listSide(ctx context.Context, s side, fn func(object) error) error {
	list := func(pick func(rel string, o storage.Object) (object, bool)) error {
		err := s.src.bucket.List(ctx, s.src.prefix, func(o storage.Object) error {
			ob, ok := pick(strings.TrimPrefix(o.Key, s.src.prefix), o)
			if !ok {
				return nil
			}
			if err := fn(ob); err != nil {
				return callbackError{err}
			}
			return nil
		})
		var ce callbackError
		if errors.As(err, &ce) {
			return ce.err
		}
		if err != nil {
			return fmt.Errorf("%s: list %s: %w", s.at, storage.Redact(s.src.url), err)
		}
		return nil
	}
	if s.keys == nil {
		return list(func(rel string, o storage.Object) (object, bool) {
			if rel == "" || !s.spec.Match(rel) || (strings.HasSuffix(rel, "/") && o.Size == 0) {
				return object{}, false // not selected, or a "directory" placeholder some tools create
			}
			return listedObject(rel, o), true
		})
	}
	var missing []string
	if len(s.keys) <= maxProbedKeys {
		objs := make([]object, len(s.keys))
		found := make([]bool, len(s.keys))
		p := pool.New().WithErrors().WithContext(ctx).WithMaxGoroutines(cat.cfg.IOJobs)
		for i, k := range s.keys {
			p.Go(func(ctx context.Context) error {
				o, err := s.src.bucket.Attributes(ctx, s.src.prefix+k)
				if errors.Is(err, storage.ErrNotFound) {
					return nil
				}
				if err != nil {
					return fmt.Errorf("%s: %w", s.at, err)
				}
				objs[i], found[i] = listedObject(k, o), true
				return nil
			})
		}
		if err := p.Wait(); err != nil {
			return err
		}
		for i, o := range objs {
			if !found[i] {
				missing = append(missing, s.keys[i])
			} else if err := fn(o); err != nil {
				return err
			}
		}
	} else {
		found := make([]bool, len(s.keys))
		err := list(func(rel string, o storage.Object) (object, bool) {
			i, ok := slices.BinarySearch(s.keys, rel)
			if ok {
				found[i] = true
			}
			return listedObject(rel, o), ok
		})
		if err != nil {
			return err
		}
		for i, ok := range found {
			if !ok {
				missing = append(missing, s.keys[i])
			}
		}
	}
	if len(missing) > 0 {
		if len(missing) > 20 {
			missing = append(missing[:20], fmt.Sprintf("and %d more", len(missing)-20))
		}
		return invalidf("%s: not found under %s: %s", s.at, storage.Redact(s.src.url), strings.Join(missing, ", "))
	}
	return nil
}

// callbackError carries a listing callback's error out of storage.List unwrapped.
type callbackError struct{ err error }

func (e callbackError) Error() string { return e.err.Error() }

// errStop ends a stream early without an error.
var errStop = errors.New("stop")

// listedObject makes an input object of a listed (or probed) storage object.
func listedObject(rel string, o storage.Object) object {
	ob := object{key: rel, size: o.Size, version: objectVersion(o)}
	switch {
	case o.Err != nil: // listed, but not to be opened: a special file, a link out, a name that maps back to another key
		ob.err = o.Err
	case !utf8.ValidString(rel):
		ob.err = fmt.Errorf("key %q is not valid UTF-8", rel)
	default:
		if err := checkRelKey(rel); err != nil {
			ob.err = fmt.Errorf("key %q %v", rel, err)
		}
	}
	return ob
}

// pairIn is one content/style pair.
type pairIn struct{ content, style object }

// listing is a side's listing running on its own goroutine.
type listing struct {
	ch    <-chan object
	errc  <-chan error
	err   error
	ended bool
}

// wait returns the listing's error once its channel is closed.
func (l *listing) wait() error {
	if !l.ended {
		l.err, l.ended = <-l.errc, true
	}
	return l.err
}

// stop drains the channel (after the context was cancelled) and waits for the end.
func (l *listing) stop() {
	for range l.ch {
	}
	l.wait()
}

func (cat *catalogue) stream(ctx context.Context, s side) *listing {
	ch := make(chan object, 256)
	errc := make(chan error, 1)
	go func() {
		defer close(ch)
		errc <- cat.listSide(ctx, s, func(o object) error {
			select {
			case ch <- o:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	}()
	return &listing{ch: ch, errc: errc}
}

// forEachPair streams the catalogue's pairs to fn: cross pairs every content with every style
// (both sides are listed at once until one ends; that smaller side is held and the other
// streamed, as the outer loop), zip pairs the i-th content with the i-th style in key order,
// list pairs as the manifest lists them. Memory is bounded by the smaller side of a cross,
// the manifest's list and a few listing pages. A zip whose sides differ in length is an
// ErrInvalid error, found when the shorter side ends. fn's errors come back unchanged.
func (cat *catalogue) forEachPair(ctx context.Context, fn func(pairIn) error) error {
	contents, styles := cat.sides()
	if cat.m.Spec.Inputs.Pairing == manifests.PairingList {
		return cat.listPairs(ctx, contents, styles, fn)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c, s := cat.stream(ctx, contents), cat.stream(ctx, styles)
	// fail ends both listings early with err.
	fail := func(err error) error {
		cancel()
		c.stop()
		s.stop()
		return err
	}
	// end returns the listings' own errors once both have ended.
	end := func() error { return cmp.Or(c.wait(), s.wait()) }
	if cat.m.Spec.Inputs.Pairing == manifests.PairingZip {
		n := 0
		for {
			co, cok := <-c.ch
			so, sok := <-s.ch
			if !cok || !sok {
				if cok || sok {
					nc, ns := n+drainCount(c.ch), n+drainCount(s.ch)
					if cok {
						nc++
					} else {
						ns++
					}
					if err := end(); err != nil {
						return err
					}
					return invalidf("spec.inputs.pairing: zip needs as many contents as styles, found %d contents and %d styles", nc, ns)
				}
				return end()
			}
			n++
			if err := fn(pairIn{co, so}); err != nil {
				return fail(err)
			}
		}
	}
	var cbuf, sbuf []object
	cOpen, sOpen := true, true
	for cOpen && sOpen {
		if o, ok := <-c.ch; ok {
			cbuf = append(cbuf, o)
		} else {
			cOpen = false
		}
		if o, ok := <-s.ch; ok {
			sbuf = append(sbuf, o)
		} else {
			sOpen = false
		}
	}
	// The side that ended is complete, unless its listing failed.
	contentsOuter := !sOpen || cOpen
	held, heldL, buf, outer := sbuf, s, cbuf, c
	if !contentsOuter {
		held, heldL, buf, outer = cbuf, c, sbuf, s
	}
	if err := heldL.wait(); err != nil {
		return fail(err)
	}
	emit := func(o object) error {
		for _, h := range held {
			p := pairIn{content: o, style: h}
			if !contentsOuter {
				p = pairIn{content: h, style: o}
			}
			if err := fn(p); err != nil {
				return err
			}
		}
		return nil
	}
	for i, o := range buf {
		if err := emit(o); err != nil {
			return fail(err)
		}
		buf[i] = object{}
	}
	for o := range outer.ch {
		if err := emit(o); err != nil {
			return fail(err)
		}
	}
	return end()
}

func drainCount(ch <-chan object) int {
	n := 0
	for range ch {
		n++
	}
	return n
}

// listPairs streams the manifest's pairs (pairing list) in its order.
func (cat *catalogue) listPairs(ctx context.Context, contents, styles side, fn func(pairIn) error) error {
	get := func(s side) (map[string]object, error) {
		m := make(map[string]object, len(s.keys))
		err := cat.listSide(ctx, s, func(o object) error { m[o.key] = o; return nil })
		return m, err
	}
	cm, err := get(contents)
	if err != nil {
		return err
	}
	sm, err := get(styles)
	if err != nil {
		return err
	}
	for _, p := range cat.m.Spec.Inputs.Pairs {
		if err := fn(pairIn{cm[p.Content], sm[p.Style]}); err != nil {
			return err
		}
	}
	return nil
}

// slotOf is where an item of pair p and preset i writes: its OutputKeys and slot hash, or
// an error for keys that would escape the output prefix.
func (cat *catalogue) slotOf(p pairIn, preset int) (OutputKeys, uint64, error) {
	keys, err := outputKeys(cat.out.prefix, cat.presets[preset].Name, p.content.key, p.style.key, cat.m.Spec.Output.Format)
	if err != nil {
		return OutputKeys{}, 0, err
	}
	base := strings.TrimPrefix(keys.Provenance, cat.out.prefix)
	return keys, slotHash(strings.TrimSuffix(base, ".json")), nil
}

// newItem builds the work item of pair p and preset i in slot keys/h.
func (cat *catalogue) newItem(p pairIn, preset int, keys OutputKeys, h uint64) *item {
	it := &item{content: p.content, style: p.style, params: &cat.params[preset], paramsDigest: cat.pdigest[preset], keys: keys, slot: h}
	it.pair = Pair{Content: p.content.key, Style: p.style.key, Preset: cat.presets[preset].Name}
	it.pair.ID = itemID(cat.contents.url, p.content, cat.styles.url, p.style, it.paramsDigest, cat.weights.digest, cat.m.Spec.Output)
	return it
}

// item is one work item: a pair and a preset.
type item struct {
	pair           Pair
	content, style object
	params         *transfer.Params
	paramsDigest   string
	keys           OutputKeys
	slot           uint64
	// What the run found at the slot, and so what it may do there.
	state slotState
	// markers are the slot's index markers of other item IDs (replaced ones are deleted
	// before the outputs are overwritten).
	markers []marker
	// ckpt is the key of a checkpoint to resume from, "" if none.
	ckpt string
}

// slotState is what a slot holds when an item's run starts.
type slotState int

const (
	slotNew     slotState = iota // no marker: nothing, or outputs the index does not know
	slotStale                    // markers of other item IDs: replaced (OnReplace)
	slotDamaged                  // marked done with this ID, but Verify found its outputs changed
	slotForced                   // Config.Force: whatever is there is overwritten
)

// resolveWeights finds the weights' digest without downloading them: the manifest's sha256,
// else the object's version.
func (cat *catalogue) resolveWeights(ctx context.Context) error {
	mod := cat.m.Spec.Model
	w := &cat.weights
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
	if w.bucket, err = cat.buckets.open(ctx, bu); err != nil {
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

// work estimates an item's cost: steps times output pixels, summed over scales, taking the
// output as a square of Size (an upper bound; 0 when Size is 0, the content's own size).
func work(p transfer.Params) int64 {
	scales := max(p.Scales, 1)
	var w int64
	for s := range scales {
		side := int64(p.Size >> (scales - 1 - s))
		w += int64(p.LevelSteps(s)) * side * side
	}
	return w
}
