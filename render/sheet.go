// Package render draws what people look at after a run: the loss curves of a pair
// (LossPlot) and a run's contact sheet (WriteIndex, WritePage, Thumbnail). It renders only: the
// pipeline gathers the data and writes the files. It imports no cgo and no blob driver.
package render

import (
	"fmt"
	"html/template"
	"image"
	"io"
	"strconv"

	"github.com/nst-project/nst/transfer"
	"github.com/nst-project/nst/transfer/imaging"
)

// ThumbSize is the longest side of a contact-sheet thumbnail, in pixels.
const ThumbSize = 160

// Thumbnail returns img scaled so that its longest side is at most ThumbSize.
func Thumbnail(img *image.NRGBA) *image.NRGBA { return imaging.Fit(img, ThumbSize) }

// A contact sheet is paginated, so that it scales with the work a run did, not with the
// catalogue: an Index page per run (totals, per-shard counts, the failures first, links to
// every page) and Pages of at most PageSize pairs each, the pairs a run wrote or failed.

// PageSize is the most pairs a Page shows.
const PageSize = 500

// Index is a run's first page. Links are relative to the page's own location.
type Index struct {
	Title    string
	RunID    string
	Manifest string
	// Scope says what the index covers: "all 4 shards", "3 of 4 shards (...)".
	Scope  string
	Totals Totals
	Shards []Shard
	// Failures are the first failed pairs; FailuresOmitted counts the others (in the pair logs).
	Failures        []Failure
	FailuresOmitted int
	// Notes are shown under the totals (missing shard summaries, thumbnails not made).
	Notes []string
}

// Totals sums a run over its shards.
type Totals struct {
	Planned, Done, Skipped, Stale, Failed, Interrupted, NotRun int
	// ComputeS is the sum of the done pairs' durations; WallS the time from the first shard's
	// start to the last shard's end (0 if unknown).
	ComputeS, WallS float64
}

// Shard is one shard's line on the Index: its counts and its pages.
type Shard struct {
	Index, Count                                       int
	Attempt                                            string
	Planned, Done, Skipped, Stale, Failed, Interrupted int
	Stopped                                            string
	Pages                                              []string // relative links
	PairLogs                                           []string // relative links
}

// Page is one page of the pairs a shard's attempt wrote or failed.
type Page struct {
	Title, RunID, Scope string
	// Index, Prev and Next are relative links ("" when there is none).
	Index, Prev, Next string
	Rows              []Row
}

// Row is one pair.
type Row struct {
	ID, Content, Style, Preset string
	Status                     string // "done", "failed", "interrupted" or "pending"
	// Thumbnails and outputs, relative links; "" when there is none.
	ContentThumb, StyleThumb, ResultThumb string
	Result, LossPlot, LossLog, Provenance string
	Final                                 transfer.Step
	Steps                                 int
	DurationS                             float64
	Cause                                 string // for failed rows: "op: error"
}

// Failure is one failed pair and why.
type Failure struct {
	ID, Content, Style, Preset, Op, Error string
}

var funcs = template.FuncMap{
	"g":    func(v float64) string { return strconv.FormatFloat(v, 'g', 4, 64) },
	"dur":  func(s float64) string { return fmt.Sprintf("%.1fs", s) },
	"lazy": func(i int) bool { return i >= 24 },
	"add":  func(a, b int) int { return a + b },
	"inc":  func(i int) int { return i + 1 },
}

var tmpl = template.Must(template.New("head").Funcs(funcs).Parse(`{{define "head"}}<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}}</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em;margin:0 0 .3em}
.meta{color:#555;margin:0 0 1em}
table{border-collapse:collapse}
th,td{border-bottom:1px solid #ddd;padding:6px 8px;text-align:left;vertical-align:top}
th{background:#f4f4f4}
td.img{width:168px;text-align:center}
img{max-width:160px;max-height:160px;display:block;margin:auto}
.num{font-variant-numeric:tabular-nums;white-space:nowrap}
tr.failed td{background:#fff0f0}
tr.pending td,tr.interrupted td{background:#fffbe6}
.cause{color:#a00;font-family:monospace;white-space:pre-wrap}
#totals td{border:none;padding:2px 12px 2px 0}
</style>
</head>
<body>
<h1>{{.Title}}</h1>
{{end}}
{{define "index"}}{{template "head" .}}<p class="meta">run <code>{{.RunID}}</code>{{if .Manifest}} · manifest <code>{{.Manifest}}</code>{{end}} · {{.Scope}}</p>
<table id="totals">
<tr><td>pairs</td><td class="num" data-total="planned">{{.Totals.Planned}}</td></tr>
<tr><td>done in this run</td><td class="num" data-total="done">{{.Totals.Done}}</td></tr>
<tr><td>done before</td><td class="num" data-total="skipped">{{.Totals.Skipped}}</td></tr>
<tr><td>stale, kept</td><td class="num" data-total="stale">{{.Totals.Stale}}</td></tr>
<tr><td>failed</td><td class="num" data-total="failed">{{.Totals.Failed}}</td></tr>
<tr><td>interrupted</td><td class="num" data-total="interrupted">{{.Totals.Interrupted}}</td></tr>
<tr><td>not run</td><td class="num" data-total="notrun">{{.Totals.NotRun}}</td></tr>
<tr><td>compute time</td><td class="num" data-total="compute">{{dur .Totals.ComputeS}}</td></tr>
{{if .Totals.WallS}}<tr><td>wall time</td><td class="num" data-total="wall">{{dur .Totals.WallS}}</td></tr>{{end}}
</table>
{{range .Notes}}<p class="note">{{.}}</p>
{{end}}
{{if .Failures}}<h2 id="failures">Failures ({{len .Failures}}{{if .FailuresOmitted}} of {{add (len .Failures) .FailuresOmitted}}: the rest are in the pair logs{{end}})</h2>
<ul>
{{range .Failures}}<li class="failure" data-pair="{{.ID}}"><b>{{.Content}}</b> × <b>{{.Style}}</b> ({{.Preset}}): <span class="cause">{{.Op}}: {{.Error}}</span></li>
{{end}}</ul>
{{end}}
<h2 id="shards">Shards</h2>
<table id="shardlist">
<thead><tr><th>shard</th><th>pairs</th><th>done</th><th>done before</th><th>stale</th><th>failed</th><th>interrupted</th><th>pages</th></tr></thead>
<tbody>
{{range .Shards}}<tr class="shard" data-shard="{{.Index}}"><td>{{.Index}} of {{.Count}}{{if .Stopped}} ({{.Stopped}}){{end}}</td><td class="num">{{.Planned}}</td><td class="num">{{.Done}}</td><td class="num">{{.Skipped}}</td><td class="num">{{.Stale}}</td><td class="num">{{.Failed}}</td><td class="num">{{.Interrupted}}</td>
<td>{{range $i, $p := .Pages}}<a class="page" href="{{$p}}">{{inc $i}}</a> {{end}}{{range .PairLogs}}<a class="log" href="{{.}}">log</a> {{end}}</td></tr>
{{end}}</tbody>
</table>
</body>
</html>
{{end}}
{{define "page"}}{{template "head" .}}<p class="meta">run <code>{{.RunID}}</code> · {{.Scope}} · <a id="index" href="{{.Index}}">index</a>{{if .Prev}} · <a id="prev" href="{{.Prev}}">previous</a>{{end}}{{if .Next}} · <a id="next" href="{{.Next}}">next</a>{{end}}</p>
<table id="sheet">
<thead><tr><th>content</th><th>style</th><th>result</th><th>pair</th><th>final losses</th><th>time</th></tr></thead>
<tbody>
{{range $i, $r := .Rows}}<tr class="pair {{$r.Status}}" data-pair="{{$r.ID}}" data-status="{{$r.Status}}">
<td class="img">{{if $r.ContentThumb}}<img src="{{$r.ContentThumb}}" alt="content {{$r.Content}}"{{if lazy $i}} loading="lazy"{{end}}>{{end}}</td>
<td class="img">{{if $r.StyleThumb}}<img src="{{$r.StyleThumb}}" alt="style {{$r.Style}}"{{if lazy $i}} loading="lazy"{{end}}>{{end}}</td>
<td class="img">{{if $r.ResultThumb}}<a href="{{$r.Result}}"><img src="{{$r.ResultThumb}}" alt="result"{{if lazy $i}} loading="lazy"{{end}}></a>{{else}}{{$r.Status}}{{end}}</td>
<td><b>{{$r.Content}}</b><br>× <b>{{$r.Style}}</b><br>preset {{$r.Preset}}<br><code>{{$r.ID}}</code>
{{if $r.Cause}}<div class="cause">{{$r.Cause}}</div>{{end}}</td>
<td class="num">{{if eq $r.Status "done"}}total {{g $r.Final.TotalLoss}}<br>content {{g $r.Final.ContentLoss}}<br>style {{g $r.Final.StyleLoss}}<br>tv {{g $r.Final.TVLoss}}
{{if $r.LossPlot}}<br><a class="curve" href="{{$r.LossPlot}}">loss curve</a>{{end}}{{if $r.LossLog}} · <a href="{{$r.LossLog}}">log</a>{{end}}{{if $r.Provenance}} · <a href="{{$r.Provenance}}">provenance</a>{{end}}{{end}}</td>
<td class="num">{{if $r.DurationS}}{{dur $r.DurationS}}<br>{{$r.Steps}} steps{{end}}</td>
</tr>
{{end}}</tbody>
</table>
</body>
</html>
{{end}}`))

// WriteIndex writes x as one self-contained HTML page: inline CSS, no scripts, only the
// relative links in x. Equal indexes give equal bytes. It does not close w.
func WriteIndex(w io.Writer, x Index) error {
	if err := tmpl.ExecuteTemplate(w, "index", x); err != nil {
		return fmt.Errorf("contact sheet index: %w", err)
	}
	return nil
}

// WritePage writes p as one self-contained HTML page, like WriteIndex. At most PageSize rows.
func WritePage(w io.Writer, p Page) error {
	if len(p.Rows) > PageSize {
		return fmt.Errorf("contact sheet page: %d rows, at most %d", len(p.Rows), PageSize)
	}
	if err := tmpl.ExecuteTemplate(w, "page", p); err != nil {
		return fmt.Errorf("contact sheet page: %w", err)
	}
	return nil
}
