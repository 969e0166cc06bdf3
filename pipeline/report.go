package pipeline

import (
	"fmt"
	"time"

	"github.com/nst-project/nst/transfer"
)

// Status is what became of an item in a run.
type Status string

const (
	StatusDone        Status = "done"        // stylised and written in this run
	StatusSkipped     Status = "skipped"     // already done (its provenance holds its ID)
	StatusFailed      Status = "failed"      // see PairResult.Err
	StatusInterrupted Status = "interrupted" // cancelled while running; its checkpoint resumes it
)

// Operations a pair can fail in, as PairError.Op.
const (
	OpCheck   = "check"   // reading the item's existing outputs
	OpRead    = "read"    // downloading an input
	OpDecode  = "decode"  // decoding an input
	OpStylize = "stylize" // the engine
	OpEncode  = "encode"  // encoding the result
	OpWrite   = "write"   // writing an output
)

// Pair names one work item: a content, a style and a preset.
type Pair struct {
	ID      string `json:"id"`
	Content string `json:"content"` // key relative to the contents URL
	Style   string `json:"style"`   // key relative to the styles URL
	Preset  string `json:"preset"`
}

func (p Pair) String() string {
	return fmt.Sprintf("%s (content %s, style %s, preset %s)", p.ID, p.Content, p.Style, p.Preset)
}

// PairError is why an item failed: the item, the operation and the cause.
type PairError struct {
	Pair Pair
	Op   string // OpRead, OpDecode, OpStylize...
	Err  error
}

func (e *PairError) Error() string { return fmt.Sprintf("pair %s: %s: %v", e.Pair, e.Op, e.Err) }
func (e *PairError) Unwrap() error { return e.Err }

// PairResult is what became of one item.
type PairResult struct {
	Pair
	Status Status
	// Err is a *PairError for StatusFailed and StatusInterrupted, nil otherwise.
	Err error
	// Outputs are the item's output keys in the output bucket (they include the output prefix).
	Outputs OutputKeys
	// Duration is the wall time spent on the item in this run (reading, computing, writing).
	Duration time.Duration
	// Steps is the number of steps computed in this run; ResumedAt the step a checkpoint
	// resumed from (0: started fresh).
	Steps, ResumedAt int
	// Final is the last step's losses, for done items.
	Final transfer.Step

	idx int // the item's position, for ordering
}

// Report is the outcome of Run for one shard.
type Report struct {
	RunID      string
	ShardIndex int
	ShardCount int
	// Planned is the number of items in this shard; Done + Skipped + Failed + Interrupted of
	// them reached an end in this run, the rest were not started.
	Planned, Done, Skipped, Failed, Interrupted int
	// Results has one entry per item that reached an end, in item order.
	Results []PairResult
	// Stopped is why the run stopped taking items early ("" if it did not): "interrupted" or
	// "max failures exceeded".
	Stopped    string
	Start, End time.Time
	// SummaryKey is the summary's key under the output URL.
	SummaryKey string
	// SheetKey is the key of the last contact sheet Run wrote under the output URL (with
	// Config.Report): the merged index if every shard's summary existed, else this shard's
	// sheet; "" if none was written.
	SheetKey string
}

// OK reports whether every item of the shard is done or skipped.
func (r *Report) OK() bool { return r.Done+r.Skipped == r.Planned }

// OutputKeys are an item's object keys in the output bucket, output prefix included.
type OutputKeys struct {
	Image      string `json:"image"`
	LossLog    string `json:"lossLog"`
	LossPlot   string `json:"lossPlot"` // the loss curves (PNG), beside LossLog
	Provenance string `json:"provenance"`
}

// Input describes one input object in provenance.
type Input struct {
	URL     string `json:"url"` // the source URL, secrets redacted
	Key     string `json:"key"` // relative to URL
	Version string `json:"version"`
	ETag    string `json:"etag,omitempty"`
	Size    int64  `json:"size"`
}

// Provenance is the JSON written last for each done item, its done marker.
type Provenance struct {
	ID         string          `json:"id"`
	Content    Input           `json:"content"`
	Style      Input           `json:"style"`
	Preset     string          `json:"preset"`
	Params     transfer.Params `json:"params"`
	ParamsHash string          `json:"paramsDigest"`
	Weights    Weights         `json:"weights"`
	Output     OutputInfo      `json:"output"`
	NST        string          `json:"nstVersion"`
	Engine     transfer.Info   `json:"engine"`
	RunID      string          `json:"runId"`
	Shard      string          `json:"shard"` // "i/n"
	Start      time.Time       `json:"start"`
	End        time.Time       `json:"end"`
	DurationS  float64         `json:"durationS"`
	Steps      int             `json:"steps"`
	ResumedAt  int             `json:"resumedAt,omitempty"`
	Final      transfer.Step   `json:"final"`
}

// Weights describes the model's weights in provenance.
type Weights struct {
	URL    string `json:"url"` // redacted, or "random"
	SHA256 string `json:"sha256,omitempty"`
	Seed   *int64 `json:"randomSeed,omitempty"`
	Digest string `json:"digest"` // what the item ID hashes
}

// OutputInfo is where and how an item's results were written.
type OutputInfo struct {
	URL    string     `json:"url"` // redacted
	Keys   OutputKeys `json:"keys"`
	Format string     `json:"format"`
	Width  int        `json:"width"`
	Height int        `json:"height"`
}

// Summary is the JSON a shard writes to _runs/<run ID>/shard-<i>-of-<n>.json.
type Summary struct {
	RunID       string           `json:"runId"`
	Manifest    string           `json:"manifest"`
	Shard       int              `json:"shard"`
	Shards      int              `json:"shards"`
	Planned     int              `json:"planned"`
	Done        int              `json:"done"`
	Skipped     int              `json:"skipped"`
	Failed      int              `json:"failed"`
	Interrupted bool             `json:"interrupted"`
	Stopped     string           `json:"stopped,omitempty"`
	Start       time.Time        `json:"start"`
	End         time.Time        `json:"end"`
	Failures    []SummaryFailure `json:"failures"`
	Pairs       []SummaryPair    `json:"pairs"`
	NST         string           `json:"nstVersion"`
	Engine      *transfer.Info   `json:"engine,omitempty"`
}

// SummaryFailure is one failed item in a Summary.
type SummaryFailure struct {
	Pair
	Op    string `json:"op"`
	Error string `json:"error"`
}

// SummaryPair is one item that reached an end, in a Summary.
type SummaryPair struct {
	Pair
	Status    Status  `json:"status"`
	DurationS float64 `json:"durationS"`
	Steps     int     `json:"steps"`
	ResumedAt int     `json:"resumedAt,omitempty"`
	TotalLoss float64 `json:"totalLoss,omitempty"`
	StyleLoss float64 `json:"styleLoss,omitempty"`
	Content   float64 `json:"contentLoss,omitempty"`
}
