// Package metrics pushes a shard's outcome to a Prometheus Pushgateway at the end of a batch
// job (nst run --metrics-push). Batch pods live too briefly to be scraped, so each shard
// pushes once, under the grouping key job="nst", run_id and shard; see docs/metrics.md for
// names and labels.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

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

// Registry returns a registry holding rep's metrics (see docs/metrics.md): pair counts by
// status, the planned count, histograms of the duration of each pair computed in this run and
// of its mean step time, the shard's wall time, and the time it finished.
func Registry(rep *pipeline.Report) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	pairs := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "nst_pairs",
		Help: "Pairs of this shard that ended in this run, by status (done, skipped, failed, interrupted)."}, []string{"status"})
	planned := prometheus.NewGauge(prometheus.GaugeOpts{Name: "nst_pairs_planned", Help: "Pairs in this shard."})
	pairDur := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "nst_pair_duration_seconds",
		Help: "Wall time of each pair stylised in this run (read, compute, write), done or failed.", Buckets: PairBuckets})
	stepDur := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "nst_step_duration_seconds",
		Help: "Mean optimiser step time of each pair done in this run (pair duration / steps).", Buckets: StepBuckets})
	wall := prometheus.NewGauge(prometheus.GaugeOpts{Name: "nst_shard_duration_seconds", Help: "Wall time of this shard's run."})
	last := prometheus.NewGauge(prometheus.GaugeOpts{Name: "nst_last_completion_timestamp_seconds",
		Help: "When this shard's run ended (Unix time)."})
	reg.MustRegister(pairs, planned, pairDur, stepDur, wall, last)

	pairs.WithLabelValues(string(pipeline.StatusDone)).Set(float64(rep.Done))
	pairs.WithLabelValues(string(pipeline.StatusSkipped)).Set(float64(rep.Skipped))
	pairs.WithLabelValues(string(pipeline.StatusFailed)).Set(float64(rep.Failed))
	pairs.WithLabelValues(string(pipeline.StatusInterrupted)).Set(float64(rep.Interrupted))
	planned.Set(float64(rep.Planned))
	for _, r := range rep.Results {
		if r.Status == pipeline.StatusSkipped || r.Duration <= 0 {
			continue
		}
		pairDur.Observe(r.Duration.Seconds())
		if r.Status == pipeline.StatusDone && r.Steps > 0 {
			stepDur.Observe(r.Duration.Seconds() / float64(r.Steps))
		}
	}
	if !rep.End.IsZero() {
		wall.Set(rep.End.Sub(rep.Start).Seconds())
		last.Set(float64(rep.End.UnixNano()) / 1e9)
	}
	return reg
}

// Push replaces the metrics of rep's shard on the Pushgateway at rawURL (HTTP PUT to
// <path>/metrics/job/nst/run_id/<run ID>/shard/<i>), so a retried pod's push replaces its
// earlier one. It returns the gateway's error; ctx bounds the request.
//
// The URL may carry secrets: a user and password (sent as HTTP basic auth) and query
// parameters (a token=, kept on the request, after the path). Errors name the URL with its
// secrets redacted (storage.Redact), never as given.
func Push(ctx context.Context, rawURL string, rep *pipeline.Report) error {
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
		Gatherer(Registry(rep)).
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
