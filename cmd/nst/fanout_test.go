package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"maps"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
	"gocloud.dev/blob"

	"github.com/nst-project/nst/pipeline"
	"github.com/nst-project/nst/transfer"
	"github.com/nst-project/nst/transfer/imaging"
)

// The fan-out simulation's manifest: 3 contents x 2 styles, one preset, in 3 shards (2 items each).
const (
	fanShards   = 3
	fanSteps    = 60
	fanGrace    = 10 * time.Second
	fanMargin   = 5 * time.Second // process exit after the grace period: worker shutdown, exit
	fanRunID    = "fanout"
	fanBucket   = "nst"
	fanOutPref  = "out/"
	fanCkptPref = fanOutPref + "_checkpoints/"
)

// TestFanout does what the Job controller does for an Indexed Job of the real nst binary
// against an in-process S3 server: shard 0 runs to completion; shard 1 is SIGKILLed with its
// process group mid-pair (node loss) and started again (the per-index retry), and must resume
// from its checkpoint; shard 2 gets SIGTERM mid-pair (eviction), must exit 130 within its grace
// period leaving a checkpoint and an interrupted summary, and is started again. In the end every
// output exists once and is whole, no checkpoint is left, and no worker outlived its shard.
func TestFanout(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the nst binary and runs 3 shards of real (CPU) style transfer for about a minute; skipped with -short")
	}
	t0 := time.Now()
	f := newFanout(t)
	t.Logf("built nst and set up the bucket in %v", time.Since(t0).Round(time.Millisecond))

	// The plan: which items (pair IDs) each shard owns, and every output key.
	plan, items := f.plan(t, f.manifest)
	owner := map[string]int{}
	for _, it := range items {
		owner[it.ID] = it.Shard
	}
	if len(items) != 6 || plan.ShardCount != fanShards {
		t.Fatalf("plan: %d items in %d shards, want 6 in %d", len(items), plan.ShardCount, fanShards)
	}
	for i, s := range plan.Shards {
		if s.Items != 2 {
			t.Fatalf("plan: shard %d has %d items, want 2 (the contents were chosen for it)", i, s.Items)
		}
	}

	// Like the Job controller with parallelism == completions, shards 0 and 1 start together;
	// shard 2's pod starts once the node has room (after shard 1's kill), which keeps the
	// shared CPUs from making every pair crawl.
	stopWatch := f.watch(t)
	s0 := f.start(t, 0)
	s1 := f.start(t, 1)

	// Shard 1: SIGKILL to its process group as soon as it has a checkpoint while some shard has
	// written an output (so that "nothing partial" below has something to look at).
	ckID, ck := f.waitCheckpoint(t, s1, owner, func() bool { return len(f.list(t, fanOutPref+"default/")) > 0 })
	workers1 := s1.workerPIDs()
	killAt := time.Now()
	if err := syscall.Kill(-s1.cmd.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	code := s1.wait(t, 30*time.Second)
	t.Logf("shard 1: SIGKILL at checkpoint step %d of pair %s, %v after start; exit %d", ck.Step, ckID, killAt.Sub(s1.started).Round(time.Millisecond), code)
	if code != -1 || s1.signal() != syscall.SIGKILL {
		t.Fatalf("shard 1 after SIGKILL: exit %d, signal %v", code, s1.signal())
	}
	// Nothing partial under a final key: whatever any shard had written at this moment is whole.
	f.checkWhole(t, "at SIGKILL")
	// The worker (its own process group, Pdeathsig) must not outlive the shard.
	if len(workers1) == 0 {
		t.Error("shard 1 logged no engine worker pid")
	}
	for _, pid := range workers1 {
		if !waitGone(pid, 10*time.Second) {
			t.Errorf("shard 1's worker %d is still running 10s after its shard was killed", pid)
		}
	}
	// Items of shard 1 already done (provenance written) when it was killed: the retry skips them.
	doneAtKill := map[string]bool{}
	for _, it := range items {
		if _, err := f.bucket.Attributes(t.Context(), it.Outputs.Provenance); err == nil && it.Shard == 1 {
			doneAtKill[it.ID] = true
		}
	}
	if f.readCheckpoint(t, ckID) == nil {
		t.Fatalf("no checkpoint of the killed pair %s (did the pair finish before the kill landed?)", ckID)
	}
	s1b := f.start(t, 1) // the per-index retry

	// Shard 2: SIGTERM to the shard (the container's main process) mid-pair.
	s2 := f.start(t, 2)
	ck2ID, ck2 := f.waitCheckpoint(t, s2, owner, nil)
	termAt := time.Now()
	if err := s2.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	code = s2.wait(t, fanGrace+30*time.Second)
	elapsed := s2.exited.Sub(termAt)
	t.Logf("shard 2: SIGTERM at checkpoint step %d of pair %s; exit %d after %v (grace %v)", ck2.Step, ck2ID, code, elapsed.Round(time.Millisecond), fanGrace)
	if code != exitInterrupted {
		t.Fatalf("shard 2 after SIGTERM: exit %d, want %d\n%s", code, exitInterrupted, s2.tail())
	}
	if elapsed > fanGrace+fanMargin {
		t.Errorf("shard 2 took %v to exit after SIGTERM: more than --grace-period %v + %v", elapsed, fanGrace, fanMargin)
	}
	for _, pid := range s2.workerPIDs() {
		if !waitGone(pid, 10*time.Second) {
			t.Errorf("shard 2's worker %d is still running after its shard exited", pid)
		}
	}
	last := f.readCheckpoint(t, ck2ID)
	switch {
	case last == nil:
		t.Errorf("after SIGTERM: no checkpoint of %s", ck2ID)
	case last.Step < ck2.Step:
		t.Errorf("after SIGTERM: checkpoint of %s at step %d, want >= %d", ck2ID, last.Step, ck2.Step)
	default:
		t.Logf("shard 2: its checkpoint after SIGTERM is at step %d", last.Step)
	}
	if sum := f.summary(t, 2); sum.Interrupted == 0 || sum.Stopped != "interrupted" || sum.Done+sum.Skipped == sum.Planned {
		t.Errorf("shard 2's summary after SIGTERM: interrupted %v, stopped %q, %d done + %d skipped of %d", sum.Interrupted, sum.Stopped, sum.Done, sum.Skipped, sum.Planned)
	}
	f.checkWhole(t, "after SIGTERM")
	s2b := f.start(t, 2) // the replacement pod

	for _, s := range []*shard{s0, s1b, s2b} {
		if code := s.wait(t, 150*time.Second); code != exitOK {
			t.Fatalf("shard %d (attempt started at +%v): exit %d\n%s", s.index, s.started.Sub(t0).Round(time.Millisecond), code, s.tail())
		}
		t.Logf("shard %d: exit 0 after %v", s.index, s.exited.Sub(s.started).Round(time.Millisecond))
	}

	// The retried shards resumed their interrupted pairs instead of starting from zero.
	for _, c := range []struct {
		s    *shard
		id   string
		from int
	}{{s1b, ckID, ck.Step}, {s2b, ck2ID, ck2.Step}} {
		done := c.s.pairDone(c.id)
		if done == nil {
			t.Errorf("shard %d: no \"pair done\" log line for %s\n%s", c.s.index, c.id, c.s.tail())
			continue
		}
		if done.ResumedAt < c.from || done.Steps != fanSteps-done.ResumedAt {
			t.Errorf("shard %d: pair %s done with resumed_at %d and %d steps: want resumed at >= %d (its checkpoint), %d steps in all",
				c.s.index, c.id, done.ResumedAt, done.Steps, c.from, fanSteps)
		}
	}

	seen, errs := stopWatch()
	for _, err := range errs {
		t.Errorf("partial object visible: %v", err)
	}
	t.Logf("watched %d object versions appear under final and checkpoint keys while the shards ran: all whole", seen)
	// Shard 1's retry redid only what was not done.
	sum1 := f.summary(t, 1)
	for _, p := range f.pairLog(t, sum1) {
		if p.Status != pipeline.StatusDone || doneAtKill[p.ID] {
			t.Errorf("shard 1's retry: pair %s %s (done before the kill: %v)", p.ID, p.Status, doneAtKill[p.ID])
		}
	}
	if sum1.Skipped != len(doneAtKill) || sum1.Done != sum1.Planned-len(doneAtKill) {
		t.Errorf("shard 1's retry: %d skipped, %d done of %d; %d were done before the kill", sum1.Skipped, sum1.Done, sum1.Planned, len(doneAtKill))
	}
	f.checkFinal(t, plan, items, map[string]int{ckID: ck.Step, ck2ID: ck2.Step})
	t.Logf("fan-out done in %v", time.Since(t0).Round(time.Millisecond))
}

// fanout is the simulation's world: the nst binary, the fake S3 server and the manifest.
type fanout struct {
	bin      string
	manifest string
	env      []string // for every nst process, before its shard's variables
	bucket   *blob.Bucket
	logDir   string

	mu     sync.Mutex
	shards []*shard
}

func newFanout(t *testing.T) *fanout {
	t.Helper()
	dir := t.TempDir()
	f := &fanout{bin: buildNST(t, dir), manifest: filepath.Join(dir, "manifest.yaml"), logDir: filepath.Join(dir, "logs")}
	if err := os.Mkdir(f.logDir, 0o755); err != nil {
		t.Fatal(err)
	}

	// AWS settings for this process (its own bucket access) and the shards: fake static
	// credentials, config files that do not exist, no instance metadata.
	aws := map[string]string{
		"AWS_ACCESS_KEY_ID":           "AKIDFAKEFORTESTS",
		"AWS_SECRET_ACCESS_KEY":       "fake-secret-for-tests",
		"AWS_SESSION_TOKEN":           "",
		"AWS_PROFILE":                 "",
		"AWS_CONFIG_FILE":             filepath.Join(dir, "aws-config"),
		"AWS_SHARED_CREDENTIALS_FILE": filepath.Join(dir, "aws-credentials"),
		"AWS_EC2_METADATA_DISABLED":   "true",
		"AWS_ENDPOINT_URL":            "",
		"AWS_ENDPOINT_URL_S3":         "",
	}
	for k, v := range aws {
		t.Setenv(k, v)
	}
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "NST_") || strings.HasPrefix(k, "AWS_") || k == "JOB_COMPLETION_INDEX" {
			continue
		}
		f.env = append(f.env, kv)
	}
	for k, v := range aws {
		f.env = append(f.env, k+"="+v)
	}
	f.env = append(f.env, "NST_SHARD_COUNT="+strconv.Itoa(fanShards))

	backend := s3mem.New()
	srv := httptest.NewServer(gofakes3.New(backend, gofakes3.WithLogger(gofakes3.DiscardLog())).Server())
	t.Cleanup(srv.Close)
	if err := backend.CreateBucket(fanBucket); err != nil {
		t.Fatal(err)
	}
	q := url.Values{
		"endpoint":                     {srv.URL},
		"region":                       {"us-east-1"},
		"use_path_style":               {"true"},
		"disable_https":                {"true"},
		"request_checksum_calculation": {"when_required"},
		"response_checksum_validation": {"when_required"},
	}.Encode()
	b, err := blob.OpenBucket(t.Context(), "s3://"+fanBucket+"?"+q)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	f.bucket = b

	for i, name := range []string{"s1", "s2"} {
		f.put(t, "in/styles/"+name+".png", fanPNG(t, 64, 64, i+7))
	}
	dirURL := func(prefix string) string { return "s3://" + fanBucket + "/" + prefix + "?" + q }
	manifest := func(path, contents string) {
		m := fmt.Sprintf(`apiVersion: nst/v1
kind: StyleBatch
metadata: {name: fanout}
spec:
  model: {weights: random}
  inputs:
    contents: {url: %q}
    styles: {url: %q}
  params: {size: 64, steps: %d, optimizer: adam}
  output: {url: %q}
`, dirURL(contents), dirURL("in/styles/"), fanSteps, dirURL(fanOutPref))
		if err := os.WriteFile(path, []byte(m), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Shards own hash ranges of the items' output slots: pick three contents whose six items
	// fall two in each shard, from a plan of candidates (plan reads no image).
	cand := filepath.Join(dir, "candidates.yaml")
	manifest(cand, "cand/")
	for i := range 16 {
		f.put(t, fmt.Sprintf("cand/c%02d.png", i), []byte("x"))
	}
	_, citems := f.plan(t, cand)
	shardsOf := map[string][]int{}
	for _, it := range citems {
		shardsOf[it.Content] = append(shardsOf[it.Content], it.Shard)
	}
	names := slices.Sorted(maps.Keys(shardsOf))
	var chosen []string
pick:
	for a := range names {
		for b := a + 1; b < len(names); b++ {
			for c := b + 1; c < len(names); c++ {
				count := make([]int, fanShards)
				for _, n := range []string{names[a], names[b], names[c]} {
					for _, s := range shardsOf[n] {
						count[s]++
					}
				}
				if slices.Equal(count, []int{2, 2, 2}) {
					chosen = []string{names[a], names[b], names[c]}
					break pick
				}
			}
		}
	}
	if chosen == nil {
		t.Fatalf("no three of %v split 2/2/2 over the shards: %v", names, shardsOf)
	}
	for i, name := range chosen {
		f.put(t, "in/contents/"+name, fanPNG(t, 64, 56, i+1))
	}
	manifest(f.manifest, "in/contents/")

	// Whatever happens, no nst process outlives the test.
	t.Cleanup(func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		for _, s := range f.shards {
			select {
			case <-s.done:
			default:
				_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
				<-s.done
			}
			for _, pid := range s.workerPIDs() {
				if !waitGone(pid, 0) {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
	})
	return f
}

// buildNST builds ./cmd/nst into dir, from the module root.
func buildNST(t *testing.T, dir string) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go command to build nst: %v", err)
	}
	bin := filepath.Join(dir, "nst")
	start := time.Now()
	cmd := exec.Command(goTool, "build", "-o", bin, "./cmd/nst")
	cmd.Dir = filepath.Join("..", "..")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/nst: %v\n%s", err, out)
	}
	t.Logf("go build ./cmd/nst: %v", time.Since(start).Round(time.Millisecond))
	return bin
}

func fanPNG(t *testing.T, w, h, seed int) []byte {
	t.Helper()
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.SetNRGBA(x, y, color.NRGBA{uint8(x*5 + seed*50), uint8(y*7 + seed*20), uint8((x + y) * seed), 255})
		}
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func (f *fanout) put(t *testing.T, key string, data []byte) {
	t.Helper()
	if err := f.bucket.WriteAll(t.Context(), key, data, &blob.WriterOptions{ContentType: "image/png"}); err != nil {
		t.Fatal(err)
	}
}

func (f *fanout) args(sub string) []string {
	return []string{sub, "--manifest", f.manifest, "--run-id", fanRunID, "--log-format", "json"}
}

// plan runs nst plan --json --pairs --format jsonl on manifest: the items, one JSON object a
// line, then the plan's totals.
func (f *fanout) plan(t *testing.T, manifest string) (*pipeline.Plan, []pipeline.PlanItem) {
	t.Helper()
	cmd := exec.Command(f.bin, "plan", "--manifest", manifest, "--run-id", fanRunID, "--log-format", "json", "--json", "--pairs", "--format", "jsonl")
	cmd.Env = f.env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("nst plan: %v\n%s", err, stderr.Bytes())
	}
	dec := json.NewDecoder(bytes.NewReader(out))
	var items []pipeline.PlanItem
	for {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			t.Fatalf("nst plan: %v\n%s", err, out)
		}
		if !dec.More() {
			var p pipeline.Plan
			if err := json.Unmarshal(raw, &p); err != nil {
				t.Fatalf("nst plan --json: %v\n%s", err, out)
			}
			return &p, items
		}
		var it pipeline.PlanItem
		if err := json.Unmarshal(raw, &it); err != nil {
			t.Fatalf("nst plan --pairs: %v\n%s", err, raw)
		}
		items = append(items, it)
	}
}

// shard is one attempt of one index: an nst run process in its own process group.
type shard struct {
	index   int
	cmd     *exec.Cmd
	stderr  *syncBuffer
	started time.Time
	done    chan struct{}
	exited  time.Time
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
	f  *os.File // a copy, for post-mortems
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.f.Write(p)
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// start starts an attempt of shard i, as the Job controller's pod would: JOB_COMPLETION_INDEX=i.
func (f *fanout) start(t *testing.T, i int) *shard {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	attempt := 0
	for _, s := range f.shards {
		if s.index == i {
			attempt++
		}
	}
	log, err := os.Create(filepath.Join(f.logDir, fmt.Sprintf("shard-%d-attempt-%d.log", i, attempt)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { log.Close() })
	s := &shard{index: i, stderr: &syncBuffer{f: log}, done: make(chan struct{})}
	s.cmd = exec.Command(f.bin, append(f.args("run"), "--device", "cpu", "--threads", "1", "--lanes", "1",
		"--checkpoint-every", "5", "--grace-period", fanGrace.String())...)
	s.cmd.Env = append(slices.Clone(f.env), "JOB_COMPLETION_INDEX="+strconv.Itoa(i))
	s.cmd.Stdout = s.stderr
	s.cmd.Stderr = s.stderr
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.started = time.Now()
	go func() {
		_ = s.cmd.Wait()
		s.exited = time.Now()
		close(s.done)
	}()
	f.shards = append(f.shards, s)
	return s
}

// wait waits for the attempt to end and returns its exit code (-1 if a signal ended it).
func (s *shard) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-s.done:
	case <-time.After(timeout):
		t.Fatalf("shard %d still running after %v\n%s", s.index, timeout, s.tail())
	}
	return s.cmd.ProcessState.ExitCode()
}

func (s *shard) signal() syscall.Signal {
	if ws, ok := s.cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return ws.Signal()
	}
	return 0
}

func (s *shard) tail() string {
	out := s.stderr.String()
	if len(out) > 6000 {
		out = "..." + out[len(out)-6000:]
	}
	return fmt.Sprintf("--- shard %d log ---\n%s", s.index, out)
}

// logLines returns the attempt's JSON log lines (non-JSON output skipped).
func (s *shard) logLines() []map[string]any {
	var lines []map[string]any
	sc := bufio.NewScanner(strings.NewReader(s.stderr.String()))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil {
			lines = append(lines, m)
		}
	}
	return lines
}

// workerPIDs are the engine workers the attempt logged starting.
func (s *shard) workerPIDs() []int {
	var pids []int
	for _, l := range s.logLines() {
		if l["msg"] == "engine worker started" {
			if pid, ok := l["pid"].(float64); ok && pid > 0 {
				pids = append(pids, int(pid))
			}
		}
	}
	return pids
}

type pairDoneLine struct{ Steps, ResumedAt int }

// pairDone returns the "pair done" log line of item id, or nil.
func (s *shard) pairDone(id string) *pairDoneLine {
	for _, l := range s.logLines() {
		if l["msg"] == "pair done" && l["pair"] == id {
			steps, _ := l["steps"].(float64)
			resumed, _ := l["resumed_at"].(float64)
			return &pairDoneLine{Steps: int(steps), ResumedAt: int(resumed)}
		}
	}
	return nil
}

// waitGone reports whether process pid has ended (gone, or a zombie nobody reaped yet) within d.
func waitGone(pid int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return true
		}
		// pid (comm) state ...: comm may hold spaces; the state follows the last ')'.
		if i := bytes.LastIndexByte(stat, ')'); i >= 0 && i+2 < len(stat) && (stat[i+2] == 'Z' || stat[i+2] == 'X') {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitCheckpoint polls the bucket until a checkpoint of an item of s's shard exists and
// returns the item's ID and the checkpoint; a checkpoint in the pair's last 20 steps does not
// count, nor one found while also() (if not nil) is false. It fails if s exits first.
func (f *fanout) waitCheckpoint(t *testing.T, s *shard, owner map[string]int, also func() bool) (string, *transfer.Checkpoint) {
	t.Helper()
	deadline := time.Now().Add(120 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-s.done:
			t.Fatalf("shard %d exited (%d) before writing a checkpoint\n%s", s.index, s.cmd.ProcessState.ExitCode(), s.tail())
		default:
		}
		if also != nil && !also() {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		for _, key := range f.list(t, fanCkptPref) {
			id := ckptID(key)
			if owner[id] != s.index || !strings.HasSuffix(key, ".ckpt") {
				continue
			}
			// Mid-pair, with steps to spare: the signal must land before the pair ends.
			if ck := f.readCheckpoint(t, id); ck != nil && ck.Step <= fanSteps-20 {
				return id, ck
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no checkpoint of shard %d within 120s\n%s", s.index, s.tail())
	return "", nil
}

// ckptID is the item ID in a checkpoint's key, _checkpoints/<slot hash>.<item ID>.ckpt.
func ckptID(key string) string {
	name := strings.TrimSuffix(path.Base(key), ".ckpt")
	return name[strings.LastIndexByte(name, '.')+1:]
}

// readCheckpoint reads and decodes item id's checkpoint; nil if there is none.
func (f *fanout) readCheckpoint(t *testing.T, id string) *transfer.Checkpoint {
	t.Helper()
	var key string
	for _, k := range f.list(t, fanCkptPref) {
		if ckptID(k) == id {
			key = k
		}
	}
	if key == "" {
		return nil
	}
	data, err := f.bucket.ReadAll(t.Context(), key)
	if err != nil {
		return nil
	}
	var ck transfer.Checkpoint
	if err := ck.UnmarshalBinary(data); err != nil {
		t.Fatalf("checkpoint %s: %v", id, err)
	}
	return &ck
}

// watch checks, until the returned function is called, every object version that appears under
// the output prefix: final keys hold whole outputs (checkOutput) and checkpoints decode. It
// returns how many versions it checked and what it found partial.
func (f *fanout) watch(t *testing.T) (stop func() (int, []error)) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var (
		checked = map[string]bool{} // key|modtime|size
		errs    []error
	)
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			it := f.bucket.List(&blob.ListOptions{Prefix: fanOutPref})
			for {
				o, err := it.Next(ctx)
				if err != nil {
					break
				}
				rel := strings.TrimPrefix(o.Key, fanOutPref)
				version := fmt.Sprintf("%s|%v|%d", o.Key, o.ModTime.UnixNano(), o.Size)
				if checked[version] || strings.HasPrefix(rel, "_runs/") || strings.HasPrefix(rel, "_report/") {
					continue
				}
				data, err := f.bucket.ReadAll(ctx, o.Key)
				if err != nil {
					continue // deleted meanwhile (a finished pair's checkpoint), or stopping
				}
				checked[version] = true
				if strings.HasPrefix(rel, "_index/") {
					if !json.Valid(data) {
						errs = append(errs, fmt.Errorf("%s: index marker %q", o.Key, data))
					}
				} else if strings.HasPrefix(rel, "_checkpoints/") {
					var ck transfer.Checkpoint
					if err := ck.UnmarshalBinary(data); err != nil {
						errs = append(errs, fmt.Errorf("%s: %v", o.Key, err))
					}
				} else if err := checkOutput(o.Key, data); err != nil {
					errs = append(errs, err)
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(250 * time.Millisecond):
			}
		}
	}()
	stopped := false
	stop = func() (int, []error) {
		if !stopped {
			stopped = true
			cancel()
			<-done
		}
		return len(checked), errs
	}
	t.Cleanup(func() { stop() })
	return stop
}

// list returns every key under prefix.
func (f *fanout) list(t *testing.T, prefix string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var keys []string
	it := f.bucket.List(&blob.ListOptions{Prefix: prefix})
	for {
		o, err := it.Next(ctx)
		if errors.Is(err, io.EOF) {
			return keys
		}
		if err != nil {
			t.Fatalf("list %s: %v", prefix, err)
		}
		keys = append(keys, o.Key)
	}
}

// summary reads the summary of shard i's latest attempt.
func (f *fanout) summary(t *testing.T, i int) pipeline.Summary {
	t.Helper()
	re := regexp.MustCompile(fmt.Sprintf(`^%s_runs/%s/shard-%d-of-%d\.[0-9TZ]+-[0-9a-f]+\.json$`, fanOutPref, fanRunID, i, fanShards))
	var key string
	for _, k := range f.list(t, fanOutPref+"_runs/") {
		if re.MatchString(k) && k > key {
			key = k
		}
	}
	data, err := f.bucket.ReadAll(t.Context(), key)
	if err != nil {
		t.Fatalf("summary of shard %d: %v", i, err)
	}
	var s pipeline.Summary
	if err := json.Unmarshal(data, &s); err != nil {
		t.Fatalf("summary %s: %v", key, err)
	}
	return s
}

// checkWhole checks that every output object present under a final key is complete: images
// decode, loss logs are whole JSON lines, provenance parses.
func (f *fanout) checkWhole(t *testing.T, when string) {
	t.Helper()
	n := 0
	for _, key := range f.list(t, fanOutPref) {
		rel := strings.TrimPrefix(key, fanOutPref)
		if strings.HasPrefix(rel, "_") {
			continue
		}
		data, err := f.bucket.ReadAll(t.Context(), key)
		if err != nil {
			t.Errorf("%s: %s: %v", when, key, err)
			continue
		}
		if err := checkOutput(key, data); err != nil {
			t.Errorf("%s: partial object under a final key: %v", when, err)
		}
		n++
	}
	t.Logf("%s: %d output objects present, all whole", when, n)
}

// checkOutput checks one output object by its kind.
func checkOutput(key string, data []byte) error {
	switch {
	case strings.HasSuffix(key, ".loss.jsonl"):
		if len(data) == 0 || data[len(data)-1] != '\n' {
			return fmt.Errorf("%s: loss log does not end with a newline", key)
		}
		for i, line := range bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n")) {
			var s transfer.Step
			if err := json.Unmarshal(line, &s); err != nil {
				return fmt.Errorf("%s line %d: %v", key, i+1, err)
			}
		}
	case strings.HasSuffix(key, ".png"), strings.HasSuffix(key, ".jpg"):
		if _, _, err := imaging.Decode(bytes.NewReader(data), imaging.DefaultLimits()); err != nil {
			return fmt.Errorf("%s: %v", key, err)
		}
	case strings.HasSuffix(key, ".json"):
		var p pipeline.Provenance
		if err := json.Unmarshal(data, &p); err != nil || p.ID == "" {
			return fmt.Errorf("%s: provenance %q: %v", key, p.ID, err)
		}
	default:
		return fmt.Errorf("%s: unexpected output", key)
	}
	return nil
}

// checkFinal checks the bucket after every shard exited 0: each planned output once and whole,
// loss logs of every step, provenance matching the image's nst-id, the resumed items' provenance
// saying so, the shards' summaries, and nothing else (no checkpoints).
func (f *fanout) checkFinal(t *testing.T, plan *pipeline.Plan, items []pipeline.PlanItem, resumed map[string]int) {
	t.Helper()
	ctx := t.Context()
	seen := map[string]int{}
	for _, key := range f.list(t, fanOutPref) {
		seen[key]++
	}
	// Besides the items' outputs: the shards' attempts' summaries and pair logs, the contact
	// sheets, and one index marker per item.
	want := map[string]bool{}
	side := func(key string) bool {
		return strings.HasPrefix(key, fanOutPref+"_report/") || strings.HasPrefix(key, fanOutPref+"_runs/"+fanRunID+"/shard-")
	}
	markers := map[string]int{}
	for _, k := range f.list(t, fanOutPref+"_index/v1/") {
		parts := strings.Split(path.Base(k), ".")
		if len(parts) == 3 {
			markers[parts[1]]++
			want[k] = true
		}
	}
	for _, it := range items {
		if markers[it.ID] != 1 {
			t.Errorf("item %s has %d index markers, want 1", it.ID, markers[it.ID])
		}
	}
	if len(markers) != len(items) {
		t.Errorf("index markers for %d items, want %d", len(markers), len(items))
	}
	for _, it := range items {
		o := it.Outputs // bucket keys: the output URL's prefix included
		if !strings.HasPrefix(o.Image, fanOutPref) {
			t.Fatalf("plan: item %s image key %q is not under %s", it.ID, o.Image, fanOutPref)
		}
		keys := []string{o.Image, o.LossLog, o.LossPlot, o.Provenance}
		for _, k := range keys {
			if k == "" {
				continue
			}
			want[k] = true
			if seen[k] != 1 {
				t.Errorf("item %s: %s listed %d times, want once", it.ID, k, seen[k])
				continue
			}
			data, err := f.bucket.ReadAll(ctx, k)
			if err != nil {
				t.Errorf("%s: %v", k, err)
				continue
			}
			if err := checkOutput(k, data); err != nil {
				t.Error(err)
			}
			attrs, err := f.bucket.Attributes(ctx, k)
			if err != nil {
				t.Errorf("%s: %v", k, err)
			} else if got := attrs.Metadata["nst-id"]; got != it.ID {
				t.Errorf("%s: nst-id %q, want %q", k, got, it.ID)
			}
		}
		if seen[o.LossLog] == 1 {
			data, _ := f.bucket.ReadAll(ctx, o.LossLog)
			var steps []int
			for line := range strings.Lines(string(data)) {
				var s transfer.Step
				if json.Unmarshal([]byte(line), &s) == nil {
					steps = append(steps, s.Step)
				}
			}
			ok := len(steps) == fanSteps
			for j := range steps {
				ok = ok && steps[j] == j+1
			}
			if !ok {
				t.Errorf("%s: steps %v, want 1..%d, one a line", o.LossLog, steps, fanSteps)
			}
		}
		if seen[o.Provenance] == 1 {
			data, _ := f.bucket.ReadAll(ctx, o.Provenance)
			var p pipeline.Provenance
			if err := json.Unmarshal(data, &p); err != nil {
				t.Errorf("%s: %v", o.Provenance, err)
			} else {
				if p.ID != it.ID || p.RunID != fanRunID || p.Steps != fanSteps || p.Shard != fmt.Sprintf("%d/%d", it.Shard, fanShards) {
					t.Errorf("%s: id %s run %s steps %d shard %s; want %s %s %d %d/%d", o.Provenance, p.ID, p.RunID, p.Steps, p.Shard,
						it.ID, fanRunID, fanSteps, it.Shard, fanShards)
				}
				if from, ok := resumed[it.ID]; ok && p.ResumedAt < from {
					t.Errorf("%s: resumedAt %d, want >= %d (the item was interrupted there)", o.Provenance, p.ResumedAt, from)
				}
			}
		}
	}
	for k, n := range seen {
		if !want[k] && !side(k) {
			t.Errorf("stray object %s (%d)", k, n)
		}
	}
	if left := f.list(t, fanCkptPref); len(left) > 0 {
		t.Errorf("checkpoints left: %v", left)
	}
	for i := range fanShards {
		s := f.summary(t, i)
		if s.Interrupted != 0 || s.Failed != 0 || s.Done+s.Skipped != s.Planned || s.Planned != plan.Shards[i].Items {
			t.Errorf("shard %d's final summary: planned %d, done %d, skipped %d, failed %d, interrupted %d", i, s.Planned, s.Done, s.Skipped, s.Failed, s.Interrupted)
		}
	}
}

// pairLog reads a summary's pair log.
func (f *fanout) pairLog(t *testing.T, s pipeline.Summary) []pipeline.SummaryPair {
	t.Helper()
	var out []pipeline.SummaryPair
	for _, k := range s.PairLogs {
		data, err := f.bucket.ReadAll(t.Context(), fanOutPref+k)
		if err != nil {
			t.Fatal(err)
		}
		for line := range strings.Lines(string(data)) {
			var p pipeline.SummaryPair
			if err := json.Unmarshal([]byte(line), &p); err != nil {
				t.Fatalf("%s: %v", k, err)
			}
			out = append(out, p)
		}
	}
	return out
}
