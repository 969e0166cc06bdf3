package storagetest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// IsolateAWS points the AWS SDK at dummy static credentials and empty config files for the
// rest of t, so that no real configuration or credential on the machine is used or sent to a
// test server.
func IsolateAWS(t *testing.T) {
	t.Helper()
	dir := t.TempDir()
	for k, v := range map[string]string{
		"AWS_ACCESS_KEY_ID":           "AKIDFAKEFORTESTS",
		"AWS_SECRET_ACCESS_KEY":       "fake-secret-for-tests",
		"AWS_SESSION_TOKEN":           "",
		"AWS_PROFILE":                 "",
		"AWS_CONFIG_FILE":             filepath.Join(dir, "config"),
		"AWS_SHARED_CREDENTIALS_FILE": filepath.Join(dir, "credentials"),
		"AWS_EC2_METADATA_DISABLED":   "true",
		"AWS_ENDPOINT_URL":            "",
		"AWS_ENDPOINT_URL_S3":         "",
	} {
		t.Setenv(k, v)
	}
}

// S3URL is the s3:// URL of bucket on the S3-compatible server at endpoint (an http:// URL):
// path-style addressing, plain HTTP, and checksums only where the API requires them (what
// S3-compatible stores need with current AWS SDKs). Every parameter is one gocloud v0.49 s3blob
// accepts.
func S3URL(endpoint, bucket string) string {
	q := url.Values{
		"endpoint":                     {endpoint},
		"region":                       {"us-east-1"},
		"use_path_style":               {"true"},
		"disable_https":                {"true"},
		"request_checksum_calculation": {"when_required"},
		"response_checksum_validation": {"when_required"},
	}
	return "s3://" + bucket + "?" + q.Encode()
}

// MotoVenv is the virtualenv, relative to the repository root, that `make setup`
// (scripts/setup-moto.sh) installs moto's pinned server into.
const MotoVenv = ".venv-moto"

// Moto is a running moto S3 server (PyPI moto[server]) on a loopback port, started by
// StartMoto for one test.
type Moto struct {
	// URL is the server's endpoint, http://127.0.0.1:<port>.
	URL string
	// Version is moto's, as the server reported it.
	Version string
}

// motoLauncher runs moto's own server (moto.server.ThreadedMotoServer: the werkzeug app that
// the moto_server command serves) on 127.0.0.1 and a port the kernel picks, prints the
// address, and stops when its standard input closes: at the end of the test, or when the test
// binary dies, so no server outlives its test.
const motoLauncher = `
import logging, sys
logging.getLogger("werkzeug").setLevel(logging.ERROR)
import moto
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
host, port = server.get_host_and_port()
print("moto", moto.__version__, "http://%s:%d" % (host, port), flush=True)
sys.stdin.read()
server.stop()
`

// StartMoto starts moto's S3 server from the checkout's .venv-moto for the rest of t and
// points the AWS SDK at dummy credentials (IsolateAWS). When the server cannot be started
// (moto not installed, Python missing), the test fails if the environment variable CI is set,
// and is skipped with the cause otherwise.
func StartMoto(t *testing.T) *Moto {
	t.Helper()
	IsolateAWS(t)
	m, err := startMoto(t)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("moto's S3 server is needed in CI but did not start: %v", err)
		}
		t.Skipf("moto's S3 server is not available (run 'make setup' to install it): %v", err)
	}
	return m
}

func startMoto(t *testing.T) (*Moto, error) {
	python, err := motoPython()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(python, "-c", motoLauncher)
	// Not the test's AWS_* settings (IsolateAWS empties AWS_PROFILE, which botocore inside
	// moto takes for a profile named ""): the server needs none.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", python, err)
	}
	exited := make(chan error, 1)
	stop := func() {
		stdin.Close()
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	}
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		io.Copy(io.Discard, stdout) // anything moto prints later
		exited <- cmd.Wait()
	}()
	var line string
	select {
	case line = <-lines:
	case <-time.After(2 * time.Minute): // importing moto takes seconds; minutes on a loaded machine
	}
	var version, endpoint string
	if _, err := fmt.Sscanf(line, "moto %s %s", &version, &endpoint); err != nil || !strings.HasPrefix(endpoint, "http://127.0.0.1:") {
		stop()
		return nil, fmt.Errorf("%s did not report moto's address (got %q): %s", python, line, strings.TrimSpace(stderr.String()))
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() && stderr.Len() > 0 {
			t.Logf("moto's stderr:\n%s", stderr.String())
		}
	})
	t.Logf("moto %s serving S3 at %s", version, endpoint)
	return &Moto{URL: endpoint, Version: version}, nil
}

// motoPython finds .venv-moto's python in the directory of the test (the package) or the
// nearest parent that has one: the repository root.
func motoPython() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		python := filepath.Join(dir, MotoVenv, "bin", "python")
		if _, err := os.Stat(python); err == nil {
			return python, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no %s/bin/python in this checkout", MotoVenv)
		}
		dir = parent
	}
}

// CreateBucket creates an empty bucket on the server (moto accepts unsigned requests).
func (m *Moto) CreateBucket(t *testing.T, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, m.URL+"/"+name, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("moto: create bucket %s: %v", name, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("moto: create bucket %s: %s: %s", name, resp.Status, body)
	}
}

// syncBuffer is a bytes.Buffer that the process's stderr copier and the test may use at once.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *syncBuffer) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Len()
}
