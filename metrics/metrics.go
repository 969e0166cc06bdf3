// Package metrics pushes a shard's outcome to a Prometheus Pushgateway at the end of its run
// (nst run --metrics-push). The pods of a Kubernetes Job live too briefly to be scraped, so
// each shard pushes once, under the grouping key job="nst", run_id and shard; see
// docs/metrics.md for names and labels.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/push"
	"github.com/prometheus/common/expfmt"

	"github.com/nst-project/nst/pipeline"
	"github.com/nst-project/nst/storage"
)

// Job is the Pushgateway job label of every push.
const Job = "nst"

// Buckets of the duration histograms, in seconds.
var (
	PairBuckets = []float64{1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600}
	StepBuckets = []float64{0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}
)

// Durations observes the pairs of a run as they end: it is a pipeline.Progress that passes
// every call on to the embedded Progress (nil: none), and keeps the histograms of pair and step durations (the ShardResult holds
// counts only, so that it does not grow with the catalogue). Safe for concurrent use.
type Durations struct {
	pipeline.Progress

	mu          sync.Mutex
	pair, step  prometheus.Histogram
	initialised bool
}

// NewDurations returns a Durations that passes calls on to next (nil: none).
func NewDurations(next pipeline.Progress) *Durations {
	if next == nil {
		next = pipeline.NoProgress{}
	}
	d := &Durations{Progress: next}
	d.init()
	return d
}

func (d *Durations) init() {
	d.pair = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "nst_pair_duration_seconds",
		Help: "Wall time of each pair stylised in this run (read, compute, write), done or failed.", Buckets: PairBuckets})
	d.step = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "nst_step_duration_seconds",
		Help: "Mean optimiser step time of each pair done in this run (pair duration / steps).", Buckets: StepBuckets})
	d.initialised = true
}

// PairDone observes r (skipped and stale pairs, which took no work, are not observed) and
// passes it on.
func (d *Durations) PairDone(r pipeline.PairResult) {
	d.mu.Lock()
	if !d.initialised {
		d.init()
	}
	if r.Status != pipeline.StatusSkipped && r.Status != pipeline.StatusStale && r.Duration > 0 {
		d.pair.Observe(r.Duration.Seconds())
		if r.Status == pipeline.StatusDone && r.Steps > 0 {
			d.step.Observe(r.Duration.Seconds() / float64(r.Steps))
		}
	}
	d.mu.Unlock()
	if d.Progress != nil {
		d.Progress.PairDone(r)
	}
}

// Registry returns a registry holding rep's metrics (see docs/metrics.md): pair counts by
// status, the planned count, the histograms of d (nil: empty ones), the shard's wall time,
// and the time it finished.
func Registry(rep *pipeline.ShardResult, d *Durations) *prometheus.Registry {
	if d == nil {
		d = NewDurations(nil)
	}
	reg := prometheus.NewRegistry()
	pairs := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "nst_pairs",
		Help: "Pairs of this shard that ended in this run, by status (done, skipped, stale, failed, interrupted)."}, []string{"status"})
	planned := prometheus.NewGauge(prometheus.GaugeOpts{Name: "nst_pairs_planned", Help: "Pairs in this shard."})
	wall := prometheus.NewGauge(prometheus.GaugeOpts{Name: "nst_shard_duration_seconds", Help: "Wall time of this shard's run."})
	last := prometheus.NewGauge(prometheus.GaugeOpts{Name: "nst_last_completion_timestamp_seconds",
		Help: "When this shard's run ended (Unix time)."})
	d.mu.Lock()
	if !d.initialised {
		d.init()
	}
	reg.MustRegister(pairs, planned, d.pair, d.step, wall, last)
	d.mu.Unlock()

	pairs.WithLabelValues(string(pipeline.StatusDone)).Set(float64(rep.Done))
	pairs.WithLabelValues(string(pipeline.StatusSkipped)).Set(float64(rep.Skipped))
	pairs.WithLabelValues(string(pipeline.StatusStale)).Set(float64(rep.Stale))
	pairs.WithLabelValues(string(pipeline.StatusFailed)).Set(float64(rep.Failed))
	pairs.WithLabelValues(string(pipeline.StatusInterrupted)).Set(float64(rep.Interrupted))
	planned.Set(float64(rep.Planned))
	if !rep.End.IsZero() {
		wall.Set(rep.End.Sub(rep.Start).Seconds())
		last.Set(float64(rep.End.UnixNano()) / 1e9)
	}
	return reg
}

// Push replaces the metrics of rep's shard (and d's histograms, nil: empty) on the Pushgateway at rawURL (HTTP PUT to
// <path>/metrics/job/nst/run_id/<run ID>/shard/<i>), so a retried pod's push replaces its
// earlier one. It returns the gateway's error; ctx bounds the request.
//
// The URL may carry secrets: a user and password (sent as HTTP basic auth) and query
// parameters (a token=, kept on the request, after the path). Errors name the URL with its
// secrets redacted (storage.Redact), never as given.
func Push(ctx context.Context, rawURL string, rep *pipeline.ShardResult, d *Durations) error {
	safe := storage.Redact(rawURL)
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" {
		// url.Parse's error quotes the whole URL: say only that it does not parse.
		return fmt.Errorf("push metrics to %s: not an http(s) URL with a host", safe)
	}
	base := *u
	base.User, base.RawQuery, base.ForceQuery, base.Fragment = nil, "", false, ""
	p := push.New(base.String(), Job).
		Client(queryDoer{query: u.RawQuery}).
		Grouping("run_id", rep.RunID).
		Grouping("shard", strconv.Itoa(rep.ShardIndex)).
		Gatherer(Registry(rep, d)).
		Format(expfmt.NewFormat(expfmt.TypeTextPlain))
	if u.User != nil {
		pw, _ := u.User.Password()
		p = p.BasicAuth(u.User.Username(), pw)
	}
	if err := p.PushContext(ctx); err != nil {
		return fmt.Errorf("push metrics to %s: %w", safe, err)
	}
	return nil
}

// queryDoer sends the pusher's requests with the push URL's query, which the push library
// would otherwise put before the path it appends; it redacts the URL in transport errors.
type queryDoer struct{ query string }

func (d queryDoer) Do(req *http.Request) (*http.Response, error) {
	req.URL.RawQuery = d.query
	resp, err := http.DefaultClient.Do(req)
	var ue *url.Error
	if errors.As(err, &ue) {
		ue.URL = storage.Redact(ue.URL)
	}
	return resp, err
}
