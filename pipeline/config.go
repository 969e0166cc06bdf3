package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"gocloud.dev/blob"

	"github.com/nst-project/nst/manifests"
	"github.com/nst-project/nst/render"
	"github.com/nst-project/nst/storage"
	"github.com/nst-project/nst/transfer"
)

// The values Config's zero fields take; cmd/nst's flags show them as their defaults.
const (
	DefaultLanes           = 1
	DefaultIOJobs          = 4
	DefaultBatchSize       = 1
	DefaultCheckpointEvery = 50
	DefaultGracePeriod     = 25 * time.Second
)

// Config says what Run and Plan do. Run checks it before any byte moves; zero fields take the
// defaults documented on each.
type Config struct {
	// ManifestURL is the manifest: a local path, or the URL of an object in a bucket
	// (s3://config/catalogue.yaml). Relative file URLs inside a local manifest ("file://./data/")
	// are resolved against its directory.
	ManifestURL string

	// ShardIndex and ShardCount select this run's share of the items: those whose output
	// slot hashes into the ShardIndex-th of ShardCount equal ranges of the hash space
	// (shardOf), whatever the catalogue's order. ShardCount 0 means 1; 0 <= ShardIndex <
	// ShardCount.
	ShardIndex, ShardCount int

	// RunID names the run in summaries and provenance; "" means
	// "<metadata.name>-<first 8 hex of the manifest's sha256>-<UTC date YYYYMMDD>". It is
	// checked like metadata.name: lower-case letters, digits and '-', starting and ending with
	// a letter or digit; up to 81 characters, the length of the longest default.
	RunID string

	// Lanes is the number of items stylised at once (compute lanes, each with its own engine
	// call; on CPU too); 0 means DefaultLanes.
	Lanes int
	// IOJobs bounds concurrent downloads and decodes, and separately concurrent uploads;
	// 0 means DefaultIOJobs.
	IOJobs int
	// MaxInFlight bounds decoded pairs waiting for a compute lane; 0 means 2*Lanes*BatchSize.
	// With IOJobs it caps the images held in memory, whatever the catalogue's size.
	MaxInFlight int
	// BatchSize > 1 lets a lane hand up to BatchSize waiting items with the same parameters to
	// the engine at once, when it is a transfer.BatchEngine (one forward/backward for all
	// their images; results are each item's own). 0 means DefaultBatchSize, 1: one item at a time.
	BatchSize int

	// Force redoes every item, done or not, and overwrites whatever is at its output keys.
	Force bool
	// OnConflict overrides the manifest's spec.output.onConflict (manifests.ConflictFail,
	// ConflictReplace or ConflictKeep): what happens to an item whose outputs exist from
	// another definition. "" keeps the manifest's.
	OnConflict string
	// Verify lists the outputs and compares each done item's sizes and MD5s with those its
	// index marker recorded: changed, missing or truncated outputs make the item redo (Run) or
	// count as damaged (PlanRun). It costs one request per 1000 output objects (four per
	// item), so it is for occasional audits, not every nightly run.
	Verify bool
	// MaxFailures > 0 stops taking new items once more than MaxFailures items failed;
	// 0 means no limit.
	MaxFailures int
	// CheckpointEvery > 0 writes a checkpoint every CheckpointEvery steps; 0 means
	// DefaultCheckpointEvery;
	// < 0 writes none except on cancellation.
	CheckpointEvery int
	// GracePeriod bounds the writes that follow cancellation (checkpoints, finished
	// outputs, the summary); 0 means DefaultGracePeriod.
	GracePeriod time.Duration

	// CacheDir holds downloaded weights, one file per sha256; "" means
	// os.UserCacheDir()/nst/weights.
	CacheDir string

	// NewEngine opens the engine once a run has something to compute. close, if non-nil, is
	// called when the run ends. Required by Run; Plan does not use it.
	NewEngine func(ctx context.Context, spec EngineSpec) (eng transfer.Engine, close func() error, err error)

	// OpenBucket opens a bucket URL; nil means blob.OpenBucket, and Run closes what it opened.
	// A custom OpenBucket keeps ownership: Run never closes the buckets it returns (so tests
	// can hand out shared memblob buckets). It is called once per distinct bucket URL.
	OpenBucket func(ctx context.Context, bucketURL string) (*blob.Bucket, error)
	// Storage configures every bucket Run opens: retries of transient errors, the timeout of
	// one attempt, MD5 checks. The zero value gives storage's defaults; a nil Storage.Logger
	// means Logger.
	Storage storage.Options

	// Logger receives progress and problems; nil discards.
	Logger *slog.Logger
	// Progress is told about items as they go; nil means none. Its methods are called from
	// several goroutines.
	Progress Progress

	// ContactSheet makes Run write contact sheets (HTML) under the output URL's _report/: this
	// shard's pairs, and every shard's once all their summaries exist (see WriteContactSheet).
	// A sheet that cannot be written is logged, not returned.
	ContactSheet bool

	// Version is the nst version recorded in provenance.
	Version string

	// segment is how many items a pair log segment and a sheet page hold; 0 means
	// render.PageSize. Tests set it lower to see pages without a thousand items.
	segment int
}

// EngineSpec is what NewEngine needs to open an engine for a manifest's model.
type EngineSpec struct {
	// WeightsPath is a local copy of spec.model.weights, verified against SHA256; "" with Random.
	WeightsPath string
	// SHA256 is the weights file's hex sha256; "" with Random.
	SHA256 string
	// Random asks for seeded random weights (spec.model.weights: random), with RandomSeed.
	Random     bool
	RandomSeed int64
}

// Progress is told about a run's items. Implementations must be safe for concurrent use.
type Progress interface {
	// Planned is called once with the number of items in this shard.
	Planned(n int)
	// PairStarted is called when an item starts computing.
	PairStarted(id string)
	// PairStep is called after every step computed in this run, total being the item's steps.
	PairStep(id string, step, total int)
	// PairDone is called once per item that finished, was skipped, failed or was interrupted.
	PairDone(r PairResult)
}

// NoProgress is a Progress that does nothing.
type NoProgress struct{}

func (NoProgress) Planned(int)               {}
func (NoProgress) PairStarted(string)        {}
func (NoProgress) PairStep(string, int, int) {}
func (NoProgress) PairDone(PairResult)       {}

// ErrInvalid marks errors caused by the manifest or the Config themselves (nst exits 2):
// retrying cannot help.
var ErrInvalid = errors.New("invalid manifest or config")

// invalidError wraps err so that errors.Is(err, ErrInvalid) holds, without changing its text.
type invalidError struct{ err error }

func (e invalidError) Error() string   { return e.err.Error() }
func (e invalidError) Unwrap() []error { return []error{e.err, ErrInvalid} }

func invalidf(format string, a ...any) error { return invalidError{fmt.Errorf(format, a...)} }

// runIDSyntax is metadata.name's syntax, with room for the date and digest a default run ID
// adds to a 63-character name. Run IDs become object keys and metric labels, and are printed.
var runIDSyntax = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,79}[a-z0-9])?$`)

// withDefaults returns c with the defaults filled in, or an error wrapping ErrInvalid.
func (c Config) withDefaults(needEngine bool) (Config, error) {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if c.ManifestURL == "" {
		bad("no manifest")
	}
	if c.RunID != "" && !runIDSyntax.MatchString(c.RunID) {
		bad("run ID %q must be 1..81 lower-case letters, digits and '-', starting and ending with a letter or digit (like metadata.name)", c.RunID)
	}
	if c.ShardCount == 0 {
		c.ShardCount = 1
	}
	if c.ShardCount < 1 {
		bad("shard count %d must be >= 1", c.ShardCount)
	} else if c.ShardIndex < 0 || c.ShardIndex >= c.ShardCount {
		bad("shard index %d is outside 0..%d", c.ShardIndex, c.ShardCount-1)
	}
	for _, f := range []struct {
		name string
		v    *int
		def  int
	}{{"lanes", &c.Lanes, DefaultLanes}, {"I/O jobs", &c.IOJobs, DefaultIOJobs}, {"batch size", &c.BatchSize, DefaultBatchSize}} {
		if *f.v == 0 {
			*f.v = f.def
		}
		if *f.v < 1 {
			bad("%s %d must be >= 1", f.name, *f.v)
		}
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = 2 * max(c.Lanes, 1) * max(c.BatchSize, 1)
	}
	if c.MaxInFlight < 1 {
		bad("max in flight %d must be >= 1", c.MaxInFlight)
	}
	if c.OnConflict != "" && !slices.Contains(manifests.ConflictPolicies(), c.OnConflict) {
		bad("on-conflict %q is not a policy (want %s)", c.OnConflict, strings.Join(manifests.ConflictPolicies(), ", "))
	}
	if c.MaxFailures < 0 {
		bad("max failures %d must be >= 0", c.MaxFailures)
	}
	if c.CheckpointEvery == 0 {
		c.CheckpointEvery = DefaultCheckpointEvery
	}
	if c.GracePeriod == 0 {
		c.GracePeriod = DefaultGracePeriod
	}
	if c.GracePeriod < 0 {
		bad("grace period %v must be >= 0", c.GracePeriod)
	}
	if needEngine && c.NewEngine == nil {
		bad("no engine (Config.NewEngine)")
	}
	if c.CacheDir == "" && needEngine {
		dir, err := os.UserCacheDir()
		if err != nil {
			dir = os.TempDir()
		}
		c.CacheDir = filepath.Join(dir, "nst", "weights")
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if c.segment <= 0 || c.segment > render.PageSize {
		c.segment = render.PageSize
	}
	if c.Progress == nil {
		c.Progress = NoProgress{}
	}
	if len(errs) > 0 {
		return c, invalidError{errors.Join(errs...)}
	}
	return c, nil
}
