package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nst-project/nst/pipeline"
)

func TestPrintable(t *testing.T) {
	for _, c := range []struct {
		in, lines, line string
	}{
		{"plain key/é 東京.png", "plain key/é 東京.png", "plain key/é 東京.png"},
		{"a\x1b[31mred\x1b[0m.png", `a\x1b[31mred\x1b[0m.png`, `a\x1b[31mred\x1b[0m.png`},
		{"two\nlines\tx", "two\nlines\tx", `two\nlines\tx`},
		{"over\rwrite", `over\rwrite`, `over\rwrite`},
		{"bidi\u202egnp.exe", `bidi\u202egnp.exe`, `bidi\u202egnp.exe`},
		{"c1\u009bx", `c1\u009bx`, `c1\u009bx`},
		{"bad\xffutf8", `bad\xffutf8`, `bad\xffutf8`},
	} {
		if got := printable(c.in, true); got != c.lines {
			t.Errorf("printable(%q, true) = %q, want %q", c.in, got, c.lines)
		}
		if got := printable(c.in, false); got != c.line {
			t.Errorf("printable(%q, false) = %q, want %q", c.in, got, c.line)
		}
	}
	if got := quoteKey("out/a\x1b[2J.png"); got != `"out/a\x1b[2J.png"` {
		t.Errorf("quoteKey = %s", got)
	}
	if got := quoteKey("out/a b.png"); got != "out/a b.png" {
		t.Errorf("quoteKey of a clean key = %s", got)
	}
}

// TestResultLinesOnlyWrittenKeys: the pipeline leaves SummaryKey or SheetKey empty when it
// could not write them; nst run then names no summary or sheet, and quotes keys that hold
// control characters.
func TestResultLinesOnlyWrittenKeys(t *testing.T) {
	rep := &pipeline.ShardResult{RunID: "r1", ShardCount: 1, Planned: 2, Done: 1, Failed: 1}
	if got, want := resultLines(rep), "run r1 shard 0/1: 2 pairs: 1 done, 0 skipped, 0 stale, 1 failed, 0 interrupted\n"; got != want {
		t.Errorf("no keys written:\n got %q\nwant %q", got, want)
	}
	rep.SummaryKey, rep.SheetKey = "o\x1b[31m/_runs/r1/shard-0-of-1.json", "o\x1b[31m/_report/index.html"
	got := resultLines(rep)
	if strings.ContainsRune(got, 0x1b) || !strings.Contains(got, `; summary "o\x1b[31m/_runs/r1/shard-0-of-1.json"`) ||
		!strings.Contains(got, `contact sheet "o\x1b[31m/_report/index.html"`) {
		t.Errorf("keys with control characters: %q", got)
	}
}

// TestErrorsPrintedSafely: an error quoting a hostile file name reaches stderr escaped.
func TestErrorsPrintedSafely(t *testing.T) {
	var b bytes.Buffer
	code := exitCode(context.Background(), &b, "run", errors.New("pair \"a\x1b]0;owned\x07.png\": bad\nsecond line"))
	if code != exitFailed || strings.ContainsAny(b.String(), "\x1b\x07") || !strings.Contains(b.String(), `a\x1b]0;owned\a.png`) ||
		!strings.Contains(b.String(), "\nsecond line") {
		t.Errorf("exit %d, stderr %q", code, b.String())
	}
}

// TestRunIDFlagChecked: --run-id is checked like metadata.name before any work: exit 2, the
// message about the run ID, the manifest not even read.
func TestRunIDFlagChecked(t *testing.T) {
	for _, cmd := range []string{"run", "plan", "report"} {
		code, stdout, stderr := runArgs(t, nil, cmd, "--manifest", "/nonexistent/m.yaml", "--run-id", "../../etc\x1b[31m")
		if code != exitUsage || !strings.Contains(stderr, "run ID") || strings.Contains(stderr, "nonexistent") ||
			strings.ContainsRune(stderr, 0x1b) || stdout != "" {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want 2 and a message about the run ID", cmd, code, stdout, stderr)
		}
	}
}

// TestHostileFileNameNotEchoed: a content file whose name holds terminal escape sequences
// fails (its pair, or the listing) without the raw sequence reaching stdout or stderr.
func TestHostileFileNameNotEchoed(t *testing.T) {
	man := demoManifest(t)
	writePNG(t, filepath.Join(filepath.Dir(man), "data/contents", "evil\x1b[2J\x1b]0;pwned\x07.png"), 40, 40, 4)
	code, stdout, stderr := runArgs(t, nil, "run", "--manifest", man, "--device", "cpu", "--threads", "1", "--run-id", "h1", "--in-process")
	if code == exitOK {
		t.Errorf("exit 0 with an unreadable content")
	}
	t.Logf("stdout %s\nstderr %s", stdout, stderr)
	if strings.ContainsAny(stdout+stderr, "\x1b\x07") {
		t.Errorf("raw control characters printed:\nstdout %q\nstderr %q", stdout, stderr)
	}
	if !strings.Contains(stderr, `evil\x1b[2J`) {
		t.Errorf("stderr does not name the file (escaped): %q", stderr)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(man), "out")); err != nil && !os.IsNotExist(err) {
		t.Error(err)
	}
}
