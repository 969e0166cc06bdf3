package pipeline

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sourcegraph/conc/pool"

	"github.com/nst-project/nst/report"
	"github.com/nst-project/nst/storage"
	"github.com/nst-project/nst/transfer/imaging"
)

// Contact sheets live under the output URL:
//
//	_report/index.html                  every shard's pairs (written once all summaries exist)
//	_report/shard-<i>-of-<n>.html       one shard's pairs
//	_report/thumbs/c-<hash>.jpg         content thumbnails (s-: styles, r-<ID>: results)
const (
	sheetDir   = "_report/"
	SheetIndex = sheetDir + "index.html" // the merged contact sheet's key under the output URL
)

// WriteReport (re)writes the contact sheet of cfg's batch, every shard's pairs, to
// _report/index.html under the output URL, from what the bucket holds: each pair's provenance
// (done pairs: losses, time, outputs) and the run's shard summaries (failures and causes, run
// totals). Missing thumbnails are made from the inputs and results. cfg.ShardIndex and
// cfg.ShardCount are ignored: the shards are those whose summaries exist for the run ID. It
// returns the sheet's key relative to the output bucket. Errors are like PlanBatch's; a pair
// whose thumbnails cannot be made is listed without them.
func WriteReport(ctx context.Context, cfg Config) (string, error) {
	cfg.ShardIndex, cfg.ShardCount = 0, 1
	cfg, err := cfg.withDefaults(false)
	if err != nil {
		return "", err
	}
	b, err := expand(ctx, cfg)
	if err != nil {
		return "", err
	}
	defer b.buckets.close()
	sw := &sheetWriter{b: b, cfg: cfg, grace: ctx}
	return sw.write(ctx, b.items, true, "")
}

// sheetWriter gathers and writes contact sheets for a batch.
type sheetWriter struct {
	b     *batch
	cfg   Config
	grace context.Context // for the writes
	// made holds one *thumbOnce per thumbnail key: pairs share content and style thumbnails,
	// and two goroutines writing the same key at once could each find the other's write
	// half done.
	made sync.Map
}

type thumbOnce struct {
	once sync.Once
	err  error
}

// writeSheets writes this shard's contact sheet and, when every shard's summary exists, the
// merged one (a single shard writes only the merged one); it returns the key of the last one
// written.
func (r *runner) writeSheets(ctx context.Context) (string, error) {
	sw := &sheetWriter{b: r.b, cfg: r.cfg, grace: r.grace}
	var mine []*item
	for _, it := range r.b.items {
		if it.shard == r.cfg.ShardIndex {
			mine = append(mine, it)
		}
	}
	if r.cfg.ShardCount == 1 {
		return sw.write(ctx, mine, true, "")
	}
	key, err := sw.write(ctx, mine, true, fmt.Sprintf("%sshard-%d-of-%d.html", sheetDir, r.cfg.ShardIndex, r.cfg.ShardCount))
	if err != nil {
		return key, err
	}
	sums, err := sw.summaries(ctx)
	if err != nil {
		return key, err
	}
	if len(sums) < r.cfg.ShardCount {
		r.log.Info("contact sheet: not merged yet", "summaries", len(sums), "shards", r.cfg.ShardCount)
		return key, nil
	}
	// Every shard has ended once: merge. Other shards made their own thumbnails.
	return sw.write(ctx, r.b.items, false, "")
}

// summaries reads the run's shard summaries of the batch's shard count, by shard.
func (sw *sheetWriter) summaries(ctx context.Context) (map[int]Summary, error) {
	out := sw.b.out
	prefix := fmt.Sprintf("%s_runs/%s/", out.prefix, sw.b.runID)
	sums := map[int]Summary{}
	var mu sync.Mutex
	var keys []string
	err := out.bucket.List(ctx, prefix, func(o storage.Object) error {
		if strings.HasSuffix(o.Key, ".json") && strings.HasPrefix(path.Base(o.Key), "shard-") {
			keys = append(keys, o.Key)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list summaries: %w", err)
	}
	// With several shard counts for one run ID, the latest count (the batch's) wins.
	want := sw.cfg.ShardCount
	p := pool.New().WithErrors().WithContext(ctx).WithMaxGoroutines(sw.cfg.IOJobs)
	for _, k := range keys {
		p.Go(func(ctx context.Context) error {
			data, _, err := out.bucket.Read(ctx, k, 64<<20)
			if err != nil {
				return fmt.Errorf("read summary: %w", err)
			}
			var s Summary
			if err := json.Unmarshal(data, &s); err != nil {
				return fmt.Errorf("summary %s: %w", k, err)
			}
			if want > 1 && s.Shards != want {
				return nil
			}
			mu.Lock()
			defer mu.Unlock()
			if old, ok := sums[s.Shard]; !ok || old.Shards < s.Shards || s.End.After(old.End) {
				sums[s.Shard] = s
			}
			return nil
		})
	}
	if err := p.Wait(); err != nil {
		return nil, err
	}
	if want <= 1 { // WriteReport: keep the largest shard count found
		n := 0
		for _, s := range sums {
			n = max(n, s.Shards)
		}
		for i, s := range sums {
			if s.Shards != n {
				delete(sums, i)
			}
		}
	}
	return sums, nil
}

// write gathers the items' rows and writes a sheet at key (SheetIndex if ""), making missing
// thumbnails of done items if thumbs.
func (sw *sheetWriter) write(ctx context.Context, items []*item, thumbs bool, key string) (string, error) {
	b := sw.b
	if key == "" {
		key = SheetIndex
	}
	sums, err := sw.summaries(ctx)
	if err != nil {
		return "", err
	}
	failed := map[string]SummaryFailure{}
	status := map[string]Status{}
	var start, end time.Time
	shards := 0
	for _, i := range slices.Sorted(maps.Keys(sums)) { // by shard: deterministic
		s := sums[i]
		shards = max(shards, s.Shards)
		for _, f := range s.Failures {
			failed[f.ID] = f
		}
		for _, p := range s.Pairs {
			status[p.ID] = p.Status
		}
		if start.IsZero() || s.Start.Before(start) {
			start = s.Start
		}
		if s.End.After(end) {
			end = s.End
		}
	}
	sheet := report.Sheet{Title: b.m.Metadata.Name + ": contact sheet", RunID: b.runID, Manifest: storage.Redact(sw.cfg.ManifestURL)}
	rows := make([]report.Row, len(items))
	var mu sync.Mutex
	var thumbFails int
	p := pool.New().WithErrors().WithContext(ctx).WithMaxGoroutines(sw.cfg.IOJobs)
	for i, it := range items {
		p.Go(func(ctx context.Context) error {
			row, ok, err := sw.row(ctx, it, key)
			if err != nil {
				return err
			}
			if ok && thumbs {
				if err := sw.thumbs(ctx, it); err != nil {
					b.cfg.Logger.Warn("contact sheet: thumbnail not made", "pair", it.pair.ID, "err", err)
					mu.Lock()
					thumbFails++
					mu.Unlock()
				}
			}
			rows[i] = row
			return nil
		})
	}
	if err := p.Wait(); err != nil {
		return "", err
	}
	for i, it := range items {
		row := &rows[i]
		if row.Status == string(StatusDone) {
			sheet.Totals.Done++
			sheet.Totals.ComputeS += row.DurationS
			continue
		}
		switch {
		case failed[it.pair.ID].ID != "":
			f := failed[it.pair.ID]
			row.Status, row.Cause = string(StatusFailed), f.Op+": "+f.Error
			sheet.Totals.Failed++
			sheet.Failures = append(sheet.Failures, report.Failure{ID: f.ID, Content: f.Content, Style: f.Style, Preset: f.Preset, Op: f.Op, Error: f.Error})
		case status[it.pair.ID] == StatusInterrupted:
			row.Status = string(StatusInterrupted)
			sheet.Totals.Interrupted++
		default:
			row.Status = "pending"
			sheet.Totals.Pending++
		}
	}
	sheet.Rows = rows
	sheet.Totals.Pairs = len(items)
	if !start.IsZero() && end.After(start) {
		sheet.Totals.WallS = end.Sub(start).Seconds()
	}
	if key == SheetIndex {
		sheet.Scope = fmt.Sprintf("all shards (%d summaries of %d)", len(sums), shards)
		if shards == 0 {
			sheet.Scope = "all pairs (no shard summaries found)"
		} else if len(sums) < shards {
			sheet.Notes = append(sheet.Notes, fmt.Sprintf("Only %d of %d shard summaries exist: pairs of the others show as not run.", len(sums), shards))
		}
	} else {
		sheet.Scope = fmt.Sprintf("shard %d of %d", sw.cfg.ShardIndex, sw.cfg.ShardCount)
	}
	if thumbFails > 0 {
		sheet.Notes = append(sheet.Notes, fmt.Sprintf("%d pairs have no thumbnails (see the logs).", thumbFails))
	}
	var buf bytes.Buffer
	if err := report.WriteSheet(&buf, sheet); err != nil {
		return "", err
	}
	if err := b.out.bucket.Write(sw.grace, b.out.prefix+key, buf.Bytes(), storage.WriteOptions{ContentType: "text/html; charset=utf-8"}); err != nil {
		return "", fmt.Errorf("write contact sheet: %w", err)
	}
	return b.out.prefix + key, nil
}

// row reads an item's provenance: ok is true when the item is done.
func (sw *sheetWriter) row(ctx context.Context, it *item, sheetKey string) (report.Row, bool, error) {
	row := report.Row{ID: it.pair.ID, Content: it.pair.Content, Style: it.pair.Style, Preset: it.pair.Preset}
	data, _, err := sw.b.out.bucket.Read(ctx, it.keys.Provenance, 16<<20)
	if errors.Is(err, storage.ErrNotFound) {
		return row, false, nil
	}
	if err != nil {
		return row, false, fmt.Errorf("contact sheet: %w", err)
	}
	var p Provenance
	if err := json.Unmarshal(data, &p); err != nil || p.ID != it.pair.ID {
		return row, false, nil
	}
	rel := func(k string) string { return relLink(sheetKey, strings.TrimPrefix(k, sw.b.out.prefix)) }
	row.Status = string(StatusDone)
	row.Final, row.Steps, row.DurationS = p.Final, p.Steps, p.DurationS
	row.Result, row.LossLog, row.Provenance = rel(it.keys.Image), rel(it.keys.LossLog), rel(it.keys.Provenance)
	if p.Output.Keys.LossPlot != "" {
		row.LossPlot = rel(it.keys.LossPlot)
	}
	c, s, r := sw.thumbKeys(it)
	row.ContentThumb, row.StyleThumb, row.ResultThumb = relLink(sheetKey, c), relLink(sheetKey, s), relLink(sheetKey, r)
	return row, true, nil
}

// thumbKeys are an item's thumbnail keys relative to the output prefix.
func (sw *sheetWriter) thumbKeys(it *item) (content, style, result string) {
	h := func(kind, u string, o object) string {
		d := sha256.Sum256([]byte(stripQuery(u) + "\x00" + o.key + "\x00" + o.version))
		return sheetDir + "thumbs/" + kind + "-" + hex.EncodeToString(d[:8]) + ".jpg"
	}
	return h("c", sw.b.contents.url, it.content), h("s", sw.b.styles.url, it.style), sheetDir + "thumbs/r-" + it.pair.ID + ".jpg"
}

// thumbs makes the item's missing thumbnails.
func (sw *sheetWriter) thumbs(ctx context.Context, it *item) error {
	b := sw.b
	c, s, r := sw.thumbKeys(it)
	for _, t := range []struct {
		key string
		src source
		k   string
	}{{c, b.contents, b.contents.prefix + it.content.key}, {s, b.styles, b.styles.prefix + it.style.key}, {r, b.out, it.keys.Image}} {
		dst := b.out.prefix + t.key
		v, _ := sw.made.LoadOrStore(dst, &thumbOnce{})
		o := v.(*thumbOnce)
		o.once.Do(func() { o.err = sw.thumb(ctx, t.src, t.k, dst) })
		if o.err != nil {
			return o.err
		}
	}
	return nil
}

// thumb writes the thumbnail of src's object k at dst, unless dst exists.
func (sw *sheetWriter) thumb(ctx context.Context, src source, k, dst string) error {
	out := sw.b.out.bucket
	ok, err := out.Exists(ctx, dst)
	if err != nil || ok {
		return err
	}
	lim := imaging.DefaultLimits()
	data, _, err := src.bucket.Read(ctx, k, lim.MaxBytes)
	if err != nil {
		return err
	}
	img, _, err := imaging.Decode(bytes.NewReader(data), lim)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := imaging.Encode(&buf, report.Thumbnail(img), "jpeg", 85); err != nil {
		return err
	}
	return out.Write(sw.grace, dst, buf.Bytes(), storage.WriteOptions{ContentType: "image/jpeg"})
}

// relLink is the link from the object at key from to the object at key to (both relative to
// the output prefix), each path segment escaped.
func relLink(from, to string) string {
	up := strings.Repeat("../", strings.Count(from, "/"))
	segs := strings.Split(to, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return up + strings.Join(segs, "/")
}
