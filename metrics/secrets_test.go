package metrics

import (
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/nst-project/nst/pipeline"
)

// TestPushURLWithSecrets: a push URL with a user, a password and a token= query builds the
// right request (the query after /metrics/job/..., the password as basic auth, a path prefix
// kept), and no error names the password or the token: refused by the gateway, or not
// reached at all.
func TestPushURLWithSecrets(t *testing.T) {
	type request struct{ path, query, auth string }
	var got []request
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, request{r.URL.Path, r.URL.RawQuery, r.Header.Get("Authorization")})
		w.WriteHeader(status)
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	rep := &pipeline.ShardResult{RunID: "demo-1", ShardIndex: 2}
	push := "http://ops:PW-s3cr3t@" + host + "/gw/?token=TK-s3cr3t&tenant=a"

	if err := Push(t.Context(), push, rep, nil); err != nil {
		t.Fatal(err)
	}
	wantAuth := "Basic " + base64.StdEncoding.EncodeToString([]byte("ops:PW-s3cr3t"))
	if len(got) != 1 || got[0].query != "token=TK-s3cr3t&tenant=a" || got[0].auth != wantAuth ||
		(got[0].path != "/gw/metrics/job/nst/run_id/demo-1/shard/2" && got[0].path != "/gw/metrics/job/nst/shard/2/run_id/demo-1") {
		t.Fatalf("requests %+v", got)
	}

	status = http.StatusUnauthorized
	err := Push(t.Context(), push, rep, nil)
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	errClosed := Push(t.Context(), "http://ops:PW-s3cr3t@"+strings.TrimPrefix(closed.URL, "http://")+"/?token=TK-s3cr3t", rep, nil)
	errBad := Push(t.Context(), "http://ops:PW-s3cr3t@[bad/?token=TK-s3cr3t", rep, nil)
	for name, err := range map[string]error{"refused": err, "unreachable": errClosed, "unparsable": errBad} {
		if err == nil {
			t.Errorf("%s: no error", name)
			continue
		}
		if msg := err.Error(); strings.Contains(msg, "s3cr3t") || !strings.Contains(msg, "REDACTED") {
			t.Errorf("%s: error %q leaks a secret or does not say where it pushed", name, msg)
		}
	}
}
