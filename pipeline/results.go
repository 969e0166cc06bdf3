package pipeline

import (
	"fmt"
	"sync"
	"time"

	"github.com/nst-project/nst/transfer"
)

// Status is what became of an item in a run.
type Status string

const (
	StatusDone        Status = "done"        // stylised and written in this run
	StatusSkipped     Status = "skipped"     // already done (the done index, or its provenance, holds its ID)
	StatusStale       Status = "stale"       // outputs of another definition exist and stay (OnConflict keep)
	StatusFailed      Status = "failed"      // see PairResult.Err
	StatusInterrupted Status = "interrupted" // cancelled while running; its checkpoint resumes it
)

// Operations a pair can fail in, as PairError.Op.
const (
	OpCheck   = "check"   // the item's inputs, keys or existing outputs forbid it to run
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
}

// ShardResult is the outcome of Run for one shard. It holds counts and the first failures, not
// every item: per-item results go to Config.Progress and to the shard's pair log.
type ShardResult struct {
	RunID      string
	ShardIndex int
	ShardCount int
	// Planned is the number of items in this shard; Done + Skipped + Stale + Failed +
	// Interrupted of them reached an end in this run, the rest were not started.
	Planned, Done, Skipped, Stale, Failed, Interrupted int
	// Reindexed counts the skipped items whose index marker was missing and was restored
	// from their provenance (outputs of older nst versions, or a crash before the marker).
	Reindexed int
	// Failures are the first failed items (at most 100), in the order they failed.
	Failures []PairResult
	// Stopped is why the run stopped taking items early ("" if it did not): "interrupted" or
	// "max failures exceeded".
	Stopped    string
	Start, End time.Time
	// SummaryKey is the key of the shard's summary under the output URL, "" when it could not
	// be written.
	SummaryKey string
	// SheetKey is the key of the run's contact sheet under the output URL (with
	// Config.ContactSheet), once every shard's summary exists; else this shard's first sheet page;
	// "" if none was written.
	SheetKey string

	mu sync.Mutex
}

// OK reports whether every item of the shard is done, skipped or kept stale.
func (r *ShardResult) OK() bool { return r.Done+r.Skipped+r.Stale == r.Planned }

// ended counts the items that reached an end in this run.
func (r *ShardResult) ended() int { return r.Done + r.Skipped + r.Stale + r.Failed + r.Interrupted }

// add counts one item's end.
func (r *ShardResult) add(pr PairResult) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch pr.Status {
	case StatusDone:
		r.Done++
	case StatusSkipped:
		r.Skipped++
	case StatusStale:
		r.Stale++
	case StatusFailed:
		r.Failed++
		if len(r.Failures) < maxKeptFailures {
			r.Failures = append(r.Failures, pr)
		}
	case StatusInterrupted:
		r.Interrupted++
	}
}

func (r *ShardResult) addReindexed() {
	r.mu.Lock()
	r.Reindexed++
	r.mu.Unlock()
}

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
	// Objects are the image, the loss log and the loss plot as written, so that a run can
	// tell them intact (nst versions before 0.2 wrote none).
	Objects []OutputObject `json:"objects,omitempty"`
}

// OutputObject is one output as written.
type OutputObject struct {
	Key  string `json:"key"` // relative to the output URL
	Size int64  `json:"size"`
	MD5  string `json:"md5"` // hex
}

// Summary is the JSON each attempt of a shard writes at its end, under the output URL:
// _runs/<run ID>/shard-<i>-of-<n>.<attempt>.json, where attempt is the UTC start time and a
// random suffix, so that a retried or re-run shard never overwrites an earlier attempt's.
// It stays small: counts, the first failures, and the keys of the pair log (JSON Lines, one
// SummaryPair a line, for every item that ended in this attempt but the skipped and stale
// ones) and of the contact-sheet pages.
type Summary struct {
	RunID       string    `json:"runId"`
	Manifest    string    `json:"manifest"`
	Shard       int       `json:"shard"`
	Shards      int       `json:"shards"`
	Attempt     string    `json:"attempt"`
	Planned     int       `json:"planned"`
	Done        int       `json:"done"`
	Skipped     int       `json:"skipped"`
	Reindexed   int       `json:"reindexed,omitempty"`
	Stale       int       `json:"stale"`
	Failed      int       `json:"failed"`
	Interrupted int       `json:"interrupted"`
	Stopped     string    `json:"stopped,omitempty"`
	Start       time.Time `json:"start"`
	End         time.Time `json:"end"`
	// ComputeS sums the durations of the items done in this attempt.
	ComputeS float64          `json:"computeS"`
	Failures []SummaryFailure `json:"failures"`
	// FailuresOmitted counts the failures not in Failures (see the pair log).
	FailuresOmitted int `json:"failuresOmitted,omitempty"`
	// PairLogs and Pages are keys relative to the output URL.
	PairLogs []string       `json:"pairLogs"`
	Pages    []string       `json:"pages,omitempty"`
	NST      string         `json:"nstVersion"`
	Engine   *transfer.Info `json:"engine,omitempty"`
}

// SummaryFailure is one failed item in a Summary.
type SummaryFailure struct {
	Pair
	Op    string `json:"op"`
	Error string `json:"error"`
}

// SummaryPair is one line of a shard's pair log: an item that ended in the attempt.
type SummaryPair struct {
	Pair
	Status      Status     `json:"status"`
	Outputs     OutputKeys `json:"outputs"` // relative to the output URL
	DurationS   float64    `json:"durationS"`
	Steps       int        `json:"steps"`
	ResumedAt   int        `json:"resumedAt,omitempty"`
	TotalLoss   float64    `json:"totalLoss,omitempty"`
	StyleLoss   float64    `json:"styleLoss,omitempty"`
	ContentLoss float64    `json:"contentLoss,omitempty"`
	TVLoss      float64    `json:"tvLoss,omitempty"`
	Op          string     `json:"op,omitempty"`
	Error       string     `json:"error,omitempty"`
}
