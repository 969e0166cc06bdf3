package pipeline

// Catalogue scale: what a run costs in requests and memory when most of a large catalogue is
// done. The catalogue lives in gofakes3 (seeded in-process, bypassing HTTP, so that seeding
// 20k items takes no time); every request nst sends is counted by verb.

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
	"gocloud.dev/blob"
	_ "gocloud.dev/blob/s3blob"

	"github.com/nst-project/nst/transfer/fake"
)

// countedS3 is gofakes3 behind a handler that counts requests by verb (LIST, GET, HEAD, PUT,
// DELETE) and can refuse some.
type countedS3 struct {
	backend *s3mem.Backend
	srv     *httptest.Server
	query   string

	mu     sync.Mutex
	counts map[string]int
	deny   func(r *http.Request) bool // answered 403 AccessDenied
}

func newCountedS3(t testing.TB) *countedS3 {
	t.Helper()
	dir := t.TempDir()
	for k, v := range map[string]string{
		"AWS_ACCESS_KEY_ID": "AKIDFAKEFORTESTS", "AWS_SECRET_ACCESS_KEY": "fake-secret-for-tests", "AWS_SESSION_TOKEN": "",
		"AWS_PROFILE": "", "AWS_CONFIG_FILE": filepath.Join(dir, "config"), "AWS_SHARED_CREDENTIALS_FILE": filepath.Join(dir, "credentials"),
		"AWS_EC2_METADATA_DISABLED": "true", "AWS_ENDPOINT_URL": "", "AWS_ENDPOINT_URL_S3": "",
	} {
		t.Setenv(k, v)
	}
	s := &countedS3{backend: s3mem.New(), counts: map[string]int{}}
	inner := gofakes3.New(s.backend, gofakes3.WithLogger(gofakes3.DiscardLog())).Server()
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		verb := r.Method
		if r.Method == http.MethodGet && (r.URL.Query().Has("list-type") || strings.Count(strings.Trim(r.URL.Path, "/"), "/") == 0) {
			verb = "LIST"
		}
		s.mu.Lock()
		s.counts[verb]++
		deny := s.deny != nil && s.deny(r)
		s.mu.Unlock()
		if deny {
			s3Error(w, http.StatusForbidden, "AccessDenied")
			return
		}
		inner.ServeHTTP(w, r)
	}))
	t.Cleanup(s.srv.Close)
	for _, b := range []string{"in", "out"} {
		if err := s.backend.CreateBucket(b); err != nil {
			t.Fatal(err)
		}
	}
	s.query = url.Values{"endpoint": {s.srv.URL}, "region": {"us-east-1"}, "use_path_style": {"true"}, "disable_https": {"true"},
		"request_checksum_calculation": {"when_required"}, "response_checksum_validation": {"when_required"}}.Encode()
	return s
}

func (s *countedS3) url(bucket, prefix string) string {
	return "s3://" + bucket + "/" + prefix + "?" + s.query
}

// seed stores an object without a request.
func (s *countedS3) seed(t testing.TB, bucket, key string, data []byte) {
	if _, err := s.backend.PutObject(bucket, key, map[string]string{}, bytes.NewReader(data), int64(len(data)), nil); err != nil {
		t.Fatal(err)
	}
}

// direct opens a bucket through the counting server, for the test's own reads and writes.
func (s *countedS3) direct(t testing.TB, bucket string) *blob.Bucket {
	b, err := blob.OpenBucket(context.Background(), "s3://"+bucket+"?"+s.query)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// take returns the counts since the last take and resets them.
func (s *countedS3) take() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.counts
	s.counts = map[string]int{}
	return c
}

func total(c map[string]int) int {
	n := 0
	for _, v := range c {
		n += v
	}
	return n
}

// scaleCatalogue seeds n contents and 5 styles (tiny valid PNGs) and returns a manifest over
// them with 2 presets: 10n items.
func scaleCatalogue(t testing.TB, s *countedS3, n int) string {
	img := pngBytes(t, testImage(16, 16, 3))
	for i := range n {
		s.seed(t, "in", fmt.Sprintf("contents/c%06d.png", i), img)
	}
	for i := range 5 {
		s.seed(t, "in", fmt.Sprintf("styles/s%d.png", i), pngBytes(t, testImage(16, 16, i)))
	}
	return writeManifest(t, strings.Replace(manifestText(s.url("in", "contents/"), s.url("in", "styles/"), s.url("out", "r/"), ""),
		"steps: 4", "steps: 1", 1))
}

// seedDone marks every item of the manifest done in the index, as a finished run would have
// (markers only: a run that trusts the index reads nothing else).
func seedDone(t testing.TB, s *countedS3, man string) int {
	n := 0
	_, err := PlanRun(context.Background(), Config{ManifestURL: man}, PlanOptions{Shard: -1, Each: func(it PlanItem) error {
		base := strings.TrimSuffix(strings.TrimPrefix(it.Outputs.Provenance, "r/"), ".json")
		s.seed(t, "out", marker{slot: slotHash(base), id: parseID(it.ID)}.key("r/"), nil)
		n++
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestRequestBudget: over a catalogue of 20,000 done items (2000 contents x 5 styles x 2
// presets) a re-run reads no provenance and sends at most one request per 500 items: listing
// pages of the inputs (twice), of the done index and of the checkpoints, and the summary. After
// 20 new contents arrive, exactly their 200 items are computed, each at a bounded number of
// requests. Sharded over 4, the shards' requests add up to the same plus a small constant each.
func TestRequestBudget(t *testing.T) {
	if testing.Short() {
		t.Skip("20,000 items: run without -short (make test runs it in its pass without the race detector)")
	}
	s := newCountedS3(t)
	const contents = 2000
	man := scaleCatalogue(t, s, contents)
	items := seedDone(t, s, man)
	s.take()
	cfg := Config{ManifestURL: man, NewEngine: fakeEngine(fake.Engine{AnySize: true}), RunID: "budget", Version: "test"}

	rep, err := Run(t.Context(), cfg)
	noop := s.take()
	if err != nil || rep.Skipped != items || rep.Done != 0 || !rep.OK() {
		t.Fatalf("no-op re-run: %v, %+v", err, rep)
	}
	t.Logf("no-op re-run over %d done items: %d requests %v", items, total(noop), noop)
	if noop["GET"] != 0 || noop["HEAD"] > 1 || noop["PUT"] > 1 || total(noop) > items/500 {
		t.Errorf("no-op re-run: %v (%d requests), want no GET, at most one PUT and HEAD (the summary), at most %d in all",
			noop, total(noop), items/500)
	}

	for i := range 4 {
		sc := cfg
		sc.ShardIndex, sc.ShardCount = i, 4
		rep, err := Run(t.Context(), sc)
		if err != nil || rep.Skipped != rep.Planned || rep.Planned < items/4*9/10 {
			t.Fatalf("shard %d of 4: %v, %+v", i, err, rep)
		}
	}
	sharded := s.take()
	t.Logf("no-op re-run in 4 shards: %d requests %v", total(sharded), sharded)
	if sharded["GET"] != 0 || total(sharded) > items/500+4*20 {
		t.Errorf("4 shards: %v (%d requests), want no GET and at most %d", sharded, total(sharded), items/500+4*20)
	}

	img := pngBytes(t, testImage(16, 16, 9))
	for i := range 20 {
		s.seed(t, "in", fmt.Sprintf("contents/new%03d.png", i), img)
	}
	rep, res, err := runResults(t.Context(), cfg)
	added := s.take()
	if err != nil || rep.Done != 200 || rep.Skipped != items || !rep.OK() {
		t.Fatalf("re-run after 20 new contents: %v, %+v", err, rep)
	}
	for _, r := range res {
		if isNew := strings.HasPrefix(r.Content, "new"); isNew != (r.Status == StatusDone) {
			t.Errorf("%s: %s", r.Pair, r.Status)
		}
	}
	perNew := float64(total(added)-total(noop)) / 200
	t.Logf("re-run with 200 new items: %d requests %v, %.1f per new item beyond the no-op's", total(added), added, perNew)
	if perNew > 20 || added["GET"] > 2*200+5 {
		t.Errorf("%.1f requests per new item (%v), want at most 20, GETs at most 2 per item", perNew, added)
	}
}

// lastHeap is a Progress that measures, once the last of a run's items has ended, the heap
// still in use after a collection: what the run holds (its done set and first-pass slots are
// alive until Run returns), not its garbage. At the last item no listing page is in flight;
// earlier, whether the next page of the inputs is being fetched (a few MiB of decoded XML)
// depends on timing, which made a half-way measurement vary with the machine's load.
type lastHeap struct {
	NoProgress
	at    int64
	ended atomic.Int64
	live  atomic.Uint64
}

func (m *lastHeap) PairDone(PairResult) {
	if m.ended.Add(1) == m.at {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		m.live.Store(ms.HeapAlloc)
	}
}

// TestMemoryPerItem: at the end of a no-op re-run, the heap a run holds grows by at most 64
// bytes per item of the shard from 5,000 to 45,000 items (the bound; the done set
// takes 24 bytes an item and the first pass's slots 8), plus 256 KiB of slack. Both
// catalogues end on a listing page of 500 contents, so the page the run holds last is alike.
func TestMemoryPerItem(t *testing.T) {
	if testing.Short() {
		t.Skip("45,000 items: run without -short (make test runs it in its pass without the race detector)")
	}
	held := map[int]int64{}
	for _, contents := range []int{500, 4500} {
		s := newCountedS3(t)
		man := scaleCatalogue(t, s, contents)
		items := seedDone(t, s, man)
		m := &lastHeap{at: int64(items)}
		cfg := Config{ManifestURL: man, NewEngine: fakeEngine(fake.Engine{AnySize: true}), RunID: "mem", Version: "test", Progress: m}
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		rep, err := Run(t.Context(), cfg)
		if err != nil || rep.Skipped != items {
			t.Fatalf("%d items: %v %+v", items, err, rep)
		}
		held[items] = int64(m.live.Load()) - int64(ms.HeapAlloc)
		t.Logf("%d items: %.2f MiB held at the end", items, float64(held[items])/(1<<20))
	}
	growth := held[45000] - held[5000]
	t.Logf("from 5,000 to 45,000 items: %.1f bytes more per item", float64(growth)/40000)
	if growth > 64*40000+256<<10 {
		t.Errorf("the heap held grew by %d bytes for 40,000 more items: over 64 per item + 256 KiB", growth)
	}
}
