package worker

import (
	"bufio"
	"context"
	"encoding/gob"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nst-project/nst/transfer"
)

// Options configure a Pool.
type Options struct {
	// Command starts one worker: a program that calls Serve on its stdin and stdout, e.g.
	// {"/usr/local/bin/nst", "worker", "--weights", path}. Required.
	Command []string
	// Env is the workers' environment (nil: the parent's).
	Env []string
	// Size is how many workers may run at once (concurrent Stylize calls beyond it wait).
	// 0 means 1.
	Size int
	// MaxPairs recycles a worker after this many jobs (0: never), returning what libtorch and
	// gotch never free.
	MaxPairs int
	// CancelWait is how long a cancelled job's worker may take to send its checkpoint and stop
	// before it is killed (0: 30s).
	CancelWait time.Duration
	// Logger receives the workers' stderr lines and pool events (nil: discarded).
	Logger *slog.Logger
}

// Pool is a transfer.Engine whose Stylize runs in a worker process. It is safe for
// concurrent use. A worker that crashes fails only the job it was running; the next job starts
// a new one.
type Pool struct {
	opts  Options
	slots chan struct{}
	log   *slog.Logger

	mu     sync.Mutex
	idle   []*proc
	info   transfer.Info
	closed bool
}

var _ transfer.Engine = (*Pool)(nil)

// ErrCrashed is wrapped by the error of a job whose worker died.
var ErrCrashed = errors.New("engine worker crashed")

// New starts one worker to check the command works and to learn the engine's Info.
func New(ctx context.Context, opts Options) (*Pool, error) {
	if len(opts.Command) == 0 {
		return nil, errors.New("worker: no command")
	}
	if opts.Size < 1 {
		opts.Size = 1
	}
	if opts.CancelWait <= 0 {
		opts.CancelWait = 30 * time.Second
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	p := &Pool{opts: opts, slots: make(chan struct{}, opts.Size), log: log}
	w, err := p.start(ctx)
	if err != nil {
		return nil, err
	}
	p.info = w.info
	p.idle = append(p.idle, w)
	return p, nil
}

// Info is the engine's, as the first worker reported it.
func (p *Pool) Info() transfer.Info { return p.info }

// Close stops the idle workers; busy ones stop when their job ends.
func (p *Pool) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for _, w := range p.idle {
		w.stop()
	}
	p.idle = nil
	return nil
}

// proc is one worker process.
type proc struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	enc    *gob.Encoder
	dec    *gob.Decoder
	info   transfer.Info
	jobs   int
	stderr *tail
	exited chan struct{}
	err    error // the process's exit status, once exited is closed
}

// tail keeps the last lines a worker wrote to stderr (to explain a crash) and logs them all.
type tail struct {
	mu    sync.Mutex
	lines []string
}

func (t *tail) add(s string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.lines = append(t.lines, s)
	if len(t.lines) > 8 {
		t.lines = t.lines[1:]
	}
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.Join(t.lines, " | ")
}

func (p *Pool) start(ctx context.Context) (*proc, error) {
	cmd := exec.Command(p.opts.Command[0], p.opts.Command[1:]...)
	cmd.Env = p.opts.Env
	// A worker must not outlive its parent (Linux), and Ctrl-C in a terminal reaches the
	// parent only: the parent cancels the job so the worker can checkpoint first.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start engine worker %s: %w", p.opts.Command[0], err)
	}
	w := &proc{cmd: cmd, stdin: stdin, enc: gob.NewEncoder(stdin), dec: gob.NewDecoder(bufio.NewReader(stdout)),
		stderr: &tail{}, exited: make(chan struct{})}
	stderrDone := make(chan struct{})
	go func() {
		defer close(stderrDone)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			w.stderr.add(sc.Text())
			p.log.Info("worker", "pid", cmd.Process.Pid, "log", sc.Text())
		}
	}()
	go func() {
		<-stderrDone
		w.err = cmd.Wait()
		close(w.exited)
	}()

	helloc := make(chan error, 1)
	go func() {
		var h hello
		err := w.dec.Decode(&h)
		w.info = h.Info
		helloc <- err
	}()
	select {
	case err := <-helloc:
		if err != nil {
			w.stop()
			<-w.exited
			return nil, fmt.Errorf("engine worker did not start (%v): %s", w.err, w.stderr)
		}
	case <-ctx.Done():
		w.stop()
		return nil, ctx.Err()
	}
	p.log.Info("engine worker started", "pid", cmd.Process.Pid, "device", w.info.Device)
	return w, nil
}

// stop ends a worker: closing stdin asks it to exit; a kill makes sure.
func (w *proc) stop() {
	_ = w.stdin.Close()
	select {
	case <-w.exited:
	case <-time.After(5 * time.Second):
		_ = w.cmd.Process.Kill()
	}
}

func (w *proc) kill() {
	_ = w.cmd.Process.Kill()
	_ = w.stdin.Close()
}

// get returns an idle worker or starts one.
func (p *Pool) get(ctx context.Context) (*proc, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, errors.New("worker: pool is closed")
	}
	if n := len(p.idle); n > 0 {
		w := p.idle[n-1]
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		return w, nil
	}
	p.mu.Unlock()
	return p.start(ctx)
}

// put returns a healthy worker to the pool, or retires it after MaxPairs jobs.
func (p *Pool) put(w *proc) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || (p.opts.MaxPairs > 0 && w.jobs >= p.opts.MaxPairs) {
		go w.stop()
		return
	}
	p.idle = append(p.idle, w)
}

// Stylize runs req in a worker. Callbacks run in the caller's process, on the goroutine that
// reads the worker's events; an error from one cancels the job and is returned.
func (p *Pool) Stylize(ctx context.Context, req transfer.Request) (*transfer.Result, error) {
	results, errs := p.run(ctx, []transfer.Request{req}, false)
	return results[0], errs[0]
}

var _ transfer.BatchEngine = (*Pool)(nil)

// StylizeBatch runs reqs together in one worker (transfer.BatchEngine): the worker's engine
// batches them if it can. A callback error fails only its own request.
func (p *Pool) StylizeBatch(ctx context.Context, reqs []transfer.Request) ([]*transfer.Result, []error) {
	return p.run(ctx, reqs, true)
}

// run sends reqs to a worker as one job (or, with batch, one batch) and routes its events.
func (p *Pool) run(ctx context.Context, reqs []transfer.Request, batch bool) ([]*transfer.Result, []error) {
	all := make([]*transfer.Result, len(reqs))
	allErrs := make([]error, len(reqs))
	// Requests the engine would refuse are refused here, as it would (their images may not
	// even cross the pipe); the others are sent, and their answers mapped back.
	var sent []int
	for i, req := range reqs {
		if err := check(req); err != nil {
			allErrs[i] = err
			continue
		}
		sent = append(sent, i)
	}
	if len(sent) == 0 {
		return all, allErrs
	}
	results, errs := p.send(ctx, pick(reqs, sent), batch)
	for k, i := range sent {
		all[i], allErrs[i] = results[k], errs[k]
	}
	return all, allErrs
}

// check is what an engine checks before any work (Request.Validate), and that Resume
// survives its encoding: a checkpoint the worker could not decode would end the worker.
func check(req transfer.Request) error {
	if err := req.Validate(); err != nil {
		return err
	}
	if req.Resume != nil {
		b, err := req.Resume.MarshalBinary()
		if err == nil {
			err = new(transfer.Checkpoint).UnmarshalBinary(b)
		}
		if err != nil {
			return fmt.Errorf("%w: %w", transfer.ErrCheckpointMismatch, err)
		}
	}
	return nil
}

func pick(reqs []transfer.Request, idx []int) []transfer.Request {
	out := make([]transfer.Request, len(idx))
	for k, i := range idx {
		out[k] = reqs[i]
	}
	return out
}

// send runs valid requests in a worker, as one job or (with batch) one batch.
func (p *Pool) send(ctx context.Context, reqs []transfer.Request, batch bool) ([]*transfer.Result, []error) {
	results := make([]*transfer.Result, len(reqs))
	errs := make([]error, len(reqs))
	all := func(err error) ([]*transfer.Result, []error) {
		for i := range errs {
			if errs[i] == nil {
				errs[i] = err
			}
		}
		return results, errs
	}
	if err := ctx.Err(); err != nil { // select below picks at random among ready cases
		return all(err)
	}
	select {
	case p.slots <- struct{}{}:
	case <-ctx.Done():
		return all(ctx.Err())
	}
	defer func() { <-p.slots }()

	w, err := p.get(ctx)
	if err != nil {
		return all(err)
	}
	jobs := make([]*job, len(reqs))
	for i, req := range reqs {
		jobs[i] = &job{
			Content: asNRGBA(req.Content), StyleKeys: req.StyleKeys, Params: req.Params, Resume: req.Resume,
			SaveEvery: req.SaveEvery, CheckpointEvery: req.CheckpointEvery,
			WantSteps: req.OnStep != nil, WantImages: req.OnImage != nil, WantCheckpoints: req.OnCheckpoint != nil,
		}
		for _, s := range req.Styles {
			jobs[i].Styles = append(jobs[i].Styles, asNRGBA(s))
		}
	}
	w.jobs += len(jobs)
	ctl := control{Job: jobs[0]}
	if batch {
		ctl = control{Batch: jobs}
	}
	ctl.Deadline, _ = ctx.Deadline()
	if err := w.enc.Encode(&ctl); err != nil {
		w.kill()
		return all(p.crashed(w, err))
	}

	events := make(chan event)
	readErr := make(chan error, 1)
	go func() {
		defer close(events)
		for {
			var ev event
			if err := w.dec.Decode(&ev); err != nil {
				readErr <- err
				return
			}
			events <- ev
			if ev.Result != nil || ev.Err != nil || ev.Batch != nil {
				return
			}
		}
	}()

	callbackErr := make([]error, len(reqs))
	var deadline <-chan time.Time // set once the job is cancelled
	cancel := func() {
		if deadline == nil {
			deadline = time.After(p.opts.CancelWait)
			_ = w.enc.Encode(&control{Cancel: true})
		}
	}
	// failed records a callback's error: it fails that request; a lone job is cancelled too.
	failed := func(i int, err error) {
		callbackErr[i] = err
		if !batch {
			cancel()
		}
	}
	ctxDone := ctx.Done()
	for {
		select {
		case <-deadline:
			w.kill()
			<-events // the reader ends now the pipe is closed
			err := fmt.Errorf("engine worker did not stop within %v of cancellation: killed", p.opts.CancelWait)
			for i := range errs {
				switch {
				case callbackErr[i] != nil:
					errs[i] = errors.Join(callbackErr[i], err)
				case ctx.Err() != nil:
					errs[i] = fmt.Errorf("%w: %w", ctx.Err(), err)
				default:
					errs[i] = err
				}
			}
			return results, errs
		case <-ctxDone:
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				// The worker's job context has the same deadline: it stops on its own, with
				// the engine's DeadlineExceeded. Wait for it as for a cancellation.
				deadline = time.After(p.opts.CancelWait)
			} else {
				cancel()
			}
			ctxDone = nil // keep reading: the worker still sends its checkpoints and errors
		case ev, ok := <-events:
			if !ok {
				err := <-readErr
				w.kill()
				return all(p.crashed(w, err))
			}
			i := ev.Index
			if i < 0 || i >= len(reqs) {
				w.kill()
				return all(p.crashed(w, fmt.Errorf("event for job %d of %d", i, len(reqs))))
			}
			req := reqs[i]
			switch {
			case ev.Step != nil && req.OnStep != nil && callbackErr[i] == nil:
				if err := req.OnStep(*ev.Step); err != nil {
					failed(i, fmt.Errorf("step %d: %w", ev.Step.Step, err))
				}
			case ev.Image != nil && req.OnImage != nil && callbackErr[i] == nil:
				if err := req.OnImage(ev.Image.Step, ev.Image.Image); err != nil {
					failed(i, fmt.Errorf("save image at step %d: %w", ev.Image.Step, err))
				}
			case ev.Checkpoint != nil && req.OnCheckpoint != nil:
				if err := req.OnCheckpoint(ev.Checkpoint); err != nil && callbackErr[i] == nil {
					failed(i, fmt.Errorf("checkpoint at step %d: %w", ev.Checkpoint.Step, err))
				}
			case ev.Result != nil:
				results[0] = ev.Result
			case ev.Err != nil:
				errs[0] = ev.Err.err()
			case ev.Batch != nil:
				if len(ev.Batch.Items) != len(reqs) {
					w.kill()
					return all(p.crashed(w, fmt.Errorf("batch of %d answered with %d results", len(reqs), len(ev.Batch.Items))))
				}
				for k, it := range ev.Batch.Items {
					results[k] = it.Result
					if it.Err != nil {
						errs[k] = it.Err.err()
					}
				}
			}
			if ev.Result != nil || ev.Err != nil || ev.Batch != nil {
				p.put(w)
				for k := range reqs {
					switch {
					case callbackErr[k] != nil && ctx.Err() != nil && errs[k] != nil:
						// Cancelled too: say both, so errors.Is finds the context's error.
						results[k], errs[k] = nil, errors.Join(callbackErr[k], errs[k])
					case callbackErr[k] != nil:
						results[k], errs[k] = nil, callbackErr[k]
					}
					if errs[k] == nil && results[k] == nil {
						errs[k] = errors.New("engine worker returned no result")
					}
				}
				return results, errs
			}
		}
	}
}

// crashed describes a worker that stopped mid-job, from its exit status and last log lines.
func (p *Pool) crashed(w *proc, readErr error) error {
	select {
	case <-w.exited:
	case <-time.After(5 * time.Second):
	}
	status := "still running"
	if w.err != nil {
		status = w.err.Error()
	} else if w.cmd.ProcessState != nil {
		status = w.cmd.ProcessState.String()
	}
	p.log.Error("engine worker died", "pid", w.cmd.Process.Pid, "status", status, "read", readErr)
	msg := fmt.Sprintf("%v (%s)", ErrCrashed, status)
	if t := w.stderr.String(); t != "" {
		msg += ": " + t
	}
	return &remoteError{msg: msg, class: ErrCrashed}
}
