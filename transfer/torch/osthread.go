package torch

import (
	"fmt"
	"log/slog"
	"runtime"
	"sync"
)

// osThreads runs the engine's libtorch work on a small, stable set of OS threads: each call
// takes an idle thread (or starts one), so there are never more threads than calls that ran
// at once, and sequential calls all run on the same one.
//
// Why not a fresh goroutine locked to whatever thread it lands on: GNU OpenMP (libgomp, which
// libtorch uses) keeps a team of worker threads for every OS thread that starts a parallel
// region, and Go spreads goroutines over many OS threads in a process's life. An `nst worker`
// doing that had six OpenMP teams after 20 pairs; libgomp, counting more threads than CPUs,
// then cuts the spinning of its workers between parallel regions short, so every region wakes
// them through the kernel. Libtorch's error slot and grad mode are per thread as well, so one
// call must stay on one thread in any case.
type osThreads struct {
	log    *slog.Logger // nil: no log
	mu     sync.Mutex
	idle   []*osThread
	closed bool
}

// osThread is a goroutine locked to its OS thread for its whole life, running the funcs sent
// to it.
type osThread struct {
	work chan func()
}

func startOSThread(log *slog.Logger) *osThread {
	t := &osThread{work: make(chan func())}
	go func() {
		// Never unlocked: when work is closed the goroutine returns still locked, and Go ends
		// the OS thread with it (and libgomp its team).
		runtime.LockOSThread()
		// The thread may have inherited SCHED_BATCH from sysmon (sysmon_linux.go); libgomp's
		// workers inherit this thread's policy in turn, and they should preempt like any other.
		if err := schedNormal(); err != nil && log != nil {
			log.Warn("engine thread keeps SCHED_BATCH", "err", err)
		}
		for f := range t.work {
			f()
		}
	}()
	return t
}

// do runs f on one of the threads and returns f's error; a panic in f is returned as an error
// (the thread survives it).
func (p *osThreads) do(f func() error) (err error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return fmt.Errorf("engine closed")
	}
	var t *osThread
	if n := len(p.idle); n > 0 {
		t, p.idle = p.idle[n-1], p.idle[:n-1]
	} else {
		t = startOSThread(p.log)
	}
	p.mu.Unlock()

	done := make(chan struct{})
	t.work <- func() {
		defer close(done)
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("engine panic: %v", r)
			}
		}()
		err = f()
	}
	<-done

	p.mu.Lock()
	if p.closed {
		close(t.work)
	} else {
		p.idle = append(p.idle, t)
	}
	p.mu.Unlock()
	return err
}

// close ends the idle threads; threads still running a call end when it returns.
func (p *osThreads) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for _, t := range p.idle {
		close(t.work)
	}
	p.idle = nil
}
