package storagetest

import (
	"net"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestMotoStopsAfterTest shows that the server StartMoto starts listens on loopback only and
// is gone once its test has ended.
func TestMotoStopsAfterTest(t *testing.T) {
	var addr string
	t.Run("server", func(t *testing.T) {
		m := StartMoto(t)
		u, err := url.Parse(m.URL)
		if err != nil {
			t.Fatal(err)
		}
		if u.Hostname() != "127.0.0.1" {
			t.Errorf("moto listens on %s, want 127.0.0.1", u.Hostname())
		}
		addr = u.Host
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatalf("moto at %s: %v", addr, err)
		}
		c.Close()
	})
	if addr == "" {
		t.Skip("moto did not start (see the subtest)")
	}
	// Cleanup ran when the subtest ended: the port must be closed by now.
	if c, err := net.DialTimeout("tcp", addr, 5*time.Second); err == nil {
		c.Close()
		t.Errorf("moto still accepts connections at %s after its test ended", addr)
	}
}

// TestStartMotoUnavailable runs a test that needs moto in a directory without .venv-moto, in a
// child process of this test binary: with CI set it must fail, without it it must be skipped
// and say why.
func TestStartMotoUnavailable(t *testing.T) {
	if os.Getenv("NST_STARTMOTO_CHILD") == "1" {
		StartMoto(t)
		t.Log("moto started")
		return
	}
	for _, c := range []struct {
		ci       string
		wantFail bool
		want     string
	}{
		{"", false, "--- SKIP: TestStartMotoUnavailable"},
		{"true", true, "--- FAIL: TestStartMotoUnavailable"},
	} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestStartMotoUnavailable$", "-test.v", "-test.count=1")
		cmd.Dir = t.TempDir() // no .venv-moto here or above
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, "CI=") {
				cmd.Env = append(cmd.Env, kv)
			}
		}
		cmd.Env = append(cmd.Env, "NST_STARTMOTO_CHILD=1")
		if c.ci != "" {
			cmd.Env = append(cmd.Env, "CI="+c.ci)
		}
		out, err := cmd.CombinedOutput()
		if failed := err != nil; failed != c.wantFail || !strings.Contains(string(out), c.want) || !strings.Contains(string(out), "no .venv-moto/bin/python") {
			t.Errorf("CI=%q: exit %v, output:\n%s\nwant failed=%v and %q with the cause", c.ci, err, out, c.wantFail, c.want)
		}
	}
}
