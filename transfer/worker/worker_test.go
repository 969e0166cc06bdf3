package worker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/color"
	"log/slog"
	"os"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nst-project/nst/transfer"
	"github.com/nst-project/nst/transfer/fake"
	"github.com/nst-project/nst/transfer/transfertest"
)

// workerEngine is the engine the test binary serves when it stands in for a worker.
var workerEngine = fake.Engine{StepDelay: 2 * time.Millisecond}

// The test binary doubles as the worker: with NST_WORKER_TEST set, TestMain serves jobs with
// the fake engine instead of running tests. NST_WORKER_CRASH_AT=N makes it die at step N, as a
// libtorch crash would; NST_WORKER_ENGINE=single serves an engine that cannot batch, and
// NST_WORKER_ENGINE=batching one that says on stderr when it gets a batch.
func TestMain(m *testing.M) {
	if os.Getenv("NST_WORKER_TEST") != "" {
		var eng transfer.Engine = workerEngine
		switch os.Getenv("NST_WORKER_ENGINE") {
		case "single":
			eng = single{workerEngine}
		case "batching":
			eng = batching{workerEngine}
		}
		if n, err := strconv.Atoi(os.Getenv("NST_WORKER_CRASH_AT")); err == nil {
			eng = crashing{at: n}
		}
		os.Stderr.WriteString("fake worker ready\n")
		if err := Serve(context.Background(), os.Stdin, os.Stdout, eng); err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// crashing is the fake engine until step `at`, where the process dies.
type crashing struct{ at int }

func (c crashing) Info() transfer.Info { return fake.Engine{}.Info() }
func (c crashing) Stylize(ctx context.Context, req transfer.Request) (*transfer.Result, error) {
	inner := req.OnStep
	req.OnStep = func(s transfer.Step) error {
		if s.Step == c.at {
			os.Stderr.WriteString("fatal: simulated libtorch abort\n")
			os.Exit(134)
		}
		if inner != nil {
			return inner(s)
		}
		return nil
	}
	return fake.Engine{}.Stylize(ctx, req)
}

// single is an engine without StylizeBatch: the worker runs a batch's requests one by one.
type single struct{ transfer.Engine }

// batching is the fake engine saying on stderr that it was asked for a batch.
type batching struct{ fake.Engine }

func (b batching) StylizeBatch(ctx context.Context, reqs []transfer.Request) ([]*transfer.Result, []error) {
	fmt.Fprintf(os.Stderr, "batch of %d\n", len(reqs))
	return b.Engine.StylizeBatch(ctx, reqs)
}

func newPool(t *testing.T, env []string, opts Options) *Pool {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	opts.Command = []string{exe}
	// GORACE: a worker built with -race would otherwise sleep 1 s as it exits.
	opts.Env = append(append(os.Environ(), "NST_WORKER_TEST=1", "GORACE=atexit_sleep_ms=0"), env...)
	p, err := New(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// TestConformance runs the engine contract (transfertest) on the pool, its workers serving
// the fake engine, with and without the engine's own batching. One pool serves every subtest,
// as one serves a whole batch run. Cancellation crosses a pipe, so it lags.
func TestConformance(t *testing.T) {
	for _, engine := range []string{"batching", "single"} {
		t.Run(engine, func(t *testing.T) {
			p := newPool(t, []string{"NST_WORKER_ENGINE=" + engine}, Options{Size: 2})
			transfertest.Run(t, func(*testing.T) transfer.Engine { return p }, transfertest.Caveats{CancelLags: true})
		})
	}
}

func picture(c color.NRGBA) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, 40, 30))
	for i := 0; i < len(img.Pix); i += 4 {
		img.Pix[i], img.Pix[i+1], img.Pix[i+2], img.Pix[i+3] = c.R, c.G, c.B, 255
	}
	img.Pix[0] = 7
	return img
}

func testRequest(steps int) transfer.Request {
	p := transfer.DefaultParams()
	p.Steps = steps
	return transfer.Request{
		Content: picture(color.NRGBA{10, 200, 30, 255}),
		Styles:  []image.Image{picture(color.NRGBA{200, 20, 90, 255})},
		Params:  p,
	}
}

// TestSameResultAsInProcess: a job through a worker gives what the engine gives in-process,
// with every callback delivered.
func TestSameResultAsInProcess(t *testing.T) {
	p := newPool(t, nil, Options{})
	if p.Info() != workerEngine.Info() {
		t.Errorf("Info = %+v, want the worker engine's %+v", p.Info(), workerEngine.Info())
	}
	req := testRequest(6)
	var steps []int
	var images []int
	req.OnStep = func(s transfer.Step) error { steps = append(steps, s.Step); return nil }
	req.SaveEvery = 2
	req.OnImage = func(step int, img *image.NRGBA) error { images = append(images, step); return nil }
	got, err := p.Stylize(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	want, err := workerEngine.Stylize(context.Background(), testRequest(6))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Image.Pix, want.Image.Pix) || !reflect.DeepEqual(got.Log, want.Log) {
		t.Errorf("worker result differs from in-process result")
	}
	if len(steps) != 6 || len(images) != 3 {
		t.Errorf("callbacks: steps %v, images %v", steps, images)
	}
}

// TestCrashFailsOnlyItsJob: a worker that dies mid-job fails that job with its last words;
// the next job gets a new worker.
func TestCrashFailsOnlyItsJob(t *testing.T) {
	p := newPool(t, []string{"NST_WORKER_CRASH_AT=3"}, Options{})
	req := testRequest(5)
	req.OnStep = func(transfer.Step) error { return nil }
	_, err := p.Stylize(context.Background(), req)
	if !errors.Is(err, ErrCrashed) || !strings.Contains(err.Error(), "simulated libtorch abort") || !strings.Contains(err.Error(), "134") {
		t.Fatalf("err = %v, want ErrCrashed with the exit status and last log line", err)
	}
	// A job that stops before the crash step runs fine on a fresh worker.
	if _, err := p.Stylize(context.Background(), testRequest(2)); err != nil {
		t.Errorf("next job: %v", err)
	}
}

func TestRecycleAfterMaxPairs(t *testing.T) {
	p := newPool(t, nil, Options{MaxPairs: 2})
	pids := map[int]bool{}
	for i := 0; i < 5; i++ {
		if _, err := p.Stylize(context.Background(), testRequest(1)); err != nil {
			t.Fatal(err)
		}
		p.mu.Lock()
		for _, w := range p.idle {
			pids[w.cmd.Process.Pid] = true
		}
		p.mu.Unlock()
	}
	if len(pids) != 3 {
		t.Errorf("5 jobs at 2 per worker used %d workers, want 3", len(pids))
	}
}

// TestInvalidRequestsStayHome: a request the engine would refuse is refused by the pool
// without a worker (its images need not cross the pipe), with the engine's error; a batch
// sends the others.
func TestInvalidRequestsStayHome(t *testing.T) {
	var logs syncBuffer
	p := newPool(t, []string{"NST_WORKER_ENGINE=batching"}, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	bad := testRequest(2)
	bad.Styles = []image.Image{nil}
	_, err := p.Stylize(context.Background(), bad)
	want := bad.Validate()
	if !errors.Is(err, transfer.ErrBadInput) || want == nil || err.Error() != want.Error() {
		t.Errorf("err = %v, want the engine's own %v", err, want)
	}
	results, errs := p.StylizeBatch(context.Background(), []transfer.Request{testRequest(2), bad, testRequest(3)})
	if errs[0] != nil || errs[2] != nil || !errors.Is(errs[1], transfer.ErrBadInput) || len(results[2].Log) != 3 {
		t.Errorf("batch: %v", errs)
	}
	if !strings.Contains(logs.String(), "batch of 2") {
		t.Errorf("the worker did not get the two valid requests as one batch: %s", logs.String())
	}
}

func TestBadCommand(t *testing.T) {
	_, err := New(context.Background(), Options{Command: []string{"/bin/false"}})
	if err == nil || !strings.Contains(err.Error(), "did not start") {
		t.Errorf("err = %v", err)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestBatchReachesTheEngineWhole: a batch goes to one worker, whose engine gets it whole when
// it can batch (results per request are the conformance suite's).
func TestBatchReachesTheEngineWhole(t *testing.T) {
	for _, engine := range []string{"single", "batching"} {
		t.Run(engine, func(t *testing.T) {
			var logs syncBuffer
			p := newPool(t, []string{"NST_WORKER_ENGINE=" + engine}, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			_, errs := p.StylizeBatch(context.Background(), []transfer.Request{testRequest(2), testRequest(3), testRequest(4)})
			if err := errors.Join(errs...); err != nil {
				t.Fatal(err)
			}
			if got, want := strings.Contains(logs.String(), "batch of 3"), engine == "batching"; got != want {
				t.Errorf("engine saw the batch whole: %v, want %v", got, want)
			}
		})
	}
}

func TestBatchCrashFailsAll(t *testing.T) {
	p := newPool(t, []string{"NST_WORKER_CRASH_AT=2"}, Options{})
	reqs := []transfer.Request{testRequest(3), testRequest(3)}
	reqs[0].OnStep = func(transfer.Step) error { return nil }
	_, errs := p.StylizeBatch(context.Background(), reqs)
	for i, err := range errs {
		if !errors.Is(err, ErrCrashed) {
			t.Errorf("request %d: %v, want ErrCrashed", i, err)
		}
	}
}
