package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/pflag"
	_ "gocloud.dev/blob/fileblob"
	_ "gocloud.dev/blob/gcsblob"
	_ "gocloud.dev/blob/memblob"
	_ "gocloud.dev/blob/s3blob"

	"github.com/nst-project/nst/metrics"
	"github.com/nst-project/nst/pipeline"
	"github.com/nst-project/nst/transfer"
	"github.com/nst-project/nst/transfer/worker"
)

// manifestFlags are the flags run and plan share.
type manifestFlags struct {
	manifest   string
	shardCount int
	runID      string
	ioJobs     int
	force      bool
	verify     bool
}

func (f *manifestFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.manifest, "manifest", "", "the manifest: a local path or a bucket URL (s3://config/catalogue.yaml); see docs/manifest.md")
	fs.IntVar(&f.shardCount, "shard-count", 1, "number of shards the manifest's pairs are split into (pods of an Indexed Job)")
	fs.StringVar(&f.runID, "run-id", "", "run ID for summaries and provenance (default <metadata.name>-<manifest digest>-<UTC date>)")
	fs.IntVar(&f.ioJobs, "io-jobs", pipeline.DefaultIOJobs, "concurrent downloads, and concurrent uploads")
	fs.BoolVar(&f.force, "force", false, "redo every pair, done or not, over whatever its output keys hold")
	fs.BoolVar(&f.verify, "verify", false, "list the outputs and check each done pair's sizes and MD5s against the done index: damaged pairs are redone (run) or counted (plan); costs a request per 1000 output objects")
}

func (f *manifestFlags) config() (pipeline.Config, error) {
	if f.manifest == "" {
		return pipeline.Config{}, usagef("--manifest is required")
	}
	return pipeline.Config{ManifestURL: f.manifest, ShardCount: f.shardCount, RunID: f.runID, IOJobs: f.ioJobs, Force: f.force,
		Verify: f.verify, Version: version}, nil
}

// shardIndexFromEnv is the default of --shard-index: $JOB_COMPLETION_INDEX (Kubernetes Indexed
// Jobs), else 0.
func shardIndexFromEnv() (int, error) {
	v := os.Getenv("JOB_COMPLETION_INDEX")
	if v == "" {
		return 0, nil
	}
	i, err := strconv.Atoi(v)
	if err != nil {
		return 0, usagef("JOB_COMPLETION_INDEX=%q is not a number", v)
	}
	return i, nil
}

func runCommand() command {
	var (
		bf                                      manifestFlags
		shardIndex, lanes, maxFailures, ckEvery int
		maxInFlight, threads, workerMaxPairs    int
		batchSize                               int
		inProcess, noReport                     bool
		grace                                   time.Duration
		device, cacheDir, metricsPush           string
		memoryFormat, onConflict                string
	)
	return command{
		name:    "run",
		summary: "stylise a manifest's pairs (one shard of them) into its output bucket",
		examples: `  nst run --manifest examples/demo.yaml
  nst run --manifest s3://config/catalogue.yaml --shard-count 8            # shard from $JOB_COMPLETION_INDEX
  NST_SHARD_COUNT=8 JOB_COMPLETION_INDEX=3 nst run --manifest gs://cfg/catalogue.yaml --lanes 2
  nst run --manifest catalogue.yaml --force                                # redo everything`,
		setup: func(fs *pflag.FlagSet) func(context.Context, *env) error {
			bf.register(fs)
			fs.IntVar(&shardIndex, "shard-index", -1, "this run's shard, 0..shard-count-1 (default $JOB_COMPLETION_INDEX, else 0)")
			fs.IntVar(&lanes, "lanes", pipeline.DefaultLanes, "pairs stylised at once (compute lanes, on CPU too: each a worker process unless --in-process; formerly --gpu-jobs)")
			deprecatedAlias(fs, "gpu-jobs", "lanes")
			fs.IntVar(&batchSize, "batch-size", pipeline.DefaultBatchSize, "optimise up to N waiting same-size pairs of one preset in one forward/backward per lane (try 4 on a GPU)")
			fs.IntVar(&maxInFlight, "max-in-flight", 0, "decoded pairs waiting for a compute lane (default 2 x lanes x batch-size)")
			fs.StringVar(&onConflict, "on-conflict", "", "pairs whose outputs exist from another definition (weights, parameters, inputs): fail, replace (redo them) or keep (count them stale); default: the manifest's spec.output.onConflict, else fail")
			fs.IntVar(&maxFailures, "max-failures", 0, "stop taking pairs once more than this many failed (0: no limit)")
			fs.IntVar(&ckEvery, "checkpoint-every", pipeline.DefaultCheckpointEvery, "write a resumable checkpoint every N steps (-1: only when interrupted)")
			fs.DurationVar(&grace, "grace-period", pipeline.DefaultGracePeriod, "time allowed after SIGTERM for checkpoints, finished outputs and the summary")
			fs.StringVar(&cacheDir, "cache-dir", "", "where downloaded weights are kept (default: the user cache directory /nst/weights)")
			fs.StringVar(&metricsPush, "metrics-push", "", "Prometheus Pushgateway URL: push this shard's metrics when it ends (see docs/metrics.md)")
			fs.BoolVar(&noReport, "no-report", false, "write no HTML contact sheet under the output's _report/ (see nst report)")
			fs.StringVar(&device, "device", "auto", "cpu, cuda, cuda:N or auto")
			fs.IntVar(&threads, "threads", 0, "libtorch intra-op threads per pair (0: cores / lanes)")
			registerMemoryFormat(fs, &memoryFormat)
			fs.BoolVar(&inProcess, "in-process", false, "run the engine in this process instead of worker processes (a libtorch crash then ends the run)")
			fs.IntVar(&workerMaxPairs, "worker-max-pairs", 100, "start a fresh engine worker after this many pairs, returning memory libtorch keeps (0: never)")
			return func(ctx context.Context, e *env) error {
				if len(e.args) > 0 {
					return usagef("unexpected arguments %q", e.args)
				}
				if err := checkMemoryFormat(memoryFormat); err != nil {
					return err
				}
				cfg, err := bf.config()
				if err != nil {
					return err
				}
				if shardIndex < 0 && !fs.Changed("shard-index") {
					if shardIndex, err = shardIndexFromEnv(); err != nil {
						return err
					}
				}
				cfg.ShardIndex, cfg.Lanes, cfg.MaxInFlight, cfg.MaxFailures = shardIndex, lanes, maxInFlight, maxFailures
				cfg.BatchSize, cfg.OnConflict = batchSize, onConflict
				cfg.CheckpointEvery, cfg.GracePeriod, cfg.CacheDir, cfg.Logger = ckEvery, grace, cacheDir, e.logger
				if grace == 0 {
					cfg.GracePeriod = time.Nanosecond
				}
				cfg.ContactSheet = !noReport
				th := threads
				if th == 0 && lanes > 1 {
					th = max(1, runtime.NumCPU()/lanes)
				}
				ef := engineFlags{device: device, threads: th, memoryFormat: memoryFormat}
				cfg.NewEngine = func(ctx context.Context, spec pipeline.EngineSpec) (transfer.Engine, func() error, error) {
					ef.weights, ef.weightsSHA256, ef.randomWeights = spec.WeightsPath, spec.SHA256, spec.Random
					if inProcess {
						eng, err := ef.openSeeded(e, spec.RandomSeed)
						if err != nil {
							return nil, nil, err
						}
						return eng, eng.Close, nil
					}
					// Each compute lane is a child process (nst worker): a libtorch crash fails
					// only the pair it was running, and recycling returns leaked memory.
					exe, err := os.Executable()
					if err != nil {
						return nil, nil, err
					}
					pool, err := worker.New(ctx, worker.Options{
						Command: append([]string{exe}, ef.workerArgs(spec.RandomSeed)...),
						Size:    lanes, MaxPairs: workerMaxPairs, CancelWait: cfg.GracePeriod, Logger: e.logger,
					})
					if err != nil {
						return nil, nil, err
					}
					return pool, pool.Close, nil
				}
				prog := newPairProgress(e)
				durations := metrics.NewDurations(prog)
				cfg.Progress = durations
				rep, err := pipeline.Run(ctx, cfg)
				prog.finish()
				if metricsPush != "" && rep != nil {
					// After cancellation too: the grace period is for this and the summary.
					pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), min(cfg.GracePeriod, 10*time.Second)+time.Second)
					if perr := metrics.Push(pctx, metricsPush, rep, durations); perr != nil {
						e.logger.Warn("metrics not pushed", "err", perr)
					}
					cancel()
				}
				if errors.Is(err, pipeline.ErrInvalid) {
					return invalidAsUsage(err)
				}
				if rep != nil {
					fmt.Fprint(e.stdout, resultLines(rep))
				}
				if err != nil {
					return err
				}
				if !rep.OK() {
					var causes []string
					for _, r := range rep.Failures[:min(3, len(rep.Failures))] {
						causes = append(causes, printable(r.Err.Error(), false))
					}
					msg := fmt.Sprintf("%d of %d pairs failed", rep.Failed, rep.Planned)
					if rep.Stopped != "" {
						msg += " (" + rep.Stopped + ")"
					}
					return fmt.Errorf("%s; first: %s", msg, strings.Join(causes, "; "))
				}
				return nil
			}
		},
	}
}

// resultLines is what nst run prints on stdout about a run: the counts, and the keys of the
// summary and the contact sheet where they were written (the pipeline leaves a key empty when
// its object could not be written: a key printed is a key that exists).
func resultLines(rep *pipeline.ShardResult) string {
	var b strings.Builder
	fmt.Fprintf(&b, "run %s shard %d/%d: %d pairs: %d done, %d skipped, %d stale, %d failed, %d interrupted",
		quoteKey(rep.RunID), rep.ShardIndex, rep.ShardCount, rep.Planned, rep.Done, rep.Skipped, rep.Stale, rep.Failed, rep.Interrupted)
	if rep.SummaryKey != "" {
		fmt.Fprintf(&b, "; summary %s", quoteKey(rep.SummaryKey))
	}
	b.WriteString("\n")
	if rep.SheetKey != "" {
		fmt.Fprintf(&b, "contact sheet %s\n", quoteKey(rep.SheetKey))
	}
	return b.String()
}

// pairProgress shows a run's progress: a bar of pairs (with the steps of the running ones)
// and ETA on a terminal; the pipeline's JSON log lines otherwise.
type pairProgress struct {
	mu      sync.Mutex
	bar     *progressbar.ProgressBar
	planned int
	ended   int
	failed  int
}

func newPairProgress(e *env) *pairProgress {
	p := &pairProgress{}
	if e.tty && !e.quiet {
		p.bar = progressbar.NewOptions(1,
			progressbar.OptionSetWriter(e.stderr),
			progressbar.OptionSetDescription("pairs"),
			progressbar.OptionShowCount(),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionShowElapsedTimeOnFinish(),
		)
	}
	return p
}

func (p *pairProgress) Planned(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.planned = n
	if p.bar != nil {
		p.bar.ChangeMax(max(n, 1))
	}
}

func (p *pairProgress) PairStarted(string) {}

func (p *pairProgress) PairStep(id string, step, total int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bar != nil && (step%max(1, total/20) == 0 || step == total) {
		p.bar.Describe(fmt.Sprintf("pairs (%s step %d/%d, %d failed)", id[:min(8, len(id))], step, total, p.failed))
	}
}

func (p *pairProgress) PairDone(r pipeline.PairResult) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.ended++
	if r.Status == pipeline.StatusFailed {
		p.failed++
	}
	if p.bar != nil {
		_ = p.bar.Add(1)
	}
}

func (p *pairProgress) finish() {
	if p.bar != nil {
		_ = p.bar.Exit()
	}
}
