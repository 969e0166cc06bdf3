//go:build linux

package torch

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"golang.org/x/sys/unix"
)

// taskFS builds a /proc/self/task look-alike: each thread is "tid start syscall".
func taskFS(threads ...string) fstest.MapFS {
	fsys := fstest.MapFS{}
	for _, t := range threads {
		f := strings.Fields(t)
		tid, start, call := f[0], f[1], strings.Join(f[2:], " ")
		// Fields 3..21 are filler; field 22 is the start time.
		stat := tid + " (nst worker (a)) S" + strings.Repeat(" 0", 18) + " " + start + " 0 0\n"
		fsys[tid+"/stat"] = &fstest.MapFile{Data: []byte(stat)}
		fsys[tid+"/syscall"] = &fstest.MapFile{Data: []byte(call + "\n")}
	}
	return fsys
}

func TestFindSysmon(t *testing.T) {
	nanosleep := strconv.Itoa(unix.SYS_NANOSLEEP) + " 0x0 0x7ffc 0x0 0x0 0x0 0x0 0x7ffc 0x46a"
	futex := strconv.Itoa(unix.SYS_FUTEX) + " 0xc000 0x80 0x0 0x0 0x0 0x0 0x7ffc 0x46a"
	for _, tc := range []struct {
		name    string
		fsys    fstest.MapFS
		main    int
		want    int
		wantErr string
	}{
		{"the first started, asleep in nanosleep", taskFS("100 5 running", "101 5 "+nanosleep, "102 5 "+futex, "103 9 "+nanosleep), 100, 101, ""},
		{"start time before thread id (ids wrap)", taskFS("4000 5 running", "300 6 "+futex, "4001 5 "+nanosleep), 4000, 4001, ""},
		{"the first started is on a CPU", taskFS("100 5 "+futex, "101 5 running", "102 5 "+futex), 100, 101, "is running"},
		{"the first started waits on a futex: not sysmon", taskFS("100 5 running", "101 5 "+futex, "102 6 "+nanosleep), 100, 0, "not taken for sysmon"},
		{"no other thread", taskFS("100 5 running"), 100, 0, "no thread besides"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := findSysmon(tc.fsys, tc.main)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("findSysmon = %d, %v; want an error containing %q", got, err, tc.wantErr)
				}
				if tc.wantErr == "is running" && !errors.Is(err, errSysmonRunning) {
					t.Errorf("error %v is not errSysmonRunning, so quietSysmon would not retry", err)
				}
				if got != tc.want {
					t.Errorf("findSysmon returned thread %d with the error, want %d", got, tc.want)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("findSysmon = %d, %v; want %d", got, err, tc.want)
			}
		})
	}
}

// TestQuietSysmon checks, in this test process, that the thread quietSysmon moves to
// SCHED_BATCH is the runtime's monitor, by what only sysmon does: it wakes every 20 µs to 10 ms
// while a goroutine runs, where Go's idle threads sleep. It leaves the caller's thread alone
// (whose policy may be inherited: sysmon starts threads, and an earlier test of this process
// may have moved it), and the engine's threads run on SCHED_OTHER.
func TestQuietSysmon(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	tid, err := quietSysmon()
	if err != nil {
		t.Fatal(err)
	}
	if p := policyOf(t, tid); p != unix.SCHED_BATCH {
		t.Errorf("thread %d: policy %d, want SCHED_BATCH (%d)", tid, p, unix.SCHED_BATCH)
	}
	if tid == unix.Gettid() || tid == os.Getpid() {
		t.Errorf("quietSysmon took thread %d, the caller's or the main one", tid)
	}

	// Busy for 200 ms: sysmon polls at least every 10 ms meanwhile.
	before := voluntarySwitches(t, tid)
	for end := time.Now().Add(200 * time.Millisecond); time.Now().Before(end); {
	}
	if woke := voluntarySwitches(t, tid) - before; woke < 5 {
		t.Errorf("thread %d slept through 200 ms of running Go code (%d wake-ups): not sysmon", tid, woke)
	}

	th := &osThreads{}
	defer th.close()
	if err := th.do(func() error {
		if p := policyOf(t, 0); p != unix.SCHED_NORMAL {
			return fmt.Errorf("an engine thread runs under policy %d, want SCHED_OTHER", p)
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
}

// TestSchedNormal: a thread under SCHED_BATCH (as one that sysmon started inherits) leaves it
// without privilege, keeping its nice value.
func TestSchedNormal(t *testing.T) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Locked and never unlocked: the thread ends with the goroutine, so its policy goes too.
		runtime.LockOSThread()
		if err := unix.SchedSetAttr(0, &unix.SchedAttr{Policy: unix.SCHED_BATCH, Nice: 3}, 0); err != nil {
			t.Error(err)
			return
		}
		if err := schedNormal(); err != nil {
			t.Error(err)
			return
		}
		attr, err := unix.SchedGetAttr(0, 0)
		if err != nil {
			t.Error(err)
			return
		}
		if attr.Policy != unix.SCHED_NORMAL || attr.Nice != 3 {
			t.Errorf("after schedNormal: policy %d nice %d, want SCHED_OTHER (%d) nice 3", attr.Policy, attr.Nice, unix.SCHED_NORMAL)
		}
	}()
	<-done
}

func policyOf(t *testing.T, tid int) uint32 {
	t.Helper()
	attr, err := unix.SchedGetAttr(tid, 0)
	if err != nil {
		t.Fatal(err)
	}
	return attr.Policy
}

func voluntarySwitches(t *testing.T, tid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/self/task/%d/status", tid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "voluntary_ctxt_switches:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("thread %d: no voluntary_ctxt_switches in its status", tid)
	return 0
}
