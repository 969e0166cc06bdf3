package pipeline

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nst-project/nst/render"
	"github.com/nst-project/nst/storage"
)

// runsDir holds each shard attempt's summary and pair log:
//
//	_runs/<run ID>/shard-<i>-of-<n>.<attempt>.json              the summary, at the end
//	_runs/<run ID>/shard-<i>-of-<n>.<attempt>.pairs-<k>.jsonl   the pair log, render.PageSize items a segment
//
// and, with Config.Report, _report/<run ID>/shard-<i>-of-<n>.<attempt>.<k>.html, a contact
// sheet page per segment.
const runsDir = "_runs/"

// journal records what one attempt of a shard did, a segment of render.PageSize items at a
// time, so that its memory does not grow with the shard: the pair log, the sheet pages, and at
// the end the summary. Its methods are safe for concurrent use.
type journal struct {
	r       *runner
	attempt string
	name    string // "shard-<i>-of-<n>.<attempt>"

	mu        sync.Mutex
	lines     bytes.Buffer
	rows      []render.Row
	n         int // items in the current segment
	failures  []SummaryFailure
	omitted   int
	computeS  float64
	logs      []string
	pages     []string
	pending   []render.Row // the last full segment's rows, whose page waits for its "next" link
	writeErrs int

	flushMu sync.Mutex // segments are written one at a time, in order
}

func newJournal(r *runner, start time.Time) *journal {
	var rnd [2]byte
	rand.Read(rnd[:])
	attempt := start.Format("20060102T150405Z") + "-" + hex.EncodeToString(rnd[:])
	return &journal{r: r, attempt: attempt, name: fmt.Sprintf("shard-%d-of-%d.%s", r.cfg.ShardIndex, r.cfg.ShardCount, attempt)}
}

// add logs one item that ended in this attempt (not skipped or stale ones).
func (j *journal) add(pr PairResult) {
	prefix := j.r.cat.out.prefix
	rel := func(k string) string { return strings.TrimPrefix(k, prefix) }
	line := SummaryPair{Pair: pr.Pair, Status: pr.Status, DurationS: pr.Duration.Seconds(), Steps: pr.Steps, ResumedAt: pr.ResumedAt,
		Outputs:   OutputKeys{Image: rel(pr.Outputs.Image), LossLog: rel(pr.Outputs.LossLog), LossPlot: rel(pr.Outputs.LossPlot), Provenance: rel(pr.Outputs.Provenance)},
		TotalLoss: pr.Final.TotalLoss, StyleLoss: pr.Final.StyleLoss, ContentLoss: pr.Final.ContentLoss, TVLoss: pr.Final.TVLoss}
	var failure *SummaryFailure
	if pr.Err != nil {
		f := summaryFailure(pr)
		line.Op, line.Error = f.Op, f.Error
		if pr.Status == StatusFailed {
			failure = &f
		}
	}
	data, _ := json.Marshal(line)
	j.mu.Lock()
	j.lines.Write(data)
	j.lines.WriteByte('\n')
	if j.r.cfg.ContactSheet {
		j.rows = append(j.rows, j.r.sheetEnv().row(line, j.pageKey(len(j.logs))))
	}
	if failure != nil {
		if len(j.failures) < maxKeptFailures {
			j.failures = append(j.failures, *failure)
		} else {
			j.omitted++
		}
	}
	if pr.Status == StatusDone {
		j.computeS += pr.Duration.Seconds()
	}
	j.n++
	if j.n < j.r.cfg.segment {
		j.mu.Unlock()
		return
	}
	seg := j.take()
	j.mu.Unlock()
	j.flush(seg, false)
}

// segment is a full (or final) segment's data, taken out of the journal to be written.
type segment struct {
	k     int
	lines []byte
	rows  []render.Row
}

// take removes the current segment; j.mu is held.
func (j *journal) take() segment {
	s := segment{k: len(j.logs), lines: bytes.Clone(j.lines.Bytes()), rows: j.rows}
	j.logs = append(j.logs, j.logKey(s.k))
	if j.r.cfg.ContactSheet {
		j.pages = append(j.pages, j.pageKey(s.k))
	}
	j.lines.Reset()
	j.rows, j.n = nil, 0
	return s
}

func (j *journal) logKey(k int) string {
	return fmt.Sprintf("%s%s/%s.pairs-%05d.jsonl", runsDir, j.r.cat.runID, j.name, k)
}

func (j *journal) pageKey(k int) string {
	return fmt.Sprintf("%s%s/%s.%05d.html", sheetDir, j.r.cat.runID, j.name, k)
}

// flush writes a segment's pair log, and the page of the segment before it (now that it is
// known to have a next one); last writes this segment's page too.
func (j *journal) flush(s segment, last bool) {
	j.flushMu.Lock()
	defer j.flushMu.Unlock()
	r := j.r
	out := r.cat.out
	if len(s.lines) > 0 {
		err := out.bucket.Write(r.grace, out.prefix+j.logKey(s.k), s.lines, storage.WriteOptions{ContentType: "application/x-ndjson"})
		if err != nil {
			r.log.Warn("pair log not written", "key", j.logKey(s.k), "err", err)
			j.mu.Lock()
			j.writeErrs++
			j.mu.Unlock()
		}
	}
	if !r.cfg.ContactSheet {
		return
	}
	if j.pending != nil {
		j.writePage(s.k-1, j.pending, len(s.rows) > 0)
		j.pending = nil
	}
	if last {
		if len(s.rows) > 0 {
			j.writePage(s.k, s.rows, false)
		}
		return
	}
	j.pending = s.rows
}

func (j *journal) writePage(k int, rows []render.Row, next bool) {
	r := j.r
	key := j.pageKey(k)
	p := render.Page{Title: r.cat.m.Metadata.Name + ": contact sheet", RunID: r.cat.runID,
		Scope: fmt.Sprintf("shard %d of %d, attempt %s, page %d", r.cfg.ShardIndex, r.cfg.ShardCount, j.attempt, k+1),
		Index: relLink(key, runIndexKey(r.cat.runID)), Rows: rows}
	if k > 0 {
		p.Prev = relLink(key, j.pageKey(k-1))
	}
	if next {
		p.Next = relLink(key, j.pageKey(k+1))
	}
	var buf bytes.Buffer
	err := render.WritePage(&buf, p)
	if err == nil {
		err = r.cat.out.bucket.Write(r.grace, r.cat.out.prefix+key, buf.Bytes(), storage.WriteOptions{ContentType: "text/html; charset=utf-8"})
	}
	if err != nil {
		r.log.Warn("contact sheet page not written", "key", key, "err", err)
	}
}

// finish writes what is left of the pair log and the summary, whose key it sets in the shard result
// once written. A pair log segment that could not be written is an error: the summary would
// name it.
func (j *journal) finish() error {
	r := j.r
	j.mu.Lock()
	var s segment
	tail := j.n > 0
	if tail {
		s = j.take()
	}
	j.mu.Unlock()
	if tail || j.pending != nil {
		if !tail {
			s = segment{k: len(j.logs)}
		}
		j.flush(s, true)
	}
	rep := r.result
	sum := Summary{RunID: rep.RunID, Manifest: storage.Redact(r.cfg.ManifestURL), Shard: rep.ShardIndex, Shards: rep.ShardCount,
		Attempt: j.attempt, Planned: rep.Planned, Done: rep.Done, Skipped: rep.Skipped, Reindexed: rep.Reindexed, Stale: rep.Stale,
		Failed: rep.Failed, Interrupted: rep.Interrupted, Stopped: rep.Stopped, Start: rep.Start, End: rep.End, ComputeS: j.computeS,
		Failures: j.failures, FailuresOmitted: j.omitted, PairLogs: j.logs, Pages: j.pages, NST: r.cfg.Version, Engine: r.info}
	if sum.Failures == nil {
		sum.Failures = []SummaryFailure{}
	}
	if sum.PairLogs == nil {
		sum.PairLogs = []string{}
	}
	if j.writeErrs > 0 {
		return fmt.Errorf("write run summary: %d pair log segments could not be written", j.writeErrs)
	}
	data, err := json.MarshalIndent(sum, "", "  ")
	if err != nil {
		return err
	}
	key := r.cat.out.prefix + summaryKey(rep.RunID, j.name)
	if err := r.cat.out.bucket.Write(r.grace, key, append(data, '\n'), storage.WriteOptions{ContentType: "application/json"}); err != nil {
		return fmt.Errorf("write run summary: %w", err)
	}
	rep.SummaryKey = key
	if len(j.pages) > 0 && rep.SheetKey == "" {
		rep.SheetKey = r.cat.out.prefix + j.pages[0]
	}
	return nil
}

func summaryKey(runID, name string) string { return runsDir + runID + "/" + name + ".json" }

// summaryFailure describes a failed (or interrupted) item for a summary.
func summaryFailure(pr PairResult) SummaryFailure {
	f := SummaryFailure{Pair: pr.Pair, Error: pr.Err.Error()}
	var pe *PairError
	if errors.As(pr.Err, &pe) {
		f.Op, f.Error = pe.Op, pe.Err.Error()
	}
	return f
}
