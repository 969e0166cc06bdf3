// Command scale measures what nst's pipeline costs over a large catalogue: requests by verb,
// wall time and peak RSS of each phase of issue #13, at several catalogue sizes, behind an S3
// emulator (gofakes3, in this process) that counts every request. Each phase runs in a child
// process (this program, "child" mode) so that its peak RSS is its own: the pipeline with the
// pure-Go fake engine, that is everything but libtorch.
//
//	go run ./bench/scale -pairs 100000,1000000 > scale.md
//
// A catalogue of P pairs is P/10 contents x 5 styles x 2 presets (16x16 PNGs; nothing is read
// but the images of the pairs a phase computes). Each row also has the phase process's CPU time
// and the emulator's serving time, which say where the wall time goes. Phases:
//
//	(a) plan       nst plan over the catalogue once it is done (the index seeded: one marker a pair)
//	(b) first      a first run's expansion and done check: plan over an empty output (a run does
//	               the same two passes, then per pair the work that (d) measures)
//	(c) no-op      nst run over the done catalogue; then shard 0 of 10 (one pod of a 10-shard
//	               Job) and shard 0 of pairs/10,000 (a shard of 10,000 pairs at every size)
//	(d) new        nst run after 1,000 new contents arrived (10,000 new pairs, computed)
//	(e) replace    the weights change; nst run --on-conflict replace, stopped after -replace-pairs
//	               redone pairs, then resumed and stopped after as many again; every pair redone
//	               once at most
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"image"
	"image/png"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
	_ "gocloud.dev/blob/s3blob"

	"github.com/nst-project/nst/pipeline"
	"github.com/nst-project/nst/transfer"
	"github.com/nst-project/nst/transfer/fake"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "child" {
		if err := child(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(1)
		}
		return
	}
	sizes := flag.String("pairs", "100000,1000000", "catalogue sizes in pairs (multiples of 10)")
	replacePairs := flag.Int("replace-pairs", 5000, "(e): pairs each replace attempt redoes before it is stopped")
	newContents := flag.Int("new-contents", 1000, "(d): contents added before the re-run")
	nstBin := flag.String("nst", "bin/nst", "the nst binary, for (a) as users run it (\"\": skip that row)")
	phases := flag.String("phases", "abcde", "abc: leave out (d) and (e), which compute pairs and take minutes")
	flag.Parse()
	log.SetFlags(0)
	// Fake static credentials for the emulator, no config files, no instance metadata; the
	// children inherit them.
	for k, v := range map[string]string{"AWS_ACCESS_KEY_ID": "AKIDBENCH", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_SESSION_TOKEN": "",
		"AWS_PROFILE": "", "AWS_CONFIG_FILE": os.DevNull, "AWS_SHARED_CREDENTIALS_FILE": os.DevNull, "AWS_EC2_METADATA_DISABLED": "true",
		"AWS_ENDPOINT_URL": "", "AWS_ENDPOINT_URL_S3": ""} {
		os.Setenv(k, v)
	}
	var rows []row
	for _, f := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(f)
		if err != nil || n%10 != 0 || n <= 0 {
			log.Fatalf("-pairs: %q is not a positive multiple of 10", f)
		}
		r, err := measure(n, *newContents, *replacePairs, *nstBin, *phases)
		if err != nil {
			log.Fatal(err)
		}
		rows = append(rows, r...)
	}
	printTable(rows)
}

// row is one phase at one size.
type row struct {
	pairs  int
	phase  string
	wall   time.Duration
	rssKiB int64
	verbs  map[string]int
	// serverS is the time the emulator spent serving the phase's requests (summed over
	// concurrent requests, so it can exceed wall); cpuS the phase process's user+system CPU.
	serverS, cpuS float64
	outcome       string
}

// emulator is gofakes3 with every request counted by verb.
type emulator struct {
	backend *s3mem.Backend
	srv     *http.Server
	url     string
	mu      sync.Mutex
	counts  map[string]int
	busy    time.Duration
}

func newEmulator() (*emulator, error) {
	e := &emulator{backend: s3mem.New(), counts: map[string]int{}}
	inner := gofakes3.New(e.backend, gofakes3.WithLogger(gofakes3.DiscardLog())).Server()
	e.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		verb := r.Method
		if r.Method == http.MethodGet && (r.URL.Query().Has("list-type") || strings.Count(strings.Trim(r.URL.Path, "/"), "/") == 0) {
			verb = "LIST"
		}
		start := time.Now()
		inner.ServeHTTP(w, r)
		e.mu.Lock()
		e.counts[verb]++
		e.busy += time.Since(start)
		e.mu.Unlock()
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	go e.srv.Serve(ln)
	e.url = "http://" + ln.Addr().String()
	for _, b := range []string{"in", "out"} {
		if err := e.backend.CreateBucket(b); err != nil {
			return nil, err
		}
	}
	return e, nil
}

// take returns the requests counted since the last take, by verb, and the time spent serving them.
func (e *emulator) take() (map[string]int, time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	c, b := e.counts, e.busy
	e.counts, e.busy = map[string]int{}, 0
	return c, b
}

func (e *emulator) put(bucket, key string, data []byte) error {
	_, err := e.backend.PutObject(bucket, key, map[string]string{}, bytes.NewReader(data), int64(len(data)), nil)
	return err
}

func (e *emulator) dirURL(bucket, prefix string) string {
	q := url.Values{"endpoint": {e.url}, "region": {"us-east-1"}, "use_path_style": {"true"}, "disable_https": {"true"},
		"request_checksum_calculation": {"when_required"}, "response_checksum_validation": {"when_required"}}.Encode()
	return "s3://" + bucket + "/" + prefix + "?" + q
}

func tinyPNG(seed int) []byte {
	img := image.NewNRGBA(image.Rect(0, 0, 16, 16))
	for i := 0; i < len(img.Pix); i += 4 {
		img.Pix[i], img.Pix[i+1], img.Pix[i+2], img.Pix[i+3] = uint8(i*7+seed*40), uint8(i*3+seed*90), uint8(seed*60), 255
	}
	var b bytes.Buffer
	png.Encode(&b, img)
	return b.Bytes()
}

func writeManifest(dir, name string, e *emulator, seed int) (string, error) {
	m := fmt.Sprintf(`apiVersion: nst/v1
kind: StyleBatch
metadata: {name: scale}
spec:
  model: {weights: random, randomSeed: %d}
  inputs:
    contents: {url: %q}
    styles: {url: %q}
  params: {size: 16, steps: 1}
  presets:
    - {name: soft, styleWeight: 10}
    - {name: bold, styleWeight: 1000}
  output: {url: %q}
`, seed, e.dirURL("in", "contents/"), e.dirURL("in", "styles/"), e.dirURL("out", "r/"))
	p := filepath.Join(dir, name)
	return p, os.WriteFile(p, []byte(m), 0o644)
}

// measure runs the five phases over a catalogue of n pairs.
func measure(n, newContents, replacePairs int, nstBin, phases string) ([]row, error) {
	e, err := newEmulator()
	if err != nil {
		return nil, err
	}
	defer e.srv.Close()
	dir, err := os.MkdirTemp("", "nst-scale-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	img := tinyPNG(1)
	for i := range n / 10 {
		if err := e.put("in", fmt.Sprintf("contents/c%07d.png", i), img); err != nil {
			return nil, err
		}
	}
	for i := range 5 {
		if err := e.put("in", fmt.Sprintf("styles/s%d.png", i), tinyPNG(i+2)); err != nil {
			return nil, err
		}
	}
	man, err := writeManifest(dir, "manifest.yaml", e, 0)
	if err != nil {
		return nil, err
	}
	var rows []row
	phase := func(name string, args ...string) (row, childResult, error) {
		e.take()
		r, res, err := runChild(args...)
		var busy time.Duration
		r.pairs, r.phase = n, name
		r.verbs, busy = e.take()
		r.serverS = busy.Seconds()
		log.Printf("%d pairs, %s: %v, %d KiB, %v, emulator %.1f s, CPU %.1f s; %s", n, name, r.wall.Round(time.Millisecond), r.rssKiB, r.verbs, r.serverS, r.cpuS, r.outcome)
		return r, res, err
	}
	// (b) before anything is done.
	r, _, err := phase("(b) first run: expansion and done check", "plan", man)
	if err != nil {
		return nil, err
	}
	rows = append(rows, r)

	// The done state: a marker per pair, as a finished run leaves it (seeded, not run: 1M pairs
	// of writes would take hours of the emulator's time).
	log.Printf("%d pairs: seeding the done index", n)
	seeded := 0
	_, err = pipeline.PlanRun(context.Background(), pipeline.Config{ManifestURL: man}, pipeline.PlanOptions{Shard: -1,
		Each: func(it pipeline.PlanItem) error {
			seeded++
			return e.put("out", "r/_index/v1/"+it.Slot+"."+it.ID+".0000000000000000", nil)
		}})
	if err != nil {
		return nil, err
	}
	if seeded != n {
		return nil, fmt.Errorf("seeded %d markers for %d pairs", seeded, n)
	}
	if nstBin != "" {
		e.take() // the seeding's
		r, err := runNST(nstBin, "plan", "--manifest", man, "--json", "--log-format", "json")
		if err != nil {
			return nil, err
		}
		var busy time.Duration
		r.pairs, r.phase = n, "(a) nst plan, the binary"
		r.verbs, busy = e.take()
		r.serverS = busy.Seconds()
		log.Printf("%d pairs, %s: %v, %d KiB, %v, emulator %.1f s, CPU %.1f s; %s", n, r.phase, r.wall.Round(time.Millisecond), r.rssKiB, r.verbs, r.serverS, r.cpuS, r.outcome)
		rows = append(rows, r)
	}
	for _, p := range []struct{ name, mode string }{{"(a) plan", "plan"}, {"(c) no-op re-run", "run"}} {
		r, _, err := phase(p.name, p.mode, man)
		if err != nil {
			return nil, err
		}
		rows = append(rows, r)
	}
	// One pod's share: a shard of 10 (what each pod of a 10-shard Job does), and a shard of
	// 10,000 pairs whatever the catalogue (the catalogue's own cost, the shard's held constant).
	// Named alike at every size, so that the ratios pair them up.
	for _, sh := range []struct {
		name  string
		count int
	}{{"(c) no-op re-run, shard 0 of 10", 10}, {"(c) no-op re-run, a shard of 10,000 pairs (0 of pairs/10,000)", max(1, n/10000)}} {
		name, count := sh.name, sh.count
		r, _, err := phase(name, "run", man, "-shard-count", strconv.Itoa(count))
		if err != nil {
			return nil, err
		}
		rows = append(rows, r)
	}
	if !strings.ContainsAny(phases, "de") {
		return rows, nil
	}
	// (d) new contents.
	for i := range newContents {
		if err := e.put("in", fmt.Sprintf("contents/new%05d.png", i), tinyPNG(3)); err != nil {
			return nil, err
		}
	}
	r, _, err = phase(fmt.Sprintf("(d) re-run after %d new contents", newContents), "run", man)
	if err != nil {
		return nil, err
	}
	rows = append(rows, r)
	// (e) new weights: replace, stopped, resumed.
	man2, err := writeManifest(dir, "weights2.yaml", e, 1)
	if err != nil {
		return nil, err
	}
	ids := filepath.Join(dir, "redone")
	done := map[string]int{}
	for attempt := 1; attempt <= 2; attempt++ {
		name := fmt.Sprintf("(e) replace, attempt %d (stopped after %d pairs)", attempt, replacePairs)
		r, res, err := phase(name, "run", man2, "-replace", "-stop-after", strconv.Itoa(replacePairs), "-ids", ids)
		if err != nil {
			return nil, err
		}
		for _, id := range res.IDs {
			done[id]++
		}
		rows = append(rows, r)
	}
	twice := 0
	for _, c := range done {
		if c > 1 {
			twice++
		}
	}
	rows[len(rows)-1].outcome += fmt.Sprintf("; over both attempts %d pairs redone, %d of them twice", len(done), twice)
	return rows, nil
}

// childResult is what a child reports on stdout.
type childResult struct {
	Planned, Done, Skipped, Stale, Failed, Interrupted int
	// PeakKiB is the child's peak RSS (VmHWM). The rusage of a child started by vfork and exec,
	// as Go starts them, counts the parent's RSS at the fork, which here holds the emulator.
	PeakKiB int64
	IDs     []string `json:",omitempty"`
}

// runNST runs the nst binary and reads its peak RSS from its last log line ("resources").
func runNST(bin string, args ...string) (row, error) {
	cmd := exec.Command(bin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Run()
	r := row{wall: time.Since(start)}
	if err != nil {
		return r, fmt.Errorf("%s %v: %w\n%s", bin, args, err, errb.Bytes())
	}
	r.cpuS = (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds()
	for _, l := range strings.Split(errb.String(), "\n") {
		var m struct {
			Msg  string  `json:"msg"`
			Peak float64 `json:"peak_rss_mib"`
		}
		if json.Unmarshal([]byte(l), &m) == nil && m.Msg == "resources" {
			r.rssKiB = int64(m.Peak * 1024)
		}
	}
	var p pipeline.Plan
	if err := json.Unmarshal(out.Bytes(), &p); err == nil {
		r.outcome = fmt.Sprintf("%d pairs: %d done, %d stale, %d new", p.Total.Items, p.Total.Done, p.Total.Stale, p.Total.New)
	}
	return r, nil
}

// runChild runs this program in child mode and returns its wall time, peak RSS and result.
func runChild(args ...string) (row, childResult, error) {
	exe, err := os.Executable()
	if err != nil {
		return row{}, childResult{}, err
	}
	cmd := exec.Command(exe, append([]string{"child"}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, os.Stderr
	start := time.Now()
	err = cmd.Run()
	r := row{wall: time.Since(start)}
	if err != nil {
		return r, childResult{}, fmt.Errorf("child %v: %w\n%s", args, err, out.Bytes())
	}
	r.cpuS = (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds()
	var res childResult
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		return r, res, fmt.Errorf("child %v: %w: %s", args, err, out.Bytes())
	}
	r.rssKiB = res.PeakKiB
	r.outcome = fmt.Sprintf("%d pairs: %d done, %d skipped, %d stale, %d failed, %d interrupted", res.Planned, res.Done, res.Skipped, res.Stale, res.Failed, res.Interrupted)
	return r, res, nil
}

// child runs one phase: "plan MANIFEST" or "run MANIFEST [-replace] [-stop-after N] [-ids FILE]".
func child(args []string) error {
	if len(args) < 2 {
		return fmt.Errorf("usage: child plan|run MANIFEST [flags]")
	}
	mode, man := args[0], args[1]
	fs := flag.NewFlagSet("child", flag.ContinueOnError)
	replace := fs.Bool("replace", false, "--on-conflict replace")
	stopAfter := fs.Int("stop-after", 0, "stop (as on SIGTERM) once this many pairs were done")
	idsFile := fs.String("ids", "", "append the IDs of the pairs done to this file")
	shardCount := fs.Int("shard-count", 1, "run shard 0 of this many")
	if err := fs.Parse(args[2:]); err != nil {
		return err
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	cfg := pipeline.Config{ManifestURL: man, RunID: "scale", Version: "bench", IOJobs: 8, Lanes: runtime.NumCPU(), ShardCount: *shardCount,
		NewEngine: func(context.Context, pipeline.EngineSpec) (transfer.Engine, func() error, error) {
			return fake.Engine{}, nil, nil
		}}
	var res childResult
	switch mode {
	case "plan":
		p, err := pipeline.PlanRun(ctx, cfg, pipeline.PlanOptions{Shard: -1})
		if err != nil {
			return err
		}
		res = childResult{Planned: p.Total.Items, Done: p.Total.Done, Stale: p.Total.Stale, Failed: p.Total.Refused}
	case "run":
		if *replace {
			cfg.OnConflict = "replace"
		}
		var mu sync.Mutex
		var ids []string
		cfg.Progress = doneCounter(func(r pipeline.PairResult) {
			if r.Status != pipeline.StatusDone {
				return
			}
			mu.Lock()
			ids = append(ids, r.ID)
			if *stopAfter > 0 && len(ids) == *stopAfter {
				cancel()
			}
			mu.Unlock()
		})
		rep, err := pipeline.Run(ctx, cfg)
		if err != nil && (rep == nil || ctx.Err() == nil) {
			return err
		}
		res = childResult{Planned: rep.Planned, Done: rep.Done, Skipped: rep.Skipped, Stale: rep.Stale, Failed: rep.Failed, Interrupted: rep.Interrupted}
		if *idsFile != "" {
			mu.Lock()
			res.IDs = ids
			mu.Unlock()
		}
	default:
		return fmt.Errorf("unknown mode %q", mode)
	}
	res.PeakKiB = peakRSS()
	return json.NewEncoder(os.Stdout).Encode(res)
}

// doneCounter is a pipeline.Progress that calls itself with every ended pair.
type doneCounter func(pipeline.PairResult)

func (doneCounter) Planned(int)                      {}
func (doneCounter) PairStarted(string)               {}
func (doneCounter) PairStep(string, int, int)        {}
func (f doneCounter) PairDone(r pipeline.PairResult) { f(r) }

// printTable prints the rows as a markdown table, with the larger size's ratio to the smaller.
func printTable(rows []row) {
	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()
	fmt.Fprintf(w, "Machine: %d CPUs, load average at the end: %s\n\n", runtime.NumCPU(), loadavg())
	fmt.Fprintln(w, "| pairs | phase | wall | nst CPU | emulator | peak RSS | requests | LIST | GET | HEAD | PUT | DELETE | outcome |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|---|---|")
	for _, r := range rows {
		fmt.Fprintf(w, "| %d | %s | %.1f s | %.1f s | %.1f s | %.0f MiB | %d | %d | %d | %d | %d | %d | %s |\n", r.pairs, r.phase, r.wall.Seconds(),
			r.cpuS, r.serverS, float64(r.rssKiB)/1024, sum(r.verbs), r.verbs["LIST"], r.verbs["GET"], r.verbs["HEAD"], r.verbs["PUT"], r.verbs["DELETE"], r.outcome)
	}
	sizes := map[int]bool{}
	for _, r := range rows {
		sizes[r.pairs] = true
	}
	var ns []int
	for n := range sizes {
		ns = append(ns, n)
	}
	sort.Ints(ns)
	if len(ns) < 2 {
		return
	}
	small, large := ns[0], ns[len(ns)-1]
	fmt.Fprintf(w, "\nRatios, %d / %d pairs:\n\n| phase | wall | peak RSS | requests |\n|---|---|---|---|\n", large, small)
	byPhase := map[string]map[int]row{}
	var order []string
	for _, r := range rows {
		if byPhase[r.phase] == nil {
			byPhase[r.phase] = map[int]row{}
			order = append(order, r.phase)
		}
		byPhase[r.phase][r.pairs] = r
	}
	for _, p := range order {
		a, b := byPhase[p][small], byPhase[p][large]
		fmt.Fprintf(w, "| %s | %.2f | %.2f | %.2f |\n", p, b.wall.Seconds()/a.wall.Seconds(), float64(b.rssKiB)/float64(a.rssKiB),
			float64(sum(b.verbs))/float64(max(1, sum(a.verbs))))
	}
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// peakRSS is this process's peak resident set (VmHWM), in KiB.
func peakRSS() int64 {
	b, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
