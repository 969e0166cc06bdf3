package pipeline

// Storage faults through the pipeline: a fault-injecting reverse proxy between s3blob and an
// in-process gofakes3 server. See docs/RELIABILITY.md for the rates, seeds and results.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
	"gocloud.dev/blob"
	_ "gocloud.dev/blob/s3blob"

	"github.com/nst-project/nst/storage"
	"github.com/nst-project/nst/transfer/fake"
	"github.com/nst-project/nst/transfer/imaging"
)

// Fault kinds the proxy injects.
const (
	fault500        = "500 InternalError"
	fault503        = "503 SlowDown"
	faultReset      = "connection reset before the server"
	faultResetAfter = "connection reset after the server acted"
	faultStall      = "stall past the attempt timeout"
	faultTruncResp  = "response body truncated"
	faultTruncReq   = "upload body truncated, framing consistent"
)

var faultKinds = []string{fault500, fault503, faultReset, faultResetAfter, faultStall, faultTruncResp, faultTruncReq}

// faultProxy forwards S3 requests to a backend and, with probability rate per request (a
// math/rand/v2 PCG seeded with seed; the decision sequence is fixed, which request gets which
// decision depends on scheduling), injects one of faultKinds instead.
type faultProxy struct {
	srv     *httptest.Server
	backend *url.URL
	rp      *httputil.ReverseProxy
	stall   time.Duration

	mu       sync.Mutex
	rate     float64
	rng      *rand.Rand
	requests int
	injected map[string]int
}

func newFaultProxy(t *testing.T, backend string, seed uint64, rate float64, stall time.Duration) *faultProxy {
	u, err := url.Parse(backend)
	if err != nil {
		t.Fatal(err)
	}
	p := &faultProxy{backend: u, rp: httputil.NewSingleHostReverseProxy(u), stall: stall,
		rate: rate, rng: rand.New(rand.NewPCG(seed, 0x6661756c74)), injected: map[string]int{}}
	p.rp.ErrorLog = nil
	p.rp.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) { w.WriteHeader(http.StatusBadGateway) }
	p.srv = httptest.NewServer(p)
	t.Cleanup(p.srv.Close)
	return p
}

func (p *faultProxy) setRate(r float64) {
	p.mu.Lock()
	p.rate = r
	p.mu.Unlock()
}

func (p *faultProxy) counts() (requests int, injected map[string]int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := map[string]int{}
	for k, v := range p.injected {
		m[k] = v
	}
	return p.requests, m
}

// decide picks the fault for a request, "" for none. Faults that need a body (truncations)
// fall back to a 503 where the request has none.
func (p *faultProxy) decide(r *http.Request) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.requests++
	if p.rng.Float64() >= p.rate {
		return ""
	}
	f := faultKinds[p.rng.IntN(len(faultKinds))]
	switch {
	case f == faultTruncResp && r.Method != http.MethodGet:
		f = fault503
	case f == faultTruncReq && r.Method != http.MethodPut:
		f = fault500
	}
	p.injected[f]++
	return f
}

func s3Error(w http.ResponseWriter, status int, code string) {
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code><Message>injected by the fault proxy</Message><RequestId>fault</RequestId></Error>`, code)
}

// reset closes the client's connection abruptly (RST, not FIN).
func reset(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(err)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	conn.Close()
}

func (p *faultProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch p.decide(r) {
	case fault500:
		s3Error(w, http.StatusInternalServerError, "InternalError")
	case fault503:
		s3Error(w, http.StatusServiceUnavailable, "SlowDown")
	case faultReset:
		reset(w)
	case faultStall:
		select {
		case <-r.Context().Done():
		case <-time.After(p.stall):
		}
		s3Error(w, http.StatusServiceUnavailable, "SlowDown")
	case faultResetAfter:
		// The backend acts (a PUT lands, a DELETE deletes), the client never hears of it.
		rec := httptest.NewRecorder()
		p.rp.ServeHTTP(rec, r)
		reset(w)
	case faultTruncResp:
		rec := httptest.NewRecorder()
		p.rp.ServeHTTP(rec, r)
		body := rec.Body.Bytes()
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		w.WriteHeader(rec.Code)
		_, _ = w.Write(body[:len(body)/2]) // the server closes the connection: short body
	case faultTruncReq:
		data, _ := io.ReadAll(r.Body)
		half := data[:len(data)/2]
		r.Body = io.NopCloser(bytes.NewReader(half))
		r.ContentLength = int64(len(half))
		r.Header.Set("Content-Length", fmt.Sprint(len(half)))
		p.rp.ServeHTTP(w, r)
	default:
		p.rp.ServeHTTP(w, r)
	}
}

// s3Rig is gofakes3 with buckets "in" and "out", reachable directly and through a fault proxy.
type s3Rig struct {
	backend *s3mem.Backend
	srv     *httptest.Server
	proxy   *faultProxy
	query   func(endpoint string) string
}

func newS3Rig(t *testing.T, seed uint64, rate float64, stall time.Duration) *s3Rig {
	dir := t.TempDir()
	for k, v := range map[string]string{
		"AWS_ACCESS_KEY_ID": "AKIDFAKEFORTESTS", "AWS_SECRET_ACCESS_KEY": "fake-secret-for-tests", "AWS_SESSION_TOKEN": "",
		"AWS_PROFILE": "", "AWS_CONFIG_FILE": filepath.Join(dir, "config"), "AWS_SHARED_CREDENTIALS_FILE": filepath.Join(dir, "credentials"),
		"AWS_EC2_METADATA_DISABLED": "true", "AWS_ENDPOINT_URL": "", "AWS_ENDPOINT_URL_S3": "",
	} {
		t.Setenv(k, v)
	}
	r := &s3Rig{backend: s3mem.New()}
	r.srv = httptest.NewServer(gofakes3.New(r.backend, gofakes3.WithLogger(gofakes3.DiscardLog())).Server())
	t.Cleanup(r.srv.Close)
	for _, b := range []string{"in", "out"} {
		if err := r.backend.CreateBucket(b); err != nil {
			t.Fatal(err)
		}
	}
	r.proxy = newFaultProxy(t, r.srv.URL, seed, rate, stall)
	r.query = func(endpoint string) string {
		return url.Values{"endpoint": {endpoint}, "region": {"us-east-1"}, "use_path_style": {"true"}, "disable_https": {"true"},
			"request_checksum_calculation": {"when_required"}, "response_checksum_validation": {"when_required"}}.Encode()
	}
	return r
}

// direct opens a bucket on the backend without faults, for the test's own reads and writes.
func (r *s3Rig) direct(t *testing.T, name string) *blob.Bucket {
	b, err := blob.OpenBucket(t.Context(), "s3://"+name+"?"+r.query(r.srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// catalogueInputs writes n contents and 2 styles under in.
func catalogueInputs(t *testing.T, in *blob.Bucket, n int) {
	for i := range n {
		put(t, in, fmt.Sprintf("contents/c%02d.png", i), pngBytes(t, testImage(18+i%5, 16+i%3, i)))
	}
	put(t, in, "styles/wave.png", pngBytes(t, testImage(16, 16, 40)))
	put(t, in, "styles/night.jpg", jpegBytes(t, testImage(20, 16, 41)))
}

// verifyOutputs checks every object under out/prefix against want (key -> bytes of the
// fault-free run): nothing partial or foreign exists under a final key at any time. An image
// or loss log without provenance may exist (a pair that failed between writes): it must
// still be complete and carry the pair's ID. It returns the provenance IDs found.
// verifyOutputs checks every object under prefix against the fault-free run. With doneOnly
// (during a run, and after one where pairs failed), a pair whose provenance does not yet read back with its ID is not judged:
// storage verifies each write by reading it back and deletes a damaged one (s3blob sends no
// Content-MD5, so a body damaged on the way can be stored), so such an object can be seen
// for a moment before its delete. That is why the pipeline trusts a pair as done only when
// its provenance, written last, parses and names the pair's ID. Without doneOnly every
// object must be exact.
// provenanceReads reports whether key holds a provenance that parses and names id.
func provenanceReads(ctx context.Context, out *blob.Bucket, key, id string) bool {
	data, err := out.ReadAll(ctx, key)
	if err != nil {
		return false
	}
	var p Provenance
	return json.Unmarshal(data, &p) == nil && p.ID == id
}

func verifyOutputs(t *testing.T, out *blob.Bucket, prefix string, want map[string][]byte, ids map[string]string, doneOnly bool) map[string]bool {
	t.Helper()
	ctx := context.Background()
	done := map[string]bool{}
	it := out.List(&blob.ListOptions{Prefix: prefix})
	for {
		o, err := it.Next(ctx)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		rel := strings.TrimPrefix(o.Key, prefix)
		if strings.HasPrefix(rel, "_") { // _runs/, _checkpoints/, _report/
			continue
		}
		if doneOnly && !provenanceReads(ctx, out, prefix+keyStem(rel)+".json", ids[keyStem(rel)]) {
			continue // not done yet: a damaged attempt may still be on its way out
		}
		data, err := out.ReadAll(ctx, o.Key)
		if err != nil {
			t.Fatalf("%s: %v", o.Key, err)
		}
		exp, ok := want[rel]
		if !ok {
			t.Errorf("unexpected object %s", o.Key)
			continue
		}
		attrs, err := out.Attributes(ctx, o.Key)
		if err != nil || attrs.Metadata[metaID] != ids[keyStem(rel)] {
			t.Errorf("%s: nst-id %q, want %q (%v)", o.Key, attrs.Metadata[metaID], ids[keyStem(rel)], err)
		}
		switch {
		case strings.HasSuffix(rel, ".png"):
			if _, _, err := imaging.Decode(bytes.NewReader(data), imaging.Limits{}); err != nil {
				t.Errorf("%s does not decode: %v", o.Key, err)
			}
			if !bytes.Equal(data, exp) {
				t.Errorf("%s: %d bytes differ from the fault-free run's %d", o.Key, len(data), len(exp))
			}
		case strings.HasSuffix(rel, ".loss.jsonl"):
			if !bytes.Equal(data, exp) {
				t.Errorf("%s: loss log differs from the fault-free run's:\n%s", o.Key, data)
			}
		case strings.HasSuffix(rel, ".json"):
			var p Provenance
			if err := json.Unmarshal(data, &p); err != nil || p.ID != ids[keyStem(rel)] {
				t.Errorf("%s: provenance %+v (%v), want id %s", o.Key, p, err, ids[keyStem(rel)])
				continue
			}
			var wp Provenance
			_ = json.Unmarshal(exp, &wp)
			if p.Steps != wp.Steps || p.Final != wp.Final || p.Output.Keys != wp.Output.Keys || p.Output.Width != wp.Output.Width || p.Output.Height != wp.Output.Height || p.Params.Digest() != wp.Params.Digest() {
				t.Errorf("%s: provenance differs from the fault-free run's", o.Key)
			}
			// The done marker is last: its image and loss log are there, complete.
			for _, k := range []string{p.Output.Keys.Image, p.Output.Keys.LossLog, p.Output.Keys.LossPlot} {
				if ok, err := out.Exists(ctx, k); !ok || err != nil {
					t.Errorf("%s: provenance without %s (%v)", o.Key, k, err)
				}
			}
			done[p.ID] = true
		}
	}
	return done
}

// TestStorageFaults: with 20% of S3 requests failing (500, 503 SlowDown, resets before and
// after the server acted, stalls past the attempt timeout, truncated downloads and uploads),
// a run finishes with every output identical to a fault-free run's or its pair reported
// failed with a cause; nothing partial is ever under a final key (checked during and after
// the run); a re-run completes the rest and writes each output once.
func TestStorageFaults(t *testing.T) {
	const (
		seed     = 20261107
		rate     = 0.20
		contents = 6
		steps    = 3
	)
	rig := newS3Rig(t, seed, rate, 2*time.Second)
	in := rig.direct(t, "in")
	catalogueInputs(t, in, contents)
	q := rig.query(rig.proxy.srv.URL)
	man := writeManifest(t, manifestText("s3://in/contents/?"+q, "s3://in/styles/?"+q, "s3://out/r/?"+q, ""))

	// The fault-free reference: the same catalogue and manifest on mem://.
	ref := memEnv()
	catalogueInputs(t, ref.bucket(t, ref.in), contents)
	refMan := writeManifest(t, manifestText("mem://in/contents/", "mem://in/styles/", "mem://out/r/", ""))
	refRep, err := Run(t.Context(), ref.config(refMan))
	if err != nil || refRep.Done != 2*2*contents {
		t.Fatalf("reference run: %v %+v", err, refRep)
	}
	// Expected bytes by key (every object of the reference run but "_" ones), expected IDs by
	// key stem from a plan over the S3 inputs (IDs hash the URLs without their query).
	want, ids := map[string][]byte{}, map[string]string{}
	refOut := ref.bucket(t, ref.out)
	for k, err := range listKeys(refOut, "r/") {
		if err != nil {
			t.Fatal(err)
		}
		if rel := strings.TrimPrefix(k, "r/"); !strings.HasPrefix(rel, "_") {
			if want[rel], err = refOut.ReadAll(t.Context(), k); err != nil {
				t.Fatal(err)
			}
		}
	}
	dq := rig.query(rig.srv.URL)
	_, err = PlanRun(t.Context(), Config{ManifestURL: writeManifest(t,
		manifestText("s3://in/contents/?"+dq, "s3://in/styles/?"+dq, "s3://out/r/?"+dq, ""))}, PlanOptions{Shard: -1,
		Each: func(it PlanItem) error {
			ids[keyStem(strings.TrimPrefix(it.Outputs.Provenance, "r/"))] = it.ID
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}

	var logs bytes.Buffer
	var logMu sync.Mutex
	cfg := Config{ManifestURL: man, NewEngine: fakeEngine(fake.Engine{AnySize: true}), RunID: "faults", Version: "test", IOJobs: 4, Lanes: 2,
		Logger:  slog.New(slog.NewJSONHandler(&lockedWriter{w: &logs, mu: &logMu}, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Storage: storage.Options{OpTimeout: 400 * time.Millisecond, Retry: storage.RetryPolicy{Attempts: 4, Base: 5 * time.Millisecond, Max: 40 * time.Millisecond}}}

	// A watcher verifies the output bucket (directly, no faults) while the run goes.
	out := rig.direct(t, "out")
	stop := make(chan struct{})
	var watch sync.WaitGroup
	watches := 0
	watch.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			verifyOutputs(t, out, "r/", want, ids, true)
			watches++
		}
	})
	start := time.Now()
	rep, res, err := runResults(t.Context(), cfg)
	close(stop)
	watch.Wait()
	if err != nil {
		t.Fatalf("first run: %v", err)
	}
	reqs, injected := rig.proxy.counts()
	logMu.Lock()
	retries := strings.Count(logs.String(), `"msg":"storage: retrying"`)
	logMu.Unlock()
	t.Logf("first run: %v, %d requests, injected %v (%d in all), %d storage retries; done %d, failed %d of %d; %d checks during the run",
		time.Since(start).Round(time.Millisecond), reqs, injected, sum(injected), retries, rep.Done, rep.Failed, rep.Planned, watches)
	if sum(injected) < 10 || len(injected) < 5 {
		t.Errorf("too few faults injected to prove anything: %v", injected)
	}
	if rep.Done+rep.Failed != rep.Planned {
		t.Errorf("done %d + failed %d != planned %d", rep.Done, rep.Failed, rep.Planned)
	}
	sum1 := readSummary(t, out, rep.SummaryKey)
	for _, f := range sum1.Failures {
		if f.Op == "" || f.Error == "" || f.ID == "" {
			t.Errorf("failure without cause: %+v", f)
		}
		t.Logf("failed: %s %s: %s", f.Content, f.Op, f.Error)
	}
	if logged := pairLog(t, out, "r/", sum1); sum1.Failed != rep.Failed || len(logged) != rep.Planned {
		t.Errorf("summary failed %d, pair log %d; result failed %d planned %d", sum1.Failed, len(logged), rep.Failed, rep.Planned)
	}
	// A pair that failed may leave a damaged object its last write could not clean up (its
	// retries ran out); it is not done, and the re-run below must repair it. Done pairs must
	// be exact now.
	done := verifyOutputs(t, out, "r/", want, ids, true)
	for _, r := range res {
		if r.Status == StatusDone && !done[r.ID] {
			t.Errorf("%s reported done without provenance", r.Pair)
		}
	}

	// The re-run, faults off, completes the rest: every output present once, identical.
	rig.proxy.setRate(0)
	cfg.RunID = "faults-rerun"
	// No stalls any more: the attempt timeout only has to outlast a busy machine (the race
	// detector on two shared cores took over 400 ms for some requests).
	cfg.Storage.OpTimeout = 30 * time.Second
	rep2, err := Run(t.Context(), cfg)
	if err != nil || !rep2.OK() || rep2.Skipped != len(done) || rep2.Done != rep2.Planned-len(done) {
		t.Fatalf("re-run: %v; done %d skipped %d failed %d (first run left %d done)", err, rep2.Done, rep2.Skipped, rep2.Failed, len(done))
	}
	done = verifyOutputs(t, out, "r/", want, ids, false)
	if len(done) != rep2.Planned {
		t.Errorf("%d items with provenance, want %d", len(done), rep2.Planned)
	}
	var n int
	for o, err := range listKeys(out, "r/") {
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(o, "r/_") {
			n++
		}
	}
	if n != len(want) {
		t.Errorf("%d objects after the re-run, want %d (no checkpoints or extras left)", n, len(want))
	}
	t.Logf("re-run: done %d, skipped %d", rep2.Done, rep2.Skipped)
}

// keyStem is an output key without its suffix: the same for all of an item's outputs.
func keyStem(k string) string {
	for _, suf := range []string{".loss.jsonl", ".loss.png", ".json", ".png", ".jpg"} {
		if s, ok := strings.CutSuffix(k, suf); ok {
			return s
		}
	}
	return k
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// listKeys iterates over the keys under prefix.
func listKeys(b *blob.Bucket, prefix string) func(func(string, error) bool) {
	return func(yield func(string, error) bool) {
		it := b.List(&blob.ListOptions{Prefix: prefix})
		for {
			o, err := it.Next(context.Background())
			if err == io.EOF {
				return
			}
			if !yield(func() string {
				if o == nil {
					return ""
				}
				return o.Key
			}(), err) || err != nil {
				return
			}
		}
	}
}

// lockedWriter serialises writes to w.
type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// TestSecretsNeverLeak: credentials in the environment and in URLs (a password in the
// endpoint URL, a session token) appear in no log line, summary, provenance, contact sheet
// or error, even with storage faults and failing pairs producing error messages.
func TestSecretsNeverLeak(t *testing.T) {
	const (
		envSecret = "ENVSECRETzq8Yx3"
		urlSecret = "URLSECRETp4Kd9w"
	)
	rig := newS3Rig(t, 7, 0.15, 2*time.Second)
	t.Setenv("AWS_SECRET_ACCESS_KEY", envSecret)
	t.Setenv("AWS_SESSION_TOKEN", envSecret+"-token")
	in := rig.direct(t, "in")
	catalogueInputs(t, in, 3)
	put(t, in, "contents/broken.png", []byte("not a png"))
	pu, _ := url.Parse(rig.proxy.srv.URL)
	pu.User = url.UserPassword("nst", urlSecret)
	q := rig.query(pu.String())
	man := writeManifest(t, manifestText("s3://in/contents/?"+q, "s3://in/styles/?"+q, "s3://out/r/?"+q, ""))
	var logs bytes.Buffer
	var mu sync.Mutex
	cfg := Config{ManifestURL: man, NewEngine: fakeEngine(fake.Engine{AnySize: true}), RunID: "secrets", Version: "test",
		Logger:  slog.New(slog.NewJSONHandler(&lockedWriter{w: &logs, mu: &mu}, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Storage: storage.Options{OpTimeout: 300 * time.Millisecond, Retry: storage.RetryPolicy{Attempts: 3, Base: time.Millisecond, Max: 5 * time.Millisecond}}}
	rep, err := Run(t.Context(), cfg)
	var texts []string
	if err != nil {
		texts = append(texts, err.Error())
	}
	if rep != nil {
		for _, r := range rep.Failures {
			texts = append(texts, r.Err.Error())
		}
	}
	mu.Lock()
	texts = append(texts, logs.String())
	mu.Unlock()
	out := rig.direct(t, "out")
	objects := 0
	for k, err := range listKeys(out, "") {
		if err != nil {
			t.Fatal(err)
		}
		data, err := out.ReadAll(t.Context(), k)
		if err != nil {
			t.Fatal(err)
		}
		texts = append(texts, k+"\n"+string(data))
		objects++
	}
	for _, s := range texts {
		for _, secret := range []string{envSecret, urlSecret} {
			if i := strings.Index(s, secret); i >= 0 {
				t.Errorf("secret %s leaked: ...%s...", secret, s[max(0, i-200):min(len(s), i+50)])
			}
		}
	}
	if !strings.Contains(strings.Join(texts, "\n"), "nst%3AREDACTED%40") || objects < 10 || rep == nil || rep.Failed == 0 {
		t.Errorf("the test did not exercise what it claims: %d objects, result %+v", objects, rep)
	}
	_, injected := rig.proxy.counts()
	t.Logf("%d objects and %d log bytes checked; faults %v; failed %d", objects, logs.Len(), injected, rep.Failed)
}
