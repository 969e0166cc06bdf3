//go:build linux

package torch

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// quietSysmon moves the Go runtime's monitor thread (sysmon) to SCHED_BATCH and returns its
// thread id.
//
// Why: while a goroutine sits in a long cgo call, sysmon retakes its P after 10 ms; when the
// call returns, the runtime wakes sysmon and resets its sleep to 20 µs, so it polls some 60
// times before backing off again. At 128 px that was ~1 400 wake-ups a second, and the
// involuntary context switches of one of libtorch's two OpenMP threads matched them one for
// one: each wake-up preempted it, and the other waited for it at the next barrier. nst's step
// was ~5% slower than the seed's PyTorch loop doing the same work (docs/BENCHMARKS.md,
// section 1). The kernel never lets a waking SCHED_BATCH thread preempt a running one; sysmon
// then runs when a core has a gap or at the next tick, with a normal thread's share of the CPU.
//
// SCHED_BATCH rather than SCHED_IDLE, which measured the same: threads inherit the policy of
// the thread that starts them, and sysmon starts Go's threads when it hands a P to a new one.
// An inherited SCHED_BATCH still gets a normal share (SCHED_IDLE would starve whatever goroutine
// ran on such a thread, such as a download), and a thread may leave it without privilege:
// schedNormal does so for the engine's own threads, whose OpenMP workers inherit from them.
func quietSysmon() (int, error) {
	var tid int
	var err error
	// sysmon runs for microseconds at a time, but a read may catch it running or, on a busy
	// machine, waiting for a CPU (/proc says "running" for both). An earlier engine of this
	// process may already have moved it, and then it waits longer.
	for try := 0; try < 50; try++ {
		tid, err = findSysmon(os.DirFS("/proc/self/task"), os.Getpid())
		if !errors.Is(err, errSysmonRunning) {
			break
		}
		if attr, err := unix.SchedGetAttr(tid, 0); err == nil && attr.Policy == unix.SCHED_BATCH {
			return tid, nil
		}
		time.Sleep(2 * time.Millisecond)
	}
	if err != nil {
		return 0, err
	}
	if err := unix.SchedSetAttr(tid, &unix.SchedAttr{Policy: unix.SCHED_BATCH}, 0); err != nil {
		return 0, fmt.Errorf("thread %d: set SCHED_BATCH: %w", tid, err)
	}
	return tid, nil
}

// schedNormal puts the calling thread on SCHED_OTHER, keeping its nice value, if it runs under
// SCHED_BATCH (inherited from sysmon: quietSysmon).
func schedNormal() error {
	attr, err := unix.SchedGetAttr(0, 0)
	if err != nil {
		return fmt.Errorf("read the thread's scheduling policy: %w", err)
	}
	if attr.Policy != unix.SCHED_BATCH {
		return nil
	}
	if err := unix.SchedSetAttr(0, &unix.SchedAttr{Policy: unix.SCHED_NORMAL, Nice: attr.Nice}, 0); err != nil {
		return fmt.Errorf("thread %d: leave SCHED_BATCH: %w", unix.Gettid(), err)
	}
	return nil
}

var errSysmonRunning = errors.New("the first thread is running")

// findSysmon finds sysmon among the threads in task (/proc/self/task) of the process whose main
// thread is main. runtime.main starts sysmon before any other thread, before package init, so
// it is the first thread started after the main one: the smallest (start time, id). Thread ids
// are not enough alone, since they wrap around. It is accepted only while it sleeps in
// nanosleep (runtime.usleep, which only sysmon calls in a loop: other idle Go threads wait on
// futexes), so a thread that a C library started before Go's runtime is never taken for it.
// With errSysmonRunning it returns the thread it could not check.
func findSysmon(task fs.FS, main int) (int, error) {
	ents, err := fs.ReadDir(task, ".")
	if err != nil {
		return 0, fmt.Errorf("list threads: %w", err)
	}
	type thread struct{ tid, start int }
	var threads []thread
	for _, e := range ents {
		tid, err := strconv.Atoi(e.Name())
		if err != nil || tid == main {
			continue
		}
		stat, err := fs.ReadFile(task, e.Name()+"/stat")
		if err != nil {
			continue // the thread ended
		}
		start, err := statStartTime(string(stat))
		if err != nil {
			return 0, fmt.Errorf("thread %d: %w", tid, err)
		}
		threads = append(threads, thread{tid, start})
	}
	if len(threads) == 0 {
		return 0, errors.New("no thread besides the main one")
	}
	sort.Slice(threads, func(i, j int) bool {
		a, b := threads[i], threads[j]
		return a.start < b.start || a.start == b.start && a.tid < b.tid
	})
	first := threads[0].tid
	sc, err := fs.ReadFile(task, strconv.Itoa(first)+"/syscall")
	if err != nil {
		return 0, fmt.Errorf("thread %d: %w", first, err)
	}
	call := strings.Fields(string(sc))
	switch {
	case len(call) > 0 && call[0] == "running":
		return first, fmt.Errorf("thread %d: %w", first, errSysmonRunning)
	case len(call) > 0 && call[0] == strconv.Itoa(unix.SYS_NANOSLEEP):
		return first, nil
	}
	return 0, fmt.Errorf("thread %d, the first started, is not sleeping in nanosleep (syscall %q): not taken for sysmon",
		first, strings.TrimSpace(string(sc)))
}

// statStartTime returns field 22 of a /proc/PID/task/TID/stat line, the time the thread
// started in clock ticks since boot. Fields are counted after the command name, which is in
// parentheses and may itself hold spaces and parentheses.
func statStartTime(stat string) (int, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("stat %q: no command name", stat)
	}
	f := strings.Fields(stat[i+1:]) // f[0] is field 3, the state
	if len(f) < 20 {
		return 0, fmt.Errorf("stat %q: %d fields after the command name, want at least 20", stat, len(f))
	}
	start, err := strconv.Atoi(f[19])
	if err != nil {
		return 0, fmt.Errorf("stat start time: %w", err)
	}
	return start, nil
}
