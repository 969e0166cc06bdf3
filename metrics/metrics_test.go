package metrics

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/nst-project/nst/pipeline"
)

// TestPush: one PUT to the Pushgateway path of job nst, the run ID and the shard, whose text
// body parses and holds the documented metrics with the shard result's values.
func TestPush(t *testing.T) {
	type request struct {
		method, path string
		body         []byte
	}
	var got []request
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got = append(got, request{r.Method, r.URL.Path, b})
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()

	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	rep := &pipeline.ShardResult{RunID: "demo-1234", ShardIndex: 3, ShardCount: 8, Planned: 5, Done: 2, Skipped: 1, Failed: 1, Interrupted: 1,
		Start: start, End: start.Add(90 * time.Second)}
	d := NewDurations(nil)
	for _, r := range []pipeline.PairResult{
		{Status: pipeline.StatusDone, Duration: 20 * time.Second, Steps: 100},
		{Status: pipeline.StatusDone, Duration: 40 * time.Second, Steps: 100},
		{Status: pipeline.StatusSkipped},
		{Status: pipeline.StatusFailed, Duration: 2 * time.Second},
		{Status: pipeline.StatusInterrupted, Duration: 7 * time.Second, Steps: 10},
	} {
		d.PairDone(r)
	}
	if err := Push(t.Context(), srv.URL, rep, d); err != nil {
		t.Fatal(err)
	}
	// The grouping labels follow the job in either order.
	if len(got) != 1 || got[0].method != http.MethodPut || (got[0].path != "/metrics/job/nst/run_id/demo-1234/shard/3" &&
		got[0].path != "/metrics/job/nst/shard/3/run_id/demo-1234") {
		t.Fatalf("requests %+v", got)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(got[0].body))
	if err != nil {
		t.Fatalf("body does not parse: %v\n%s", err, got[0].body)
	}
	pairs := map[string]float64{}
	for _, m := range fams["nst_pairs"].GetMetric() {
		pairs[label(m, "status")] = m.GetGauge().GetValue()
	}
	if pairs["done"] != 2 || pairs["skipped"] != 1 || pairs["failed"] != 1 || pairs["interrupted"] != 1 {
		t.Errorf("nst_pairs %v", pairs)
	}
	if v := fams["nst_pairs_planned"].GetMetric()[0].GetGauge().GetValue(); v != 5 {
		t.Errorf("planned %v", v)
	}
	h := fams["nst_pair_duration_seconds"].GetMetric()[0].GetHistogram()
	if h.GetSampleCount() != 4 || h.GetSampleSum() != 69 { // skipped pairs are not observed
		t.Errorf("pair durations: count %d sum %v", h.GetSampleCount(), h.GetSampleSum())
	}
	s := fams["nst_step_duration_seconds"].GetMetric()[0].GetHistogram()
	if s.GetSampleCount() != 2 || s.GetSampleSum() < 0.599 || s.GetSampleSum() > 0.601 {
		t.Errorf("step durations: count %d sum %v", s.GetSampleCount(), s.GetSampleSum())
	}
	if v := fams["nst_shard_duration_seconds"].GetMetric()[0].GetGauge().GetValue(); v != 90 {
		t.Errorf("shard duration %v", v)
	}
	if v := fams["nst_last_completion_timestamp_seconds"].GetMetric()[0].GetGauge().GetValue(); v != float64(start.Add(90*time.Second).Unix()) {
		t.Errorf("completion %v", v)
	}
	// The Pushgateway adds the grouping labels; the body must not contradict them.
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			if v := label(m, "job"); v != "" && v != "nst" {
				t.Errorf("%s job=%q", name, v)
			}
		}
	}
}

// TestPushError: a gateway that refuses the push is an error naming the URL.
func TestPushError(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no", http.StatusBadRequest)
	}))
	defer srv.Close()
	if err := Push(t.Context(), srv.URL, &pipeline.ShardResult{RunID: "r"}, nil); err == nil {
		t.Fatal("no error")
	}
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}
