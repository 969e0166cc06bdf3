package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/nst-project/nst/transfer"
	"github.com/nst-project/nst/transfer/imaging"
)

const refDir = "../../reference/testdata"

func runCLI(t *testing.T, env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = runEnv(context.Background(), args, &out, &errb, func(k string) string { return env[k] })
	return code, out.String(), errb.String()
}

func TestUsageErrors(t *testing.T) {
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown command", []string{"frobnicate"}, `unknown command "frobnicate"`},
		{"unknown flag", []string{"stylize", "--colour", "x"}, "unknown flag: --colour"},
		{"bad value", []string{"stylize", "--steps", "many"}, `invalid argument "many"`},
		{"missing required", []string{"stylize", "--content", "a.png"}, "--content, --style and --out are required"},
		{"bad optimizer", []string{"stylize", "--content", "a.png", "--style", "b.png", "--out", "o.png", "--optimizer", "sgd", "--random-weights"}, `optimizer: "sgd" is not adam or lbfgs`},
		{"bad layers", []string{"stylize", "--content", "a.png", "--style", "b.png", "--out", "o.png", "--style-layers", "conv9_1:1", "--random-weights"}, `unknown layer`},
		{"bad out ext", []string{"stylize", "--content", "a.png", "--style", "b.png", "--out", "o.bmp", "--random-weights"}, "--out"},
		{"no weights", []string{"stylize", "--content", filepath.Join(refDir, "content.png"), "--style", filepath.Join(refDir, "style.png"), "--out", filepath.Join(os.TempDir(), "o.png")}, "vgg19-dcbb9e9d.pth"},
		{"bad log format", []string{"version", "--log-format", "xml"}, "text or json"},
		{"bad memory format", []string{"stylize", "--content", "a.png", "--style", "b.png", "--out", "o.png", "--memory-format", "nhwc", "--random-weights"}, `--memory-format "nhwc"`},
		{"bad memory format in run", []string{"run", "--manifest", "m.yaml", "--memory-format", "nhwc"}, `--memory-format "nhwc"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, _, stderr := runCLI(t, nil, c.args...)
			if code != exitUsage {
				t.Errorf("exit %d, want %d (stderr %q)", code, exitUsage, stderr)
			}
			if !strings.Contains(stderr, c.want) {
				t.Errorf("stderr %q does not mention %q", stderr, c.want)
			}
			if lines := strings.Count(strings.TrimSpace(stderr), "\n"); lines > 0 {
				t.Errorf("stderr has %d lines, want one: %q", lines+1, stderr)
			}
		})
	}
}

func TestHelp(t *testing.T) {
	code, out, _ := runCLI(t, nil, "--help")
	if code != exitOK || !strings.Contains(out, "stylize") || !strings.Contains(out, "Exit codes") {
		t.Errorf("nst --help: exit %d, %q", code, out)
	}
	code, out, _ = runCLI(t, nil, "stylize", "--help")
	if code != exitOK || !strings.Contains(out, "Examples:") || !strings.Contains(out, "--style-layers") || !strings.Contains(out, "NST_") {
		t.Errorf("nst stylize --help: exit %d, %q", code, out)
	}
}

func TestVersion(t *testing.T) {
	code, out, _ := runCLI(t, nil, "version")
	if code != exitOK || !strings.Contains(out, "libtorch 2.1.2") || !strings.Contains(out, "cpu (") {
		t.Errorf("nst version: exit %d, %q", code, out)
	}
}

// TestStylizeEndToEnd runs `nst stylize` on the reference fixtures with the narrow VGG19,
// with the step count and optimiser given through NST_* variables, and checks the image and
// the loss log it writes.
func TestStylizeEndToEnd(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out.jpg")
	lossLog := filepath.Join(dir, "loss.jsonl")
	code, _, stderr := runCLI(t, map[string]string{"NST_STEPS": "6", "NST_OPTIMIZER": "lbfgs"},
		"stylize", "--content", filepath.Join(refDir, "content.png"), "--style", filepath.Join(refDir, "style.png"),
		"--weights", filepath.Join(refDir, "vgg19-narrow.pth"), "--device", "cpu", "--threads", "1",
		"--out", out, "--loss-log", lossLog, "--save-every", "3", "--log-format", "json")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, info, err := imaging.Decode(f, imaging.DefaultLimits())
	if err != nil || info.Format != "jpeg" || img.Rect.Dx() != 64 {
		t.Fatalf("output: %v %+v %v", err, info, img.Rect)
	}
	for _, step := range []string{"3", "6"} {
		if _, err := os.Stat(filepath.Join(dir, "out.step"+step+".jpg")); err != nil {
			t.Errorf("intermediate image at step %s: %v", step, err)
		}
	}
	lf, err := os.Open(lossLog)
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	var steps []transfer.Step
	sc := bufio.NewScanner(lf)
	for sc.Scan() {
		var s map[string]any
		if err := json.Unmarshal(sc.Bytes(), &s); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"step", "content_loss", "style_loss", "tv_loss", "total_loss", "elapsed_s"} {
			if _, ok := s[k]; !ok {
				t.Errorf("loss log line %q lacks %s", sc.Text(), k)
			}
		}
		var st transfer.Step
		json.Unmarshal(sc.Bytes(), &st)
		steps = append(steps, st)
	}
	if len(steps) == 0 || len(steps) > 6 || steps[0].Step != 1 {
		t.Fatalf("loss log has %d steps: %+v", len(steps), steps)
	}
	if !(steps[len(steps)-1].TotalLoss < steps[0].TotalLoss) {
		t.Errorf("loss did not decrease: %v -> %v", steps[0].TotalLoss, steps[len(steps)-1].TotalLoss)
	}
	if !strings.Contains(stderr, `"msg":"done"`) {
		t.Errorf("no JSON done line in %q", stderr)
	}
}

func TestEnvFlags(t *testing.T) {
	if got := envName("shard-count"); got != "NST_SHARD_COUNT" {
		t.Errorf("envName = %q", got)
	}
	// A bad value in the environment is a usage error naming the variable.
	code, _, stderr := runCLI(t, map[string]string{"NST_STEPS": "lots"}, "stylize", "--content", "a", "--style", "b", "--out", "c.png")
	if code != exitUsage || !strings.Contains(stderr, "NST_STEPS") {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
}

// runFlags parses args and env for subcommand name as runEnv does (Parse, then applyEnv) and
// returns the flag set, the warnings and the error.
func runFlags(t *testing.T, name string, args []string, env map[string]string) (*pflag.FlagSet, []string, error) {
	t.Helper()
	for _, c := range commands() {
		if c.name != name {
			continue
		}
		fs := pflag.NewFlagSet("nst "+name, pflag.ContinueOnError)
		fs.SetOutput(io.Discard)
		c.setup(fs)
		var common commonFlags
		common.register(fs)
		if err := fs.Parse(args); err != nil {
			return fs, nil, err
		}
		warnings, err := applyEnv(fs, func(k string) string { return env[k] })
		return fs, warnings, err
	}
	t.Fatalf("no subcommand %q", name)
	return nil, nil, nil
}

// TestLanesAliases: --gpu-jobs and NST_GPU_JOBS, the old names of --lanes, still set it, each
// with a warning; the new name wins over the old, the command line over the environment.
func TestLanesAliases(t *testing.T) {
	const (
		oldFlag = "--gpu-jobs is deprecated: use --lanes"
		oldEnv  = "NST_GPU_JOBS is deprecated: use NST_LANES"
	)
	for _, c := range []struct {
		name     string
		args     []string
		env      map[string]string
		lanes    int
		warnings []string
	}{
		{"default", nil, nil, 1, nil},
		{"--lanes", []string{"--lanes", "3"}, nil, 3, nil},
		{"NST_LANES", nil, map[string]string{"NST_LANES": "3"}, 3, nil},
		{"--gpu-jobs", []string{"--gpu-jobs", "3"}, nil, 3, []string{oldFlag}},
		{"--gpu-jobs=", []string{"--gpu-jobs=3"}, nil, 3, []string{oldFlag}},
		{"NST_GPU_JOBS", nil, map[string]string{"NST_GPU_JOBS": "3"}, 3, []string{oldEnv}},
		{"--lanes beats --gpu-jobs after it", []string{"--lanes", "2", "--gpu-jobs", "3"}, nil, 2,
			[]string{oldFlag, "--gpu-jobs 3 ignored: --lanes is set"}},
		{"--lanes beats --gpu-jobs before it", []string{"--gpu-jobs", "3", "--lanes", "2"}, nil, 2,
			[]string{oldFlag, "--gpu-jobs 3 ignored: --lanes is set"}},
		{"NST_LANES beats NST_GPU_JOBS", nil, map[string]string{"NST_LANES": "2", "NST_GPU_JOBS": "3"}, 2,
			[]string{oldEnv, "NST_GPU_JOBS 3 ignored: --lanes is set"}},
		{"--gpu-jobs beats NST_LANES", []string{"--gpu-jobs", "3"}, map[string]string{"NST_LANES": "2"}, 3, []string{oldFlag}},
		{"--lanes beats NST_GPU_JOBS", []string{"--lanes", "2"}, map[string]string{"NST_GPU_JOBS": "3"}, 2,
			[]string{oldEnv, "NST_GPU_JOBS 3 ignored: --lanes is set"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			fs, warnings, err := runFlags(t, "run", c.args, c.env)
			if err != nil {
				t.Fatal(err)
			}
			if got, _ := fs.GetInt("lanes"); got != c.lanes {
				t.Errorf("lanes %d, want %d", got, c.lanes)
			}
			if !slices.Equal(warnings, c.warnings) {
				t.Errorf("warnings %q, want %q", warnings, c.warnings)
			}
		})
	}

	// A bad value names the old flag or variable and is a usage error.
	for _, c := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--gpu-jobs", "two"}, nil, `--gpu-jobs="two": invalid argument`},
		{nil, map[string]string{"NST_GPU_JOBS": "two"}, `NST_GPU_JOBS="two": invalid argument`},
	} {
		if _, _, err := runFlags(t, "run", c.args, c.env); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q %v: err %v, want %q", c.args, c.env, err, c.want)
		}
		code, _, stderr := runCLI(t, c.env, append([]string{"run", "--manifest", "x.yaml"}, c.args...)...)
		if code != exitUsage || !strings.Contains(stderr, c.want) {
			t.Errorf("%q %v: exit %d, stderr %q", c.args, c.env, code, stderr)
		}
	}

	// The warning reaches the log, in the log's format; --help shows only --lanes.
	code, _, stderr := runCLI(t, map[string]string{"NST_GPU_JOBS": "2"}, "run", "--log-format", "json")
	if code != exitUsage || !strings.Contains(stderr, `"level":"WARN","msg":"`+oldEnv+`"`) || !strings.Contains(stderr, "--manifest is required") {
		t.Errorf("exit %d, stderr %q: want the warning as a JSON log line, then the usage error", code, stderr)
	}
	code, stdout, _ := runCLI(t, nil, "run", "--help")
	if code != exitOK || !strings.Contains(stdout, "--lanes int") || strings.Contains(stdout, "--gpu-jobs ") || !strings.Contains(stdout, "formerly --gpu-jobs") {
		t.Errorf("run --help: exit %d, want --lanes and no --gpu-jobs flag:\n%s", code, stdout)
	}
}
