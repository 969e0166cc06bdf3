package k8s

import (
	"bufio"
	"maps"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

// The Dockerfile and .dockerignore live at the repository root; the manifests here run the
// image they build, so their contract is tested beside the manifests'.
const (
	dockerfile   = "../Dockerfile"
	dockerignore = "../.dockerignore"
	cudaRuntime  = "nvidia/cuda:12.1.1-cudnn8-runtime-ubuntu22.04"
	cpuRuntime   = "debian:bookworm-slim"
)

// instr is one Dockerfile instruction: its keyword (lower case), flags and arguments.
type instr struct {
	cmd   string
	flags []string
	args  []string
	json  bool // exec (JSON array) form
	line  int
}

// stage is a FROM and the instructions up to the next one.
type stage struct {
	from, name string
	instrs     []instr
}

// parseDockerfile parses path with BuildKit's own parser and splits it into the global ARGs
// (before the first FROM, as "name=default" in order) and the stages.
func parseDockerfile(t *testing.T, path string) ([]string, []stage) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	res, err := parser.Parse(f)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range res.Warnings {
		t.Errorf("%s: %s", path, w.Short)
	}
	var globals []string
	var stages []stage
	for _, n := range res.AST.Children {
		in := instr{cmd: strings.ToLower(n.Value), flags: n.Flags, json: n.Attributes["json"], line: n.StartLine}
		for a := n.Next; a != nil; a = a.Next {
			in.args = append(in.args, a.Value)
		}
		switch {
		case in.cmd == "from":
			st := stage{from: in.args[0]}
			if len(in.args) == 3 && strings.EqualFold(in.args[1], "as") {
				st.name = in.args[2]
			}
			stages = append(stages, st)
		case len(stages) == 0 && in.cmd == "arg":
			globals = append(globals, in.args...)
		case len(stages) == 0:
			t.Errorf("line %d: %s before the first FROM", in.line, in.cmd)
		default:
			stages[len(stages)-1].instrs = append(stages[len(stages)-1].instrs, in)
		}
	}
	return globals, stages
}

// buildArgs evaluates the global ARGs in order, as `docker build --build-arg` does: a
// --build-arg overrides an ARG's default; a default may use the ARGs above it.
func buildArgs(globals []string, overrides map[string]string) map[string]string {
	args := map[string]string{}
	for _, a := range globals {
		k, v, _ := strings.Cut(a, "=")
		if o, ok := overrides[k]; ok {
			v = o
		}
		args[k] = expandArgs(v, args)
	}
	return args
}

var argRef = regexp.MustCompile(`\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?`)

func expandArgs(s string, args map[string]string) string {
	return argRef.ReplaceAllStringFunc(s, func(m string) string {
		return args[argRef.FindStringSubmatch(m)[1]]
	})
}

// resolveFrom follows a FROM through global build args and stage names to an image.
func resolveFrom(from string, globals map[string]string, stages []stage) string {
	for range len(stages) + 1 {
		from = expandArgs(from, globals)
		i := slices.IndexFunc(stages, func(s stage) bool { return s.name == from })
		if i < 0 {
			return from
		}
		from = stages[i].from
	}
	return from
}

func (s *stage) find(cmd string) []instr {
	var out []instr
	for _, in := range s.instrs {
		if in.cmd == cmd {
			out = append(out, in)
		}
	}
	return out
}

// keyValues returns the name=value pairs of ENV, LABEL or ARG instructions of a stage.
func (s *stage) keyValues(cmd string) map[string]string {
	kv := map[string]string{}
	for _, in := range s.find(cmd) {
		if cmd == "arg" {
			for _, a := range in.args {
				k, v, _ := strings.Cut(a, "=")
				kv[k] = v
			}
			continue
		}
		for i := 0; i+1 < len(in.args); i += 3 { // key, value, separator
			kv[in.args[i]] = strings.Trim(in.args[i+1], `"`)
		}
	}
	return kv
}

func TestDockerfile(t *testing.T) {
	rawGlobals, stages := parseDockerfile(t, dockerfile)
	globals := buildArgs(rawGlobals, nil)
	if len(stages) < 2 {
		t.Fatalf("%d stages, want a multi-stage build", len(stages))
	}
	final := &stages[len(stages)-1]
	bi := slices.IndexFunc(stages, func(s stage) bool { return s.name == "build" })
	if bi < 0 {
		t.Fatal("no stage named build")
	}
	build := &stages[bi]

	// Build stage: a pinned Go 1.26 on bookworm, the CI's own make targets.
	if !regexp.MustCompile(`^golang:1\.26\.\d+-bookworm(@sha256:[0-9a-f]{64})?$`).MatchString(build.from) {
		t.Errorf("build stage FROM %q, want golang:1.26.<patch>-bookworm", build.from)
	}
	if globals["NST_DEVICE"] != "cuda" {
		t.Errorf("ARG NST_DEVICE defaults to %q, want cuda", globals["NST_DEVICE"])
	}
	if args := build.keyValues("arg"); !hasKey(args, "NST_DEVICE") || !hasKey(args, "LIBTORCH") {
		t.Errorf("build stage ARGs %v, want NST_DEVICE and LIBTORCH", args)
	}
	if got := build.keyValues("env")["NST_CACHE"]; got != "/opt/nst" {
		t.Errorf("build stage NST_CACHE %q, want /opt/nst", got)
	}
	if got := build.keyValues("env")["NST_TEST_TOOLS"]; got != "0" {
		t.Errorf("build stage NST_TEST_TOOLS %q, want 0: make setup would install moto (which needs python3-venv) and k8s/validate's modules for tests the image never runs", got)
	}
	var runs strings.Builder
	for _, in := range build.find("run") {
		runs.WriteString(strings.Join(in.args, " ") + "\n")
	}
	for _, want := range []string{"make setup", "make build", "python3-pip", "g++", "make"} {
		if !strings.Contains(runs.String(), want) {
			t.Errorf("build stage never runs %q", want)
		}
	}
	if i, j := strings.Index(runs.String(), "make setup"), strings.LastIndex(runs.String(), "make build"); i < 0 || j < i {
		t.Error("make build does not follow make setup")
	}

	// Runtime: the CUDA 12.1 cuDNN runtime by default, bookworm-slim for NST_DEVICE=cpu.
	if got := resolveFrom(final.from, globals, stages); got != cudaRuntime {
		t.Errorf("runtime base %q, want %s", got, cudaRuntime)
	}
	cpu := buildArgs(rawGlobals, map[string]string{"NST_DEVICE": "cpu"})
	if got := resolveFrom(final.from, cpu, stages); got != cpuRuntime {
		t.Errorf("runtime base with NST_DEVICE=cpu %q, want %s", got, cpuRuntime)
	}

	// The final stage: non-root numeric user, nst as entrypoint, only the binary and libtorch.
	users := final.find("user")
	if len(users) == 0 {
		t.Fatal("final stage has no USER")
	}
	user := users[len(users)-1].args[0]
	if m := regexp.MustCompile(`^(\d+)(:(\d+))?$`).FindStringSubmatch(user); m == nil || m[1] == "0" || m[3] == "0" {
		t.Errorf("final USER %q, want a numeric non-root uid:gid (Kubernetes' runAsNonRoot checks it)", user)
	} else if m[1] != "65532" {
		t.Errorf("final USER %q, want 65532 as the manifests' runAsUser", user)
	}
	last := final.instrs[len(final.instrs)-1]
	if ep := final.find("entrypoint"); len(ep) != 1 || !ep[0].json || !slices.Equal(ep[0].args, []string{"/usr/local/bin/nst"}) {
		t.Errorf("ENTRYPOINT %+v, want [\"/usr/local/bin/nst\"] in exec form", ep)
	}
	if cmd := final.find("cmd"); len(cmd) != 1 || !cmd[0].json || !slices.Equal(cmd[0].args, []string{"--help"}) {
		t.Errorf("CMD %+v, want [\"--help\"]", cmd)
	}
	if last.cmd == "run" {
		t.Error("the final stage ends with RUN")
	}
	if v := final.keyValues("env")["GOTCH_CACHE"]; !strings.HasPrefix(v, "/tmp/") {
		t.Errorf("GOTCH_CACHE %q, want a directory under /tmp", v)
	}
	for _, in := range final.find("run") {
		if s := strings.Join(in.args, " "); regexp.MustCompile(`apt-get|apk |pip |curl |wget |make |go (build|install)`).MatchString(s) {
			t.Errorf("line %d: the final stage installs or builds: %s", in.line, s)
		}
	}
	libtorch := "/opt/nst/libtorch-2.1.2-${NST_DEVICE}"
	copied := map[string]string{}
	for _, in := range final.find("copy") {
		if !slices.Contains(in.flags, "--from=build") || len(in.args) != 2 {
			t.Errorf("line %d: COPY %v %v: the final stage copies only from the build stage", in.line, in.flags, in.args)
			continue
		}
		copied[in.args[0]] = in.args[1]
	}
	want := map[string]string{
		"/src/bin/nst":                       "/usr/local/bin/nst",
		libtorch:                             libtorch, // the binary's rpath: the same path
		"/etc/ssl/certs/ca-certificates.crt": "/etc/ssl/certs/ca-certificates.crt",
	}
	if !maps.Equal(copied, want) {
		t.Errorf("final stage copies %v, want %v", copied, want)
	}
	labels := final.keyValues("label")
	for _, k := range []string{"org.opencontainers.image.title", "org.opencontainers.image.source", "org.opencontainers.image.version", "org.opencontainers.image.description"} {
		if labels[k] == "" {
			t.Errorf("no OCI label %s", k)
		}
	}

	// Everywhere: no ADD of URLs (unchecked downloads), no secrets in ENV or ARG.
	secret := regexp.MustCompile(`(?i)(secret|passw|token|credential|access_key|private_key|api_key|aws_|google_application)`)
	for _, s := range stages {
		for _, in := range s.instrs {
			if in.cmd == "add" {
				for _, a := range in.args {
					if regexp.MustCompile(`^(https?|git|ssh)://|^git@`).MatchString(a) {
						t.Errorf("line %d: ADD %s: download in a checked step instead", in.line, a)
					}
				}
			}
		}
		for _, cmd := range []string{"env", "arg"} {
			for k := range s.keyValues(cmd) {
				if secret.MatchString(k) {
					t.Errorf("%s %s in stage %s: credentials come from workload identity", strings.ToUpper(cmd), k, s.from)
				}
			}
		}
	}
	for k := range globals {
		if secret.MatchString(k) {
			t.Errorf("global ARG %s", k)
		}
	}
}

func TestDockerignore(t *testing.T) {
	f, err := os.Open(dockerignore)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var patterns []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" && !strings.HasPrefix(l, "#") {
			patterns = append(patterns, strings.TrimSuffix(strings.TrimPrefix(l, "/"), "/"))
		}
	}
	for _, want := range []string{".git", "bin", "go.work", "go.work.sum", ".venv*"} {
		if !slices.Contains(patterns, want) {
			t.Errorf(".dockerignore lacks %s", want)
		}
	}
}

func hasKey(m map[string]string, k string) bool { _, ok := m[k]; return ok }
