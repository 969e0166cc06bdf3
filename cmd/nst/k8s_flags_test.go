package main

import (
	"fmt"
	"io"
	"maps"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/nst-project/nst/k8s"
)

// k8sPod is one pod template of a kustomization build with what the checks need from its Job.
type k8sPod struct {
	name        string // "Job/nst", "CronJob/nst-nightly"
	spec        *corev1.PodSpec
	completions int32
	inv         *k8s.Invocation
	env         []corev1.EnvVar // the nst container's variables, in order, as written
}

// k8sPods builds every kustomization in k8s.Kustomizations and returns each Job's and
// CronJob's pod template, by "<kustomization> <kind>/<name>".
func k8sPods(t *testing.T) map[string]k8sPod {
	t.Helper()
	pods := map[string]k8sPod{}
	for _, dir := range k8s.Kustomizations {
		objs, err := k8s.Build(filepath.Join("..", "..", "k8s", filepath.FromSlash(dir)))
		if err != nil {
			t.Fatal(err)
		}
		add := func(name string, spec *batchv1.JobSpec) {
			pod := &spec.Template.Spec
			inv, err := objs.Invocation(pod, "nst")
			if err != nil {
				t.Fatalf("%s %s: %v", dir, name, err)
			}
			var completions int32 = 1
			if spec.Completions != nil {
				completions = *spec.Completions
			}
			pods[dir+" "+name] = k8sPod{name: name, spec: pod, completions: completions, inv: inv, env: k8s.Container(pod, "nst").Env}
		}
		for i := range objs.Jobs {
			add("Job/"+objs.Jobs[i].Name, &objs.Jobs[i].Spec)
		}
		for i := range objs.CronJobs {
			add("CronJob/"+objs.CronJobs[i].Name, &objs.CronJobs[i].Spec.JobTemplate.Spec)
		}
		if len(objs.Jobs)+len(objs.CronJobs) == 0 {
			t.Errorf("%s builds no Job or CronJob", dir)
		}
	}
	return pods
}

// podOnly reports whether v is a value Invocation could not resolve offline (downward API or
// Secret): known only in a running pod.
func podOnly(v string) bool {
	return strings.HasPrefix(v, "$(fieldRef:") || strings.HasPrefix(v, "$(secretKeyRef:")
}

// unresolvedRef matches a $(VAR) reference left in an arg: a variable the container does not
// define, which the kubelet passes on literally.
var unresolvedRef = regexp.MustCompile(`\$\([A-Za-z_][A-Za-z0-9_.-]*\)`)

// checkInvocation checks a container's command line against nst's real flag set, built the way
// runEnv builds it: args[0] is a visible subcommand, args[1:] parse, every NST_* variable names
// a flag of that subcommand, and the effective values (flags, then NST_*, as applyEnv applies
// them) parse and fit the pod: --grace-period below terminationGracePeriodSeconds,
// --shard-count equal to completions. It returns every problem found.
func checkInvocation(args []string, env []corev1.EnvVar, resolved map[string]string, terminationGrace time.Duration, completions int32) []error {
	var errs []error
	fail := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if len(args) == 0 {
		return []error{fmt.Errorf("no args: the image's entrypoint is nst, so args[0] must be a subcommand")}
	}
	var cmd *command
	for _, c := range commands() {
		if c.name == args[0] {
			cmd = &c
		}
	}
	if cmd == nil {
		return []error{fmt.Errorf("args[0] %q is not an nst subcommand", args[0])}
	}
	if cmd.hidden {
		fail("args[0] %q is an internal subcommand", args[0])
	}
	fs := pflag.NewFlagSet("nst "+cmd.name, pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cmd.setup(fs)
	var common commonFlags
	common.register(fs)

	// Every --flag (or -x) in args is one of the subcommand's, before Parse reports only the first.
	for _, a := range args[1:] {
		if a == "--" {
			break
		}
		if m := unresolvedRef.FindString(a); m != "" {
			fail("arg %q: %s is not defined in the container's env", a, m)
		}
		name, ok := strings.CutPrefix(a, "--")
		if !ok {
			if s, short := strings.CutPrefix(a, "-"); short && s != "" {
				if fs.ShorthandLookup(s[:1]) == nil {
					fail("arg %q: nst %s has no flag -%s", a, cmd.name, s[:1])
				}
			}
			continue
		}
		name, _, _ = strings.Cut(name, "=")
		if fs.Lookup(name) == nil {
			fail("arg %q: nst %s has no flag --%s", a, cmd.name, name)
		}
	}
	if len(errs) > 0 {
		return errs
	}
	if err := fs.Parse(args[1:]); err != nil {
		return append(errs, fmt.Errorf("args %q: %v", args, err))
	}
	if len(fs.Args()) > 0 {
		fail("args %q: positional arguments %q (nst %s takes none)", args, fs.Args(), cmd.name)
	}

	// Every NST_* variable is the envName of one of the subcommand's flags, and is not dead
	// (shadowed by the same flag in args).
	getenv := map[string]string{}
	for _, e := range env {
		name, ok := strings.CutPrefix(e.Name, "NST_")
		if !ok {
			continue
		}
		flag := strings.ReplaceAll(strings.ToLower(name), "_", "-")
		f := fs.Lookup(flag)
		if f == nil || envName(f.Name) != e.Name {
			fail("env %s: nst %s has no flag --%s, so nst ignores it", e.Name, cmd.name, flag)
			continue
		}
		v, ok := resolved[flag]
		if !ok {
			fail("env %s: not resolved by k8s.Invocation", e.Name)
			continue
		}
		if f.Changed {
			// Flags win. Harmless when the arg is the variable itself ("--manifest
			// $(NST_MANIFEST)"); a different value means the variable is dead.
			if fresh, err := freshValue(cmd.name, flag, v); err != nil || fresh != f.Value.String() {
				fail("env %s=%q: ignored, args set --%s %s (flags win)", e.Name, v, flag, f.Value.String())
			}
			continue
		}
		if podOnly(v) {
			// Known only in the pod: a string flag takes anything, other types cannot be checked.
			if f.Value.Type() != "string" {
				fail("env %s=%s: --%s is a %s, which cannot be checked before the pod runs", e.Name, v, flag, f.Value.Type())
			}
			continue
		}
		if v == "" {
			fail("env %s is empty: applyEnv ignores it", e.Name)
			continue
		}
		getenv[e.Name] = v
	}
	// The real mechanism: applyEnv on the parsed flag set, as runEnv does. A deprecated name
	// works, but a tree we ship must not teach it.
	warnings, err := applyEnv(fs, func(k string) string { return getenv[k] })
	if err != nil {
		fail("env: %v", err)
	}
	for _, w := range warnings {
		fail("%s", w)
	}

	// Effective values against the pod.
	if cmd.name == "run" {
		if g, err := fs.GetDuration("grace-period"); err != nil {
			fail("--grace-period: %v", err)
		} else if g <= 0 || g >= terminationGrace {
			fail("--grace-period %v: want > 0 and < terminationGracePeriodSeconds (%v), or the pod is killed while nst checkpoints", g, terminationGrace)
		}
		if n, err := fs.GetInt("shard-count"); err != nil {
			fail("--shard-count: %v", err)
		} else if n != int(completions) {
			fail("--shard-count %d (NST_SHARD_COUNT), want completions (%d)", n, completions)
		}
		if m, _ := fs.GetString("manifest"); m == "" {
			fail("--manifest is empty")
		}
		if fs.Changed("shard-index") {
			fail("--shard-index is set: nst must take $JOB_COMPLETION_INDEX")
		}
	}
	if _, err := newLogger(io.Discard, common.logFormat, common.quiet, false); err != nil {
		fail("%v", err)
	}
	return errs
}

// freshValue is the value flag of subcommand name has after Set(v) on a fresh flag set. The
// command comes from a fresh commands() too: setup binds flags to variables the command's
// closures share, and registering them again would reset the flag set under test.
func freshValue(name, flag, v string) (string, error) {
	cmds := commands()
	i := slices.IndexFunc(cmds, func(c command) bool { return c.name == name })
	if i < 0 {
		return "", fmt.Errorf("no subcommand %q", name)
	}
	fs := pflag.NewFlagSet("nst "+name, pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cmds[i].setup(fs)
	var common commonFlags
	common.register(fs)
	if err := fs.Set(flag, v); err != nil {
		return "", err
	}
	return fs.Lookup(flag).Value.String(), nil
}

func terminationGrace(spec *corev1.PodSpec) time.Duration {
	if spec.TerminationGracePeriodSeconds == nil {
		return 30 * time.Second // the API server's default
	}
	return time.Duration(*spec.TerminationGracePeriodSeconds) * time.Second
}

// TestK8sFlags: the command line of every Job and CronJob the kustomizations build (args, and
// NST_* variables) is accepted by nst's real flag set, and its values fit the pod.
func TestK8sFlags(t *testing.T) {
	pods := k8sPods(t)
	if len(pods) < len(k8s.Kustomizations) {
		t.Fatalf("%d pod templates from %d kustomizations", len(pods), len(k8s.Kustomizations))
	}
	for _, key := range slices.Sorted(maps.Keys(pods)) {
		p := pods[key]
		t.Run(strings.ReplaceAll(key, " ", "/"), func(t *testing.T) {
			t.Logf("args %q; NST_* %v", p.inv.Args, p.inv.Env)
			for _, err := range checkInvocation(p.inv.Args, p.env, p.inv.Env, terminationGrace(p.spec), p.completions) {
				t.Error(err)
			}
		})
	}
}

// TestK8sFlagsCheckFails: the check above is not vacuous: each broken copy of a real pod's
// command line is reported.
func TestK8sFlagsCheckFails(t *testing.T) {
	pods := k8sPods(t)
	p, ok := pods["base Job/nst"]
	if !ok {
		t.Fatalf("no base Job/nst in %v", slices.Sorted(maps.Keys(pods)))
	}
	grace := terminationGrace(p.spec)
	if errs := checkInvocation(p.inv.Args, p.env, p.inv.Env, grace, p.completions); len(errs) > 0 {
		t.Fatalf("the base Job must pass: %v", errs)
	}
	setEnv := func(env []corev1.EnvVar, name, value string) []corev1.EnvVar {
		env = slices.Clone(env)
		for i := range env {
			if env[i].Name == name {
				env[i] = corev1.EnvVar{Name: name, Value: value}
				return env
			}
		}
		return append(env, corev1.EnvVar{Name: name, Value: value})
	}
	flagOf := func(name string) string {
		return strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(name, "NST_")), "_", "-")
	}
	cases := []struct {
		name        string
		args        []string
		env         []corev1.EnvVar
		completions int32
		want        string // in one of the errors
	}{
		{name: "unknown subcommand", args: append([]string{"runn"}, p.inv.Args[1:]...), want: "not an nst subcommand"},
		{name: "internal subcommand", args: append([]string{"worker"}, p.inv.Args[1:]...), want: "internal subcommand"},
		{name: "bogus flag", args: append(slices.Clone(p.inv.Args), "--bogus-flag"), want: "no flag --bogus-flag"},
		{name: "bogus flag with value", args: append(slices.Clone(p.inv.Args), "--lane=2"), want: "no flag --lane"},
		{name: "bad shorthand", args: append(slices.Clone(p.inv.Args), "-z"), want: "no flag -z"},
		{name: "positional", args: append(slices.Clone(p.inv.Args), "extra"), want: "positional"},
		{name: "undefined variable", args: append(slices.Clone(p.inv.Args), "--cache-dir", "$(NST_CACHE)"), want: "not defined"},
		{name: "bad flag value", args: append(slices.Clone(p.inv.Args), "--lanes", "two"), want: "invalid argument"},
		{name: "deprecated flag", args: append(slices.Clone(p.inv.Args), "--gpu-jobs", "2"), want: "--gpu-jobs is deprecated: use --lanes"},
		{name: "deprecated env", env: setEnv(p.env, "NST_GPU_JOBS", "2"), want: "NST_GPU_JOBS is deprecated: use NST_LANES"},
		{name: "bogus env", env: setEnv(p.env, "NST_BOGUS_FLAG", "1"), want: "NST_BOGUS_FLAG: nst run has no flag"},
		{name: "env shadowed by args", args: append(slices.Clone(p.inv.Args), "--threads", "2"), want: "ignored, args set --threads 2"},
		{name: "grace without unit", env: setEnv(p.env, "NST_GRACE_PERIOD", "25"), want: "NST_GRACE_PERIOD"},
		{name: "grace too long", env: setEnv(p.env, "NST_GRACE_PERIOD", grace.String()), want: "terminationGracePeriodSeconds"},
		{name: "shard count not a number", env: setEnv(p.env, "NST_SHARD_COUNT", "four"), want: "NST_SHARD_COUNT"},
		{name: "shard count != completions", completions: p.completions + 1, want: "want completions"},
		{name: "shard index set", env: setEnv(p.env, "NST_SHARD_INDEX", "0"), want: "--shard-index is set"},
		{name: "bad log format", env: setEnv(p.env, "NST_LOG_FORMAT", "yaml"), want: "--log-format"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			args, env, completions := p.inv.Args, p.env, p.completions
			if c.args != nil {
				args = c.args
			}
			if c.env != nil {
				env = c.env
			}
			if c.completions != 0 {
				completions = c.completions
			}
			resolved := maps.Clone(p.inv.Env)
			for _, e := range env {
				if f := flagOf(e.Name); strings.HasPrefix(e.Name, "NST_") && e.ValueFrom == nil {
					resolved[f] = e.Value
				}
			}
			errs := checkInvocation(args, env, resolved, grace, completions)
			if !slices.ContainsFunc(errs, func(err error) bool { return strings.Contains(err.Error(), c.want) }) {
				t.Errorf("want an error containing %q, got %v", c.want, errs)
			}
		})
	}
	// The shard count the base relies on is its completions.
	if got := p.inv.Env["shard-count"]; got != strconv.Itoa(int(p.completions)) {
		t.Errorf("NST_SHARD_COUNT %q, completions %d", got, p.completions)
	}
}
