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
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nst-project/nst/transfer"
)

// The test binary doubles as the worker: with NST_WORKER_TEST set, TestMain serves jobs with
// transfer.Fake instead of running tests. NST_WORKER_CRASH_AT=N makes it die at step N, as a
// libtorch crash would.
func TestMain(m *testing.M) {
	if os.Getenv("NST_WORKER_TEST") != "" {
		var eng transfer.Optimizer = transfer.Fake{StepDelay: 2 * time.Millisecond}
		if n, err := strconv.Atoi(os.Getenv("NST_WORKER_CRASH_AT")); err == nil {
			eng = crashing{at: n}
		}
		if os.Getenv("NST_WORKER_BATCH") != "" {
			eng = batching{transfer.Fake{StepDelay: 2 * time.Millisecond}}
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

// crashing is Fake until step `at`, where the process dies.
type crashing struct{ at int }

func (c crashing) Info() transfer.Info { return transfer.Fake{}.Info() }
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
	return transfer.Fake{}.Stylize(ctx, req)
}

// batching is Fake with StylizeBatch (one request after another), saying on stderr that it
// was asked for a batch.
type batching struct{ transfer.Fake }

func (b batching) StylizeBatch(ctx context.Context, reqs []transfer.Request) ([]*transfer.Result, []error) {
	fmt.Fprintf(os.Stderr, "batch of %d\n", len(reqs))
	res, errs := make([]*transfer.Result, len(reqs)), make([]error, len(reqs))
	for i, r := range reqs {
		res[i], errs[i] = b.Stylize(ctx, r)
	}
	return res, errs
}

func newPool(t *testing.T, env []string, opts Options) *Pool {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	opts.Command = []string{exe}
	opts.Env = append(append(os.Environ(), "NST_WORKER_TEST=1"), env...)
	p, err := New(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
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
	if p.Info().Engine != "fake" {
		t.Errorf("Info = %+v", p.Info())
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
	want, err := transfer.Fake{StepDelay: 2 * time.Millisecond}.Stylize(context.Background(), testRequest(6))
	if err != nil {
		t.Fatal(err)
	}
	if string(got.Image.Pix) != string(want.Image.Pix) || len(got.Log) != len(want.Log) || got.Final().TotalLoss != want.Final().TotalLoss {
		t.Errorf("worker result differs from in-process result")
	}
	if len(steps) != 6 || len(images) != 3 {
		t.Errorf("callbacks: steps %v, images %v", steps, images)
	}
}

func TestErrorClassesCrossTheProcess(t *testing.T) {
	p := newPool(t, nil, Options{})
	req := testRequest(3)
	req.Params.Steps = 0
	if _, err := p.Stylize(context.Background(), req); !errors.Is(err, transfer.ErrBadInput) {
		t.Errorf("bad params: err = %v, want ErrBadInput", err)
	}
	req = testRequest(3)
	req.Content = picture(color.NRGBA{255, 0, 255, 255}) // Fake's NaN trigger
	req.Content.(*image.NRGBA).Pix[0] = 255
	if _, err := p.Stylize(context.Background(), req); !errors.Is(err, transfer.ErrNonFinite) {
		t.Errorf("magenta: err = %v, want ErrNonFinite", err)
	}
	// The worker survives engine errors: the next job works.
	if _, err := p.Stylize(context.Background(), testRequest(2)); err != nil {
		t.Errorf("after errors: %v", err)
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

// TestCancelDeliversCheckpoint: cancelling the caller's context stops the job in the worker,
// which sends its last checkpoint first; resuming from it finishes the job.
func TestCancelDeliversCheckpoint(t *testing.T) {
	p := newPool(t, nil, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	req := testRequest(40)
	var ck *transfer.Checkpoint
	req.OnStep = func(s transfer.Step) error {
		if s.Step == 5 {
			cancel()
		}
		return nil
	}
	req.OnCheckpoint = func(c *transfer.Checkpoint) error { ck = c; return nil }
	_, err := p.Stylize(ctx, req)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if ck == nil || ck.Step < 5 || ck.Step >= 40 {
		t.Fatalf("checkpoint %v, want one after step 5", ck)
	}
	resume := testRequest(40)
	resume.Resume = ck
	res, err := p.Stylize(context.Background(), resume)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Log) != 40 {
		t.Errorf("resumed run logged %d steps, want 40", len(res.Log))
	}
}

func TestCallbackErrorStopsJob(t *testing.T) {
	p := newPool(t, nil, Options{})
	stop := errors.New("disk full")
	req := testRequest(50)
	req.OnStep = func(s transfer.Step) error {
		if s.Step == 2 {
			return stop
		}
		return nil
	}
	if _, err := p.Stylize(context.Background(), req); !errors.Is(err, stop) {
		t.Errorf("err = %v, want the callback's", err)
	}
	if _, err := p.Stylize(context.Background(), testRequest(1)); err != nil {
		t.Errorf("next job: %v", err)
	}
}

func TestConcurrentJobs(t *testing.T) {
	p := newPool(t, nil, Options{Size: 2})
	errs := make(chan error, 4)
	for i := 0; i < 4; i++ {
		go func() {
			_, err := p.Stylize(context.Background(), testRequest(3))
			errs <- err
		}()
	}
	for i := 0; i < 4; i++ {
		if err := <-errs; err != nil {
			t.Error(err)
		}
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

// TestBatch: a batch goes to one worker, whose engine gets it whole when it can batch; every
// request gets its own callbacks and result, equal to a run on its own; a callback error fails
// its own request only.
func TestBatch(t *testing.T) {
	for _, engineBatches := range []bool{false, true} {
		t.Run(fmt.Sprint("engine batches: ", engineBatches), func(t *testing.T) {
			var env []string
			if engineBatches {
				env = []string{"NST_WORKER_BATCH=1"}
			}
			var logs syncBuffer
			p := newPool(t, env, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			stop := errors.New("disk full")
			reqs := make([]transfer.Request, 3)
			steps := make([]int, 3)
			for i := range reqs {
				reqs[i] = testRequest(4 + i)
				reqs[i].OnStep = func(s transfer.Step) error {
					steps[i]++
					if i == 1 && s.Step == 2 {
						return stop
					}
					return nil
				}
			}
			results, errs := p.StylizeBatch(context.Background(), reqs)
			for i := range reqs {
				if i == 1 {
					if !errors.Is(errs[1], stop) || results[1] != nil {
						t.Errorf("request 1: %v, want its callback's error", errs[1])
					}
					continue
				}
				if errs[i] != nil {
					t.Fatalf("request %d: %v", i, errs[i])
				}
				alone, _ := transfer.Fake{}.Stylize(context.Background(), testRequest(4+i))
				if len(results[i].Log) != 4+i || steps[i] != 4+i || string(results[i].Image.Pix) != string(alone.Image.Pix) {
					t.Errorf("request %d: %d steps logged, %d callbacks, image equal to a lone run: %v",
						i, len(results[i].Log), steps[i], string(results[i].Image.Pix) == string(alone.Image.Pix))
				}
			}
			if got := strings.Contains(logs.String(), "batch of 3"); got != engineBatches {
				t.Errorf("engine saw the batch whole: %v, want %v", got, engineBatches)
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
