// Package worker runs a transfer.Engine in child processes, so that what goes wrong inside
// libtorch stays there: a crash (segfault, abort, out-of-memory kill) fails the one pair that
// was running, and the next pair gets a fresh process; memory that libtorch or gotch never give
// back (gotch leaks a few bytes per tensor op) is returned when a worker is recycled after
// MaxPairs pairs. The package is pure Go: the child is any program that calls Serve on its
// stdin and stdout with a real engine (nst's hidden `nst worker` command).
//
// The protocol is gob over the child's stdin (jobs, cancellations) and stdout (a hello, then
// events: steps, images, checkpoints, and one result or error per job). The child's stderr is
// its log, passed through to the parent's logger, and its last lines explain a crash.
package worker

import (
	"context"
	"encoding/gob"
	"errors"
	"fmt"
	"image"
	"io"
	"sync"
	"time"

	"github.com/nst-project/nst/transfer"
)

// hello is the first message a worker sends.
type hello struct {
	Info transfer.Info
}

// job is one Stylize request, without its callbacks.
type job struct {
	Content         *image.NRGBA
	Styles          []*image.NRGBA
	StyleKeys       []string
	Params          transfer.Params
	Resume          *transfer.Checkpoint
	SaveEvery       int
	CheckpointEvery int
	WantSteps       bool
	WantImages      bool
	WantCheckpoints bool
}

// control is what the parent sends: a job, a batch of jobs run together, or a cancellation
// of the running one. Deadline, if set, is the caller's: the worker's job context ends then,
// so the engine stops with context.DeadlineExceeded, as it would in-process.
type control struct {
	Job      *job
	Batch    []*job
	Cancel   bool
	Deadline time.Time
}

// event is what a worker sends while a job runs: a step, image or checkpoint of the job (or of
// the batch's Index-th job), and at the end a Result or Err (a batch: Batch).
type event struct {
	Index      int
	Step       *transfer.Step
	Image      *stepImage
	Checkpoint *transfer.Checkpoint
	Result     *transfer.Result
	Err        *jobError
	Batch      *batchDone
}

// batchDone ends a batch: one result or error per job, in order. (Items are structs: gob
// cannot encode a nil pointer as a slice element.)
type batchDone struct {
	Items []batchItem
}

type batchItem struct {
	Result *transfer.Result
	Err    *jobError
}

type stepImage struct {
	Step  int
	Image *image.NRGBA
}

// jobError carries an engine error across the process boundary with its class, so errors.Is
// keeps working for transfer's sentinels and context cancellation.
type jobError struct {
	Msg   string
	Class string
}

var classes = []struct {
	name string
	err  error
}{
	{"bad-input", transfer.ErrBadInput},
	{"non-finite", transfer.ErrNonFinite},
	{"checkpoint-mismatch", transfer.ErrCheckpointMismatch},
	{"canceled", context.Canceled},
	{"deadline", context.DeadlineExceeded},
}

func classify(err error) *jobError {
	je := &jobError{Msg: err.Error()}
	for _, c := range classes {
		if errors.Is(err, c.err) {
			je.Class = c.name
			break
		}
	}
	return je
}

// remoteError is an error that happened in a worker.
type remoteError struct {
	msg   string
	class error
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.class }

func (je *jobError) err() error {
	for _, c := range classes {
		if c.name == je.Class {
			return &remoteError{msg: je.Msg, class: c.err}
		}
	}
	return &remoteError{msg: je.Msg}
}

func asNRGBA(img image.Image) *image.NRGBA {
	if n, ok := img.(*image.NRGBA); ok {
		return n
	}
	b := img.Bounds()
	n := image.NewNRGBA(image.Rect(0, 0, b.Dx(), b.Dy()))
	for y := 0; y < b.Dy(); y++ {
		for x := 0; x < b.Dx(); x++ {
			n.Set(x, y, img.At(b.Min.X+x, b.Min.Y+y))
		}
	}
	return n
}

// Serve is the worker side: it announces eng's Info on w, then runs each job read from r on
// eng, one at a time, streaming its events to w, until r ends (the parent closed the pipe or
// died). A cancellation from the parent cancels the running job's context, so the engine can
// send its last checkpoint before it stops.
func Serve(ctx context.Context, r io.Reader, w io.Writer, eng transfer.Engine) error {
	enc := gob.NewEncoder(w)
	dec := gob.NewDecoder(r)
	var mu sync.Mutex // enc is shared by the job's callbacks and the result
	send := func(ev event) error {
		mu.Lock()
		defer mu.Unlock()
		return enc.Encode(&ev)
	}
	if err := enc.Encode(&hello{Info: eng.Info()}); err != nil {
		return fmt.Errorf("worker: hello: %w", err)
	}

	controls := make(chan control)
	readErr := make(chan error, 1)
	go func() {
		for {
			var c control
			if err := dec.Decode(&c); err != nil {
				readErr <- err
				close(controls)
				return
			}
			controls <- c
		}
	}()

	var next *control // a job that arrived while the previous one was finishing
	for {
		j := next
		next = nil
		if j == nil {
			var c control
			var ok bool
			select {
			case c, ok = <-controls:
			case <-ctx.Done():
				return ctx.Err()
			}
			if !ok {
				if err := <-readErr; !errors.Is(err, io.EOF) {
					return fmt.Errorf("worker: read: %w", err)
				}
				return nil
			}
			switch {
			case c.Job != nil || c.Batch != nil:
				j = &c
			default:
				continue // a cancellation that arrived after its job ended
			}
		}
		jobCtx, cancel := jobContext(ctx, j.Deadline)
		done := make(chan struct{})
		var sendErr error // the job's last event could not be sent: the parent would wait forever
		go func() {
			defer close(done)
			sendErr = send(runJob(jobCtx, eng, j, send))
		}()
		for finished := false; !finished; {
			select {
			case <-done:
				finished = true
			case c, ok := <-controls:
				switch {
				case !ok:
					cancel() // the parent went away: stop, then exit
					<-done
					return nil
				case c.Cancel:
					cancel()
				case c.Job != nil || c.Batch != nil:
					// The parent sends a job only after it has read the last one's result, so
					// this one is already done; the select just saw the new job first.
					next = &c
				}
			}
		}
		cancel()
		if sendErr != nil {
			return fmt.Errorf("worker: send result: %w", sendErr)
		}
	}
}

// jobContext is a job's context: cancelled by the parent, and ended at the caller's deadline
// if it has one.
func jobContext(ctx context.Context, deadline time.Time) (context.Context, context.CancelFunc) {
	if deadline.IsZero() {
		return context.WithCancel(ctx)
	}
	return context.WithDeadline(ctx, deadline)
}

// runJob runs a job or a batch and returns the event that ends it.
func runJob(ctx context.Context, eng transfer.Engine, c *control, send func(event) error) event {
	if c.Batch != nil {
		return event{Batch: runBatch(ctx, eng, c.Batch, send)}
	}
	res, err := eng.Stylize(ctx, request(c.Job, 0, send))
	if err != nil {
		return event{Err: classify(err)}
	}
	return event{Result: res}
}

// runBatch runs jobs together when eng can (transfer.BatchEngine), else one by one.
func runBatch(ctx context.Context, eng transfer.Engine, jobs []*job, send func(event) error) *batchDone {
	reqs := make([]transfer.Request, len(jobs))
	for i, j := range jobs {
		reqs[i] = request(j, i, send)
	}
	var results []*transfer.Result
	var errs []error
	if b, ok := eng.(transfer.BatchEngine); ok {
		results, errs = b.StylizeBatch(ctx, reqs)
	} else {
		results, errs = make([]*transfer.Result, len(reqs)), make([]error, len(reqs))
		for i, req := range reqs {
			results[i], errs[i] = eng.Stylize(ctx, req)
		}
	}
	d := &batchDone{Items: make([]batchItem, len(jobs))}
	for i, err := range errs {
		if err != nil {
			d.Items[i].Err = classify(err)
		} else {
			d.Items[i].Result = results[i]
		}
	}
	return d
}

// request rebuilds a transfer.Request whose callbacks stream events to the parent, tagged with
// the job's index in its batch.
func request(j *job, index int, send func(event) error) transfer.Request {
	req := transfer.Request{
		Content: j.Content, StyleKeys: j.StyleKeys, Params: j.Params, Resume: j.Resume,
		SaveEvery: j.SaveEvery, CheckpointEvery: j.CheckpointEvery,
	}
	for _, s := range j.Styles {
		req.Styles = append(req.Styles, s)
	}
	if j.WantSteps {
		req.OnStep = func(s transfer.Step) error { return send(event{Index: index, Step: &s}) }
	}
	if j.WantImages {
		req.OnImage = func(step int, img *image.NRGBA) error {
			return send(event{Index: index, Image: &stepImage{Step: step, Image: img}})
		}
	}
	if j.WantCheckpoints {
		req.OnCheckpoint = func(c *transfer.Checkpoint) error { return send(event{Index: index, Checkpoint: c}) }
	}
	return req
}
