package pipeline

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"log/slog"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sourcegraph/conc/pool"

	"github.com/nst-project/nst/render"
	"github.com/nst-project/nst/storage"
	"github.com/nst-project/nst/transfer/imaging"
)

// Contact sheets live under the output URL:
//
//	_report/index.html                        the latest run's index (totals, failures, pages)
//	_report/<run ID>/index.html               each run's index
//	_report/<run ID>/shard-<i>-of-<n>.<attempt>.<k>.html   pages of the pairs an attempt wrote
//	_report/thumbs/c-<hash>.jpg               content thumbnails (s-: styles, r-<ID>: results)
//
// A shard writes its pages as it goes, a page per render.PageSize items; the shard that ends
// last (the one that finds every shard's summary) writes the run's index.
const (
	sheetDir   = "_report/"
	SheetIndex = sheetDir + "index.html" // the latest run's index, under the output URL
)

func runIndexKey(runID string) string { return sheetDir + runID + "/index.html" }

// sheetEnv is what writing sheets needs of a catalogue.
type sheetEnv struct {
	cat   *catalogue
	cfg   Config
	grace context.Context // for the writes
	log   *slog.Logger
	// made holds the thumbnail keys this process wrote or found (see thumb).
	made *sync.Map
}

func (r *runner) sheetEnv() sheetEnv {
	return sheetEnv{cat: r.cat, cfg: r.cfg, grace: r.grace, log: r.log, made: &r.thumbs}
}

// row makes a sheet row of a pair log line, with links relative to the page at pageKey.
func (sw sheetEnv) row(p SummaryPair, pageKey string) render.Row {
	row := render.Row{ID: p.ID, Content: p.Content, Style: p.Style, Preset: p.Preset, Status: string(p.Status),
		Steps: p.Steps, DurationS: p.DurationS}
	if p.Status != StatusDone {
		if p.Op != "" {
			row.Cause = p.Op + ": " + p.Error
		}
		return row
	}
	rel := func(k string) string { return relLink(pageKey, k) }
	row.Final.TotalLoss, row.Final.ContentLoss, row.Final.StyleLoss, row.Final.TVLoss = p.TotalLoss, p.ContentLoss, p.StyleLoss, p.TVLoss
	row.Result, row.LossLog, row.LossPlot, row.Provenance = rel(p.Outputs.Image), rel(p.Outputs.LossLog), rel(p.Outputs.LossPlot), rel(p.Outputs.Provenance)
	c, s, r := sw.thumbKeys(p.Pair)
	row.ContentThumb, row.StyleThumb, row.ResultThumb = rel(c), rel(s), rel(r)
	return row
}

// thumbKeys are a pair's thumbnail keys relative to the output prefix. Content and style
// thumbnails are named by their input's URL, key and version, so pairs share them.
func (sw sheetEnv) thumbKeys(p Pair) (content, style, result string) {
	h := func(kind, u, key string) string {
		d := sha256.Sum256([]byte(stripQuery(u) + "\x00" + key))
		return sheetDir + "thumbs/" + kind + "-" + hex.EncodeToString(d[:8]) + ".jpg"
	}
	return h("c", sw.cat.contents.url, p.Content), h("s", sw.cat.styles.url, p.Style), sheetDir + "thumbs/r-" + p.ID + ".jpg"
}

// writeThumbs makes the thumbnails of an item this run wrote, from the images it holds: a
// content or style thumbnail once per process (and never over an existing one), the result's
// always. Failures are logged: a sheet without a thumbnail is still a sheet.
func (r *runner) writeThumbs(ctx context.Context, l *loaded, result *image.NRGBA) {
	sw := r.sheetEnv()
	c, s, res := sw.thumbKeys(l.it.pair)
	for _, t := range []struct {
		key  string
		img  *image.NRGBA
		once bool
	}{{c, l.content, true}, {s, l.style, true}, {res, result, false}} {
		if err := sw.thumb(ctx, t.key, func() (*image.NRGBA, error) { return t.img, nil }, t.once); err != nil {
			r.log.Warn("contact sheet: thumbnail not made", "pair", l.it.pair.ID, "key", t.key, "err", err)
		}
	}
}

// thumb writes the thumbnail of the image src gives at key (relative to the output prefix).
// With once, a key this process made already is skipped and an existing object is kept.
func (sw sheetEnv) thumb(ctx context.Context, key string, src func() (*image.NRGBA, error), once bool) error {
	if once {
		if _, done := sw.made.LoadOrStore(key, true); done {
			return nil
		}
	}
	img, err := src()
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := imaging.Encode(&buf, render.Thumbnail(img), "jpeg", 85); err != nil {
		return err
	}
	out := sw.cat.out
	opts := storage.WriteOptions{ContentType: "image/jpeg"}
	if once {
		err = out.bucket.WriteOnce(ctx, out.prefix+key, buf.Bytes(), opts)
		if errors.Is(err, storage.ErrExists) {
			return nil
		}
		return err
	}
	return out.bucket.Write(ctx, out.prefix+key, buf.Bytes(), opts)
}

// summaryName matches a summary's name in _runs/<run ID>/.
var summaryName = regexp.MustCompile(`^shard-(\d+)-of-(\d+)\.([0-9TZ]+-[0-9a-f]+)\.json$`)

// runSummaries lists run runID's summaries and reads the latest attempt of every shard of one
// shard count: want, or (want 0) the count of the most recent attempt. With complete, it
// reads nothing unless every shard of that count has a summary (so that the many shards of a
// large run do not each read all the others'). It returns the summaries by shard and the count.
func (sw sheetEnv) runSummaries(ctx context.Context, runID string, want int, complete bool) (map[int]Summary, int, error) {
	out := sw.cat.out
	dir := out.prefix + runsDir + runID + "/"
	type found struct {
		key, attempt string
	}
	latest := map[[2]int]found{} // (count, shard) -> latest attempt
	newest, newestCount := "", 0
	err := out.bucket.List(ctx, dir, func(o storage.Object) error {
		m := summaryName.FindStringSubmatch(strings.TrimPrefix(o.Key, dir))
		if m == nil {
			return nil
		}
		i, _ := strconv.Atoi(m[1])
		n, _ := strconv.Atoi(m[2])
		if i >= n || (want > 0 && n != want) {
			return nil
		}
		k := [2]int{n, i}
		if f, ok := latest[k]; !ok || m[3] > f.attempt {
			latest[k] = found{o.Key, m[3]}
		}
		if m[3] > newest {
			newest, newestCount = m[3], n
		}
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("list summaries: %w", err)
	}
	n := want
	if n == 0 {
		n = newestCount
	}
	var keys []string
	for k, f := range latest {
		if k[0] == n {
			keys = append(keys, f.key)
		}
	}
	if n == 0 || (complete && len(keys) < n) {
		return nil, n, nil
	}
	sums := map[int]Summary{}
	var mu sync.Mutex
	p := pool.New().WithErrors().WithContext(ctx).WithMaxGoroutines(sw.cfg.IOJobs)
	for _, k := range keys {
		p.Go(func(ctx context.Context) error {
			data, _, err := out.bucket.Read(ctx, k, 16<<20)
			if err != nil {
				return fmt.Errorf("read summary: %w", err)
			}
			var s Summary
			if err := json.Unmarshal(data, &s); err != nil {
				return fmt.Errorf("summary %s: %w", k, err)
			}
			mu.Lock()
			sums[s.Shard] = s
			mu.Unlock()
			return nil
		})
	}
	if err := p.Wait(); err != nil {
		return nil, n, err
	}
	return sums, n, nil
}

// maxIndexFailures is how many failures a run's index lists (the rest are counted).
const maxIndexFailures = 500

// writeIndexSheet writes run runID's index, _report/<run ID>/index.html and
// _report/index.html, from its shards' summaries: those of count want once all exist (else it
// writes nothing and returns ""), or (want 0) whatever the latest attempts hold. It returns the
// key of _report/index.html under the output URL.
func writeIndexSheet(ctx context.Context, sw sheetEnv, runID string, want int) (string, error) {
	sums, n, err := sw.runSummaries(ctx, runID, want, want > 0)
	if err != nil || sums == nil {
		return "", err
	}
	cat := sw.cat
	x := render.Index{Title: cat.m.Metadata.Name + ": contact sheet", RunID: runID, Manifest: storage.Redact(sw.cfg.ManifestURL)}
	var start, end time.Time
	for _, i := range slices.Sorted(mapsKeys(sums)) {
		s := sums[i]
		t := &x.Totals
		t.Planned += s.Planned
		t.Done += s.Done
		t.Skipped += s.Skipped
		t.Stale += s.Stale
		t.Failed += s.Failed
		t.Interrupted += s.Interrupted
		t.NotRun += s.Planned - s.Done - s.Skipped - s.Stale - s.Failed - s.Interrupted
		t.ComputeS += s.ComputeS
		if start.IsZero() || s.Start.Before(start) {
			start = s.Start
		}
		if s.End.After(end) {
			end = s.End
		}
		x.Shards = append(x.Shards, render.Shard{Index: s.Shard, Count: s.Shards, Attempt: s.Attempt, Planned: s.Planned, Done: s.Done,
			Skipped: s.Skipped, Stale: s.Stale, Failed: s.Failed, Interrupted: s.Interrupted, Stopped: s.Stopped, Pages: s.Pages, PairLogs: s.PairLogs})
		for _, f := range s.Failures {
			if len(x.Failures) < maxIndexFailures {
				x.Failures = append(x.Failures, render.Failure{ID: f.ID, Content: f.Content, Style: f.Style, Preset: f.Preset, Op: f.Op, Error: f.Error})
			} else {
				x.FailuresOmitted++
			}
		}
		x.FailuresOmitted += s.FailuresOmitted
	}
	if end.After(start) {
		x.Totals.WallS = end.Sub(start).Seconds()
	}
	x.Scope = fmt.Sprintf("all %d shards", n)
	if len(sums) < n {
		x.Scope = fmt.Sprintf("%d of %d shards", len(sums), n)
		x.Notes = append(x.Notes, fmt.Sprintf("Only %d of %d shard summaries exist: the others have not ended yet.", len(sums), n))
	}
	var key string
	for _, k := range []string{runIndexKey(runID), SheetIndex} {
		y := x
		y.Shards = slices.Clone(x.Shards)
		for i := range y.Shards {
			y.Shards[i].Pages = relLinks(k, y.Shards[i].Pages)
			y.Shards[i].PairLogs = relLinks(k, y.Shards[i].PairLogs)
		}
		var buf bytes.Buffer
		if err := render.WriteIndex(&buf, y); err != nil {
			return "", err
		}
		if err := cat.out.bucket.Write(sw.grace, cat.out.prefix+k, buf.Bytes(), storage.WriteOptions{ContentType: "text/html; charset=utf-8"}); err != nil {
			return "", fmt.Errorf("write contact sheet: %w", err)
		}
		key = cat.out.prefix + k
	}
	return key, nil
}

func relLinks(from string, to []string) []string {
	out := make([]string, len(to))
	for i, t := range to {
		out[i] = relLink(from, t)
	}
	return out
}

func mapsKeys[K comparable, V any](m map[K]V) func(func(K) bool) {
	return func(yield func(K) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// WriteContactSheet (re)writes the contact sheet of a run of cfg's manifest (cfg.RunID, else the
// default run ID) from what the bucket holds: the latest attempt of each shard's summary (of
// the shard count of the most recent attempt). For a shard that ran without Config.ContactSheet it
// first makes the pages from its pair log, and the thumbnails of the pairs it wrote from their
// inputs and results. It lists nothing of the catalogue: its cost follows the run's work. It
// returns the key of _report/index.html under the output URL. Errors are like PlanRun's; a
// pair whose thumbnails cannot be made is shown without them.
func WriteContactSheet(ctx context.Context, cfg Config) (string, error) {
	cfg.ShardIndex, cfg.ShardCount = 0, 1
	cfg, err := cfg.withDefaults(false)
	if err != nil {
		return "", err
	}
	cat, err := expand(ctx, cfg)
	if err != nil {
		return "", err
	}
	defer cat.buckets.close()
	sw := sheetEnv{cat: cat, cfg: cfg, grace: ctx, log: cfg.Logger, made: &sync.Map{}}
	sums, n, err := sw.runSummaries(ctx, cat.runID, 0, false)
	if err != nil {
		return "", err
	}
	if n == 0 {
		return "", invalidf("run %s has no shard summaries under %s", cat.runID, storage.Redact(cat.out.url))
	}
	for _, s := range sums {
		if len(s.Pages) > 0 || len(s.PairLogs) == 0 {
			continue
		}
		if err := sw.pagesFromLog(ctx, s); err != nil {
			return "", err
		}
	}
	return writeIndexSheet(ctx, sw, cat.runID, 0)
}

// pagesFromLog makes a summary's pages (and the thumbnails of its done pairs) from its pair
// log, then rewrites the summary with them.
func (sw sheetEnv) pagesFromLog(ctx context.Context, s Summary) error {
	out := sw.cat.out
	name := fmt.Sprintf("shard-%d-of-%d.%s", s.Shard, s.Shards, s.Attempt)
	for k, logKey := range s.PairLogs {
		data, _, err := out.bucket.Read(ctx, out.prefix+logKey, 256<<20)
		if err != nil {
			return fmt.Errorf("read pair log: %w", err)
		}
		pageKey := fmt.Sprintf("%s%s/%s.%05d.html", sheetDir, s.RunID, name, k)
		var rows []render.Row
		sc := bufio.NewScanner(bytes.NewReader(data))
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var p SummaryPair
			if err := json.Unmarshal(sc.Bytes(), &p); err != nil {
				return fmt.Errorf("pair log %s: %w", logKey, err)
			}
			rows = append(rows, sw.row(p, pageKey))
			if p.Status == StatusDone {
				sw.thumbsFromBucket(ctx, p)
			}
		}
		page := render.Page{Title: sw.cat.m.Metadata.Name + ": contact sheet", RunID: s.RunID,
			Scope: fmt.Sprintf("shard %d of %d, attempt %s, page %d", s.Shard, s.Shards, s.Attempt, k+1),
			Index: relLink(pageKey, runIndexKey(s.RunID)), Rows: rows}
		if k > 0 {
			page.Prev = relLink(pageKey, fmt.Sprintf("%s%s/%s.%05d.html", sheetDir, s.RunID, name, k-1))
		}
		if k < len(s.PairLogs)-1 {
			page.Next = relLink(pageKey, fmt.Sprintf("%s%s/%s.%05d.html", sheetDir, s.RunID, name, k+1))
		}
		var buf bytes.Buffer
		if err := render.WritePage(&buf, page); err != nil {
			return err
		}
		if err := out.bucket.Write(sw.grace, out.prefix+pageKey, buf.Bytes(), storage.WriteOptions{ContentType: "text/html; charset=utf-8"}); err != nil {
			return fmt.Errorf("write contact sheet page: %w", err)
		}
		s.Pages = append(s.Pages, pageKey)
	}
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return out.bucket.Write(sw.grace, out.prefix+summaryKey(s.RunID, name), append(data, '\n'), storage.WriteOptions{ContentType: "application/json"})
}

// thumbsFromBucket makes a done pair's thumbnails by reading its inputs and result.
func (sw sheetEnv) thumbsFromBucket(ctx context.Context, p SummaryPair) {
	cat := sw.cat
	c, s, r := sw.thumbKeys(p.Pair)
	for _, t := range []struct {
		key  string
		src  source
		k    string
		once bool
	}{{c, cat.contents, cat.contents.prefix + p.Content, true}, {s, cat.styles, cat.styles.prefix + p.Style, true}, {r, cat.out, cat.out.prefix + p.Outputs.Image, false}} {
		err := sw.thumb(ctx, t.key, func() (*image.NRGBA, error) {
			lim := imaging.DefaultLimits()
			data, _, err := t.src.bucket.Read(ctx, t.k, lim.MaxBytes)
			if err != nil {
				return nil, err
			}
			img, _, err := imaging.Decode(bytes.NewReader(data), lim)
			return img, err
		}, t.once)
		if err != nil {
			sw.log.Warn("contact sheet: thumbnail not made", "pair", p.ID, "key", t.key, "err", err)
		}
	}
}

// relLink is the link from the object at key from to the object at key to (both relative to
// the output prefix), each path segment escaped: up to their common directory, then down.
func relLink(from, to string) string {
	dir := strings.Split(from, "/")
	dir = dir[:len(dir)-1]
	segs := strings.Split(to, "/")
	common := 0
	for common < len(dir) && common < len(segs)-1 && dir[common] == segs[common] {
		common++
	}
	segs = segs[common:]
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return strings.Repeat("../", len(dir)-common) + strings.Join(segs, "/")
}
