package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
