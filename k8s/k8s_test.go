package k8s

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"sigs.k8s.io/yaml"
)

// platform is what one kustomization must produce.
type platform struct {
	dir         string
	nightly     bool              // a CronJob instead of a Job
	gpu         bool              // GPU limits, toleration, node selector, --device cuda
	scheme      string            // of the manifest URL
	annotations map[string]string // exact ServiceAccount annotations, as regexps
	nodeLabel   string            // a key the node selector must have (gpu only)
	imageTag    string            // suffix of the image tag
	env         map[string]string // other variables the container must set
	secrets     []string          // Secret names env may refer to (optional refs only)
}

var platforms = []platform{
	{dir: "base", gpu: true, scheme: "s3", nodeLabel: "nvidia.com/gpu.present", imageTag: "-cuda"},
	{dir: "nightly", nightly: true, gpu: true, scheme: "s3", nodeLabel: "nvidia.com/gpu.present", imageTag: "-cuda"},
	{
		dir: "overlays/aws", gpu: true, scheme: "s3", nodeLabel: "nvidia.com/gpu.present", imageTag: "-cuda",
		annotations: map[string]string{"eks.amazonaws.com/role-arn": `^arn:aws:iam::\d{12}:role/[\w+=,.@/-]+$`},
		env:         map[string]string{"AWS_REGION": `^[a-z]{2}(-[a-z]+)+-\d$`},
	},
	{
		dir: "overlays/gcp", gpu: true, scheme: "gs", nodeLabel: "cloud.google.com/gke-accelerator", imageTag: "-cuda",
		annotations: map[string]string{"iam.gke.io/gcp-service-account": `^[a-z][a-z0-9-]{4,28}[a-z0-9]@[a-z][a-z0-9-]+\.iam\.gserviceaccount\.com$`},
	},
	{dir: "overlays/cpu", gpu: false, scheme: "s3", imageTag: "-cpu", secrets: []string{"nst-local-s3"}},
}

// nst's defaults the manifests rely on (the `nst run` contract).
const (
	defaultGracePeriod = 25 * time.Second
	// Time a pod needs after nst's grace period: uploads in flight, the summary, exit.
	uploadMargin = 30 * time.Second
)

func TestPlatforms(t *testing.T) {
	if got, want := len(platforms), len(Kustomizations); got != want {
		t.Fatalf("%d platforms tested, %d kustomizations", got, want)
	}
	for _, p := range platforms {
		t.Run(p.dir, func(t *testing.T) {
			if !slices.Contains(Kustomizations, p.dir) {
				t.Fatalf("%s is not in Kustomizations", p.dir)
			}
			objs, err := Build(p.dir)
			if err != nil {
				t.Fatal(err)
			}
			var spec *batchv1.JobSpec
			if p.nightly {
				if len(objs.Jobs) != 0 || len(objs.CronJobs) != 1 {
					t.Fatalf("want 1 CronJob and no Job, got %d and %d", len(objs.CronJobs), len(objs.Jobs))
				}
				cj := &objs.CronJobs[0]
				checkCronJob(t, cj)
				spec = &cj.Spec.JobTemplate.Spec
			} else {
				if len(objs.Jobs) != 1 || len(objs.CronJobs) != 0 {
					t.Fatalf("want 1 Job and no CronJob, got %d and %d", len(objs.Jobs), len(objs.CronJobs))
				}
				spec = &objs.Jobs[0].Spec
			}
			for _, err := range semantic(spec) {
				t.Error(err)
			}
			checkJob(t, p, objs, spec)
			checkServiceAccount(t, p, objs, &spec.Template.Spec)
		})
	}
}

// TestKustomizationsComplete keeps Kustomizations (which TestPlatforms and cmd/nst's flag tests
// build) equal to the trees on disk: every directory under k8s/ with a kustomization that is not
// a Component, outside testdata. k8s/validate discovers the trees the same way for the API
// server's checks.
func TestKustomizationsComplete(t *testing.T) {
	var found []string
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != "." && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) {
			return filepath.SkipDir
		}
		if d.IsDir() || !slices.Contains([]string{"kustomization.yaml", "kustomization.yml", "Kustomization"}, d.Name()) {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		var head struct{ Kind string }
		if err := yaml.Unmarshal(data, &head); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if head.Kind != "Component" {
			found = append(found, filepath.ToSlash(filepath.Dir(path)))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(found)
	if want := slices.Sorted(slices.Values(Kustomizations)); !slices.Equal(found, want) {
		t.Errorf("kustomize trees on disk %q, Kustomizations %q: add the new tree to Kustomizations and platforms", found, want)
	}
}

// checkJob checks the Job spec (of a Job or a CronJob's template) against the contract between
// the manifests and `nst run`.
func checkJob(t *testing.T, p platform, objs *Objects, spec *batchv1.JobSpec) {
	t.Helper()
	pod := &spec.Template.Spec
	inv, err := objs.Invocation(pod, "nst")
	if err != nil {
		t.Fatal(err)
	}
	c := Container(pod, "nst")

	// Sharding: one pod per shard, all at once, and nst told how many there are.
	if spec.CompletionMode == nil || *spec.CompletionMode != batchv1.IndexedCompletion {
		t.Errorf("completionMode %v, want Indexed", deref(spec.CompletionMode))
	}
	completions, parallelism := deref(spec.Completions), deref(spec.Parallelism)
	if completions < 1 || parallelism != completions {
		t.Errorf("completions %d, parallelism %d: want equal and positive", completions, parallelism)
	}
	if got := inv.Env["shard-count"]; got != strconv.Itoa(int(completions)) {
		t.Errorf("NST_SHARD_COUNT %q, want completions (%d)", got, completions)
	}
	if v, ok := inv.Env["shard-index"]; ok {
		t.Errorf("NST_SHARD_INDEX is set (%q): nst must take $JOB_COMPLETION_INDEX", v)
	}
	if slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "JOB_COMPLETION_INDEX" }) {
		t.Error("JOB_COMPLETION_INDEX is set by hand: the Job controller injects it")
	}

	// Failures: per-index retries; evictions are free; bad input stops everything.
	if got := deref(spec.BackoffLimitPerIndex); got != 2 {
		t.Errorf("backoffLimitPerIndex %d, want 2", got)
	}
	if m := spec.MaxFailedIndexes; m == nil || *m < 0 || *m >= completions && completions > 1 {
		t.Errorf("maxFailedIndexes %v, want set and below completions (%d)", deref(m), completions)
	}
	if spec.BackoffLimit != nil {
		t.Errorf("backoffLimit %d is set: with backoffLimitPerIndex the per-index limit governs", *spec.BackoffLimit)
	}
	checkFailurePolicy(t, spec.PodFailurePolicy)
	if got := deref(spec.PodReplacementPolicy); got != batchv1.Failed {
		t.Errorf("podReplacementPolicy %q, want Failed", got)
	}
	if pod.RestartPolicy != corev1.RestartPolicyNever {
		t.Errorf("restartPolicy %q, want Never", pod.RestartPolicy)
	}
	if d := deref(spec.ActiveDeadlineSeconds); d <= 0 {
		t.Error("activeDeadlineSeconds unset")
	}
	if ttl := spec.TTLSecondsAfterFinished; ttl == nil || *ttl < 3600 {
		t.Errorf("ttlSecondsAfterFinished %v, want at least an hour (to read logs)", deref(ttl))
	}

	// SIGTERM: nst's grace period, then uploads, fit in the pod's.
	grace := defaultGracePeriod
	if v, ok := inv.Env["grace-period"]; ok {
		if grace, err = time.ParseDuration(v); err != nil {
			t.Errorf("NST_GRACE_PERIOD %q: %v", v, err)
		}
	}
	if tgp := time.Duration(deref(pod.TerminationGracePeriodSeconds)) * time.Second; tgp < grace+uploadMargin {
		t.Errorf("terminationGracePeriodSeconds %v, want at least nst's grace period %v + %v", tgp, grace, uploadMargin)
	}

	// The command line.
	if len(inv.Args) == 0 || inv.Args[0] != "run" {
		t.Fatalf("args %q, want nst run", inv.Args)
	}
	manifest := flagValue(inv.Args, "manifest")
	if !slices.Contains(c.Args, "$(NST_MANIFEST)") {
		t.Errorf("args %q: want --manifest $(NST_MANIFEST)", c.Args)
	}
	if !strings.HasPrefix(manifest, p.scheme+"://") {
		t.Errorf("manifest URL %q, want %s://", manifest, p.scheme)
	}
	if strings.Contains(manifest, "$(") {
		t.Errorf("manifest URL %q was not resolved from the ConfigMap", manifest)
	}
	checkRunID(t, p, inv)
	for name, re := range p.env {
		if v, ok := inv.Other[name]; !ok || !regexp.MustCompile(re).MatchString(v) {
			t.Errorf("env %s=%q, want %s", name, v, re)
		}
	}
	if v := inv.Other["GOTCH_CACHE"]; !strings.HasPrefix(v, "/tmp/") {
		t.Errorf("GOTCH_CACHE %q, want a directory under the writable /tmp", v)
	}

	// GPU or not.
	device := flagValue(inv.Args, "device")
	if device == "" {
		device = inv.Env["device"]
	}
	gpus := c.Resources.Limits[corev1.ResourceName("nvidia.com/gpu")]
	_, gpuRequest := c.Resources.Requests[corev1.ResourceName("nvidia.com/gpu")]
	gpuToleration := slices.ContainsFunc(pod.Tolerations, func(t corev1.Toleration) bool { return t.Key == "nvidia.com/gpu" })
	if p.gpu {
		if gpus.Value() != 1 {
			t.Errorf("nvidia.com/gpu limit %v, want 1", gpus.String())
		}
		if device != "cuda" {
			t.Errorf("device %q, want cuda", device)
		}
		if !gpuToleration {
			t.Error("no toleration for nvidia.com/gpu")
		}
		if _, ok := pod.NodeSelector[p.nodeLabel]; !ok {
			t.Errorf("nodeSelector %v, want %s", pod.NodeSelector, p.nodeLabel)
		}
	} else {
		if !gpus.IsZero() || gpuRequest {
			t.Errorf("GPU resources %v / %v on the CPU variant", c.Resources.Limits, c.Resources.Requests)
		}
		if device != "cpu" || flagValue(inv.Args, "device") != "cpu" {
			t.Errorf("device %q (args %q), want --device cpu", device, inv.Args)
		}
		if _, ok := inv.Env["device"]; ok {
			t.Errorf("NST_DEVICE=%q beside --device cpu", inv.Env["device"])
		}
		if gpuToleration || len(pod.NodeSelector) > 0 {
			t.Errorf("GPU scheduling on the CPU variant: tolerations %v, nodeSelector %v", pod.Tolerations, pod.NodeSelector)
		}
	}

	// Resources: CPU and memory requested, memory bounded, libtorch's threads = CPUs asked for.
	cpu, okCPU := c.Resources.Requests[corev1.ResourceCPU]
	mem, okMem := c.Resources.Requests[corev1.ResourceMemory]
	memLimit, okLimit := c.Resources.Limits[corev1.ResourceMemory]
	if !okCPU || !okMem || !okLimit || memLimit.Cmp(mem) < 0 {
		t.Errorf("resources %+v: want cpu and memory requests and a memory limit >= the request", c.Resources)
	}
	// Each lane is a worker process with --threads libtorch threads.
	threads, errT := strconv.Atoi(inv.Env["threads"])
	lanes, errL := strconv.Atoi(cmp.Or(inv.Env["lanes"], "1"))
	if errT != nil || errL != nil || int64(lanes*threads) != cpu.Value() {
		t.Errorf("NST_LANES %q x NST_THREADS %q, want the CPU request %s", inv.Env["lanes"], inv.Env["threads"], cpu.String())
	}

	checkSecurity(t, pod, c)
	checkSecrets(t, p, c)

	// Image: replaced by kustomize, pinned, the right variant.
	img := c.Image
	if img == "nst" || strings.HasSuffix(img, ":latest") || !strings.Contains(img, "/") {
		t.Errorf("image %q: want a registry image with a tag or digest, set by images:", img)
	}
	if !strings.Contains(img, "@sha256:") && !strings.HasSuffix(img, p.imageTag) {
		t.Errorf("image %q, want a tag ending %q", img, p.imageTag)
	}
}

func checkFailurePolicy(t *testing.T, pfp *batchv1.PodFailurePolicy) {
	t.Helper()
	if pfp == nil || len(pfp.Rules) == 0 {
		t.Fatal("no podFailurePolicy")
	}
	// action returns the action of the first rule matching a pod of the nst container
	// with this exit code and these conditions, as the Job controller evaluates them.
	action := func(code int32, disrupted bool) batchv1.PodFailurePolicyAction {
		for _, r := range pfp.Rules {
			if on := r.OnExitCodes; on != nil {
				if on.ContainerName != nil && *on.ContainerName != "nst" {
					continue
				}
				if slices.Contains(on.Values, code) == (on.Operator == batchv1.PodFailurePolicyOnExitCodesOpIn) {
					return r.Action
				}
			}
			for _, c := range r.OnPodConditions {
				if disrupted && c.Type == corev1.DisruptionTarget && c.Status == corev1.ConditionTrue {
					return r.Action
				}
			}
		}
		return batchv1.PodFailurePolicyActionCount
	}
	cases := []struct {
		name      string
		code      int32
		disrupted bool
		want      batchv1.PodFailurePolicyAction
	}{
		{"bad manifest fails the Job", 2, false, batchv1.PodFailurePolicyActionFailJob},
		{"failed pairs are retried", 1, false, batchv1.PodFailurePolicyActionCount},
		{"interrupted is retried and counted", 130, false, batchv1.PodFailurePolicyActionCount},
		{"evicted after checkpointing is free", 130, true, batchv1.PodFailurePolicyActionIgnore},
		{"evicted, killed after the grace period, is free", 137, true, batchv1.PodFailurePolicyActionIgnore},
		{"OOM-killed is counted", 137, false, batchv1.PodFailurePolicyActionCount},
		{"evicted while exiting 2 is free", 2, true, batchv1.PodFailurePolicyActionIgnore},
	}
	for _, c := range cases {
		if got := action(c.code, c.disrupted); got != c.want {
			t.Errorf("%s: exit %d (disrupted %v) -> %s, want %s", c.name, c.code, c.disrupted, got, c.want)
		}
	}
}

// Fields the downward API can put in an environment variable.
var envFieldPath = regexp.MustCompile(`^(metadata\.(name|namespace|uid)|metadata\.(labels|annotations)\['[A-Za-z0-9./_-]+'\]|spec\.(nodeName|serviceAccountName)|status\.(hostIP|hostIPs|podIP|podIPs))$`)

func checkRunID(t *testing.T, p platform, inv *Invocation) {
	t.Helper()
	// One run ID per Job, shared by every shard and retry: the Job's name for the nightly
	// (unique per scheduled time), the Job's UID otherwise.
	want := "$(fieldRef:metadata.labels['batch.kubernetes.io/controller-uid'])"
	if p.nightly {
		want = "$(fieldRef:metadata.labels['batch.kubernetes.io/job-name'])"
	}
	got := inv.Env["run-id"]
	if got != want {
		t.Errorf("NST_RUN_ID %q, want %q", got, want)
	}
	if path, ok := strings.CutPrefix(strings.TrimSuffix(got, ")"), "$(fieldRef:"); ok && !envFieldPath.MatchString(path) {
		t.Errorf("NST_RUN_ID from %q, which the downward API does not offer to env", path)
	}
}

func checkSecurity(t *testing.T, pod *corev1.PodSpec, c *corev1.Container) {
	t.Helper()
	psc, sc := pod.SecurityContext, c.SecurityContext
	if psc == nil || sc == nil {
		t.Fatal("pod or container securityContext missing")
	}
	if !deref(psc.RunAsNonRoot) || deref(psc.RunAsUser) == 0 || deref(psc.RunAsGroup) == 0 {
		t.Errorf("pod runs as non-root %v, uid %d, gid %d: want true, the image's 65532", deref(psc.RunAsNonRoot), deref(psc.RunAsUser), deref(psc.RunAsGroup))
	}
	if deref(psc.RunAsUser) != 65532 {
		t.Errorf("runAsUser %d, want the image's 65532", deref(psc.RunAsUser))
	}
	seccomp := psc.SeccompProfile
	if sc.SeccompProfile != nil {
		seccomp = sc.SeccompProfile
	}
	if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("seccompProfile %v, want RuntimeDefault", seccomp)
	}
	if !deref(sc.ReadOnlyRootFilesystem) {
		t.Error("readOnlyRootFilesystem not set")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("allowPrivilegeEscalation not false")
	}
	if sc.Privileged != nil && *sc.Privileged {
		t.Error("privileged")
	}
	if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0 {
		t.Errorf("capabilities %+v, want drop [ALL] and nothing added", sc.Capabilities)
	}
	// /tmp is writable: an emptyDir.
	i := slices.IndexFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.MountPath == "/tmp" })
	if i < 0 {
		t.Fatal("nothing mounted at /tmp")
	}
	j := slices.IndexFunc(pod.Volumes, func(v corev1.Volume) bool { return v.Name == c.VolumeMounts[i].Name })
	if j < 0 || pod.Volumes[j].EmptyDir == nil || c.VolumeMounts[i].ReadOnly {
		t.Errorf("/tmp is %+v, want a writable emptyDir", c.VolumeMounts[i])
	}
	if pod.HostNetwork || pod.HostPID || pod.HostIPC {
		t.Error("host namespaces")
	}
}

// checkSecrets: credentials come from workload identity, never the manifests.
func checkSecrets(t *testing.T, p platform, c *corev1.Container) {
	t.Helper()
	credential := regexp.MustCompile(`(?i)(secret|passw|token|credential|access_key|private_key|api_key)`)
	for _, e := range c.Env {
		if credential.MatchString(e.Name) && e.Value != "" {
			t.Errorf("env %s has a literal value", e.Name)
		}
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			ref := e.ValueFrom.SecretKeyRef
			if !slices.Contains(p.secrets, ref.Name) || !deref(ref.Optional) {
				t.Errorf("env %s from Secret %s (optional %v): not allowed here", e.Name, ref.Name, deref(ref.Optional))
			}
		}
	}
	if len(c.EnvFrom) > 0 {
		t.Error("envFrom")
	}
}

func checkServiceAccount(t *testing.T, p platform, objs *Objects, pod *corev1.PodSpec) {
	t.Helper()
	if len(objs.ServiceAccounts) != 1 {
		t.Fatalf("%d ServiceAccounts, want 1", len(objs.ServiceAccounts))
	}
	sa := &objs.ServiceAccounts[0]
	if pod.ServiceAccountName != sa.Name {
		t.Errorf("pod runs as %q, the build has ServiceAccount %q", pod.ServiceAccountName, sa.Name)
	}
	// nst never calls the Kubernetes API; IRSA and GKE Workload Identity need no API token.
	if sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken ||
		pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Error("automountServiceAccountToken not false on the ServiceAccount and the pod")
	}
	if len(sa.Annotations) != len(p.annotations) {
		t.Errorf("ServiceAccount annotations %v, want exactly %v", sa.Annotations, p.annotations)
	}
	for k, re := range p.annotations {
		if v := sa.Annotations[k]; !regexp.MustCompile(re).MatchString(v) {
			t.Errorf("ServiceAccount annotation %s=%q, want %s", k, v, re)
		}
	}
	if len(sa.Secrets) > 0 || len(sa.ImagePullSecrets) > 0 {
		t.Error("ServiceAccount names Secrets")
	}
}

func checkCronJob(t *testing.T, cj *batchv1.CronJob) {
	t.Helper()
	s := &cj.Spec
	if s.ConcurrencyPolicy != batchv1.ForbidConcurrent {
		t.Errorf("concurrencyPolicy %q, want Forbid", s.ConcurrencyPolicy)
	}
	if deref(s.TimeZone) != "Etc/UTC" {
		t.Errorf("timeZone %q, want Etc/UTC", deref(s.TimeZone))
	}
	if f := strings.Fields(s.Schedule); len(f) != 5 || f[2] != "*" || f[3] != "*" || f[4] != "*" ||
		strings.ContainsAny(f[0]+f[1], "*/,-") || strings.Contains(s.Schedule, "TZ") {
		t.Errorf("schedule %q, want once a day at a fixed time (zone in timeZone)", s.Schedule)
	}
	if d := deref(s.StartingDeadlineSeconds); d <= 0 || d > 6*3600 {
		t.Errorf("startingDeadlineSeconds %d, want set and at most a few hours", d)
	}
	if sh, fh := deref(s.SuccessfulJobsHistoryLimit), deref(s.FailedJobsHistoryLimit); sh < 1 || fh < 1 {
		t.Errorf("history limits %d/%d, want both set (>= 1) to keep logs of recent nights", sh, fh)
	}
	if deref(s.Suspend) {
		t.Error("suspended")
	}
	// A night's run ends (deadline) before the next night's is due, or Forbid skips that one.
	if d := time.Duration(deref(s.JobTemplate.Spec.ActiveDeadlineSeconds)) * time.Second; d <= 0 || d >= 24*time.Hour {
		t.Errorf("jobTemplate activeDeadlineSeconds %v, want under a day", d)
	}
	// The Job controller names a CronJob's Jobs <name>-<minutes>, within 63 characters.
	if len(cj.Name) > 52 {
		t.Errorf("CronJob name %q longer than 52 characters", cj.Name)
	}
}

// semantic returns what the API server's Job validation would reject (or what would not do
// what it says) that strict decoding cannot see. It checks the rules nst's manifests touch.
func semantic(spec *batchv1.JobSpec) []error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	pod := &spec.Template.Spec
	indexed := spec.CompletionMode != nil && *spec.CompletionMode == batchv1.IndexedCompletion
	if indexed && spec.Completions == nil {
		bad("completionMode Indexed needs completions")
	}
	if spec.Completions != nil && spec.Parallelism != nil && *spec.Parallelism > *spec.Completions {
		bad("parallelism %d > completions %d: the extra pods never start", *spec.Parallelism, *spec.Completions)
	}
	if spec.BackoffLimitPerIndex != nil {
		if !indexed {
			bad("backoffLimitPerIndex needs completionMode Indexed")
		}
		if pod.RestartPolicy != corev1.RestartPolicyNever {
			bad("backoffLimitPerIndex needs restartPolicy Never")
		}
	}
	if spec.MaxFailedIndexes != nil {
		if spec.BackoffLimitPerIndex == nil {
			bad("maxFailedIndexes needs backoffLimitPerIndex")
		}
		if spec.Completions != nil && *spec.MaxFailedIndexes > *spec.Completions {
			bad("maxFailedIndexes %d > completions %d", *spec.MaxFailedIndexes, *spec.Completions)
		}
	}
	if pfp := spec.PodFailurePolicy; pfp != nil {
		if pod.RestartPolicy != corev1.RestartPolicyNever {
			bad("podFailurePolicy needs restartPolicy Never")
		}
		if p := spec.PodReplacementPolicy; p != nil && *p != batchv1.Failed {
			bad("podFailurePolicy allows only podReplacementPolicy Failed, not %s", *p)
		}
		for i, r := range pfp.Rules {
			if (r.OnExitCodes == nil) == (len(r.OnPodConditions) == 0) {
				bad("podFailurePolicy.rules[%d]: want exactly one of onExitCodes and onPodConditions", i)
			}
			if r.Action == batchv1.PodFailurePolicyActionFailIndex && spec.BackoffLimitPerIndex == nil {
				bad("podFailurePolicy.rules[%d]: FailIndex needs backoffLimitPerIndex", i)
			}
			if on := r.OnExitCodes; on != nil {
				if on.Operator == batchv1.PodFailurePolicyOnExitCodesOpIn && slices.Contains(on.Values, 0) {
					bad("podFailurePolicy.rules[%d]: exit code 0 with operator In", i)
				}
				if on.ContainerName != nil && Container(pod, *on.ContainerName) == nil {
					bad("podFailurePolicy.rules[%d]: no container %q", i, *on.ContainerName)
				}
			}
		}
	}
	for _, c := range pod.Containers {
		defined := map[string]bool{}
		for _, e := range c.Env {
			defined[e.Name] = true
		}
		for _, a := range c.Args {
			for _, m := range varRef.FindAllStringSubmatch(a, -1) {
				if !defined[m[1]] {
					bad("container %s: args use $(%s), which is not in env (the kubelet would pass it literally)", c.Name, m[1])
				}
			}
		}
		for _, e := range c.Env {
			if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && !envFieldPath.MatchString(e.ValueFrom.FieldRef.FieldPath) {
				bad("container %s: env %s from %q, which the downward API does not offer", c.Name, e.Name, e.ValueFrom.FieldRef.FieldPath)
			}
		}
		for name, q := range c.Resources.Requests {
			if l, ok := c.Resources.Limits[name]; ok && l.Cmp(q) < 0 {
				bad("container %s: %s limit %s below its request %s", c.Name, name, l.String(), q.String())
			}
		}
		if gpu, ok := c.Resources.Requests["nvidia.com/gpu"]; ok && !gpu.Equal(c.Resources.Limits["nvidia.com/gpu"]) {
			bad("container %s: nvidia.com/gpu request differs from its limit", c.Name)
		}
	}
	return errs
}

// TestSemantic shows that semantic catches what it claims to, one broken copy of the base
// Job at a time.
func TestSemantic(t *testing.T) {
	objs, err := Build("base")
	if err != nil {
		t.Fatal(err)
	}
	if errs := semantic(&objs.Jobs[0].Spec); len(errs) > 0 {
		t.Fatalf("the base Job is not clean: %v", errors.Join(errs...))
	}
	cases := []struct {
		name   string
		mutate func(s *batchv1.JobSpec)
		want   string
	}{
		{"NonIndexed with backoffLimitPerIndex", func(s *batchv1.JobSpec) { s.CompletionMode = ptr(batchv1.NonIndexedCompletion) }, "backoffLimitPerIndex needs completionMode Indexed"},
		{"OnFailure with podFailurePolicy", func(s *batchv1.JobSpec) { s.Template.Spec.RestartPolicy = corev1.RestartPolicyOnFailure }, "podFailurePolicy needs restartPolicy Never"},
		{"maxFailedIndexes alone", func(s *batchv1.JobSpec) { s.BackoffLimitPerIndex = nil }, "maxFailedIndexes needs backoffLimitPerIndex"},
		{"maxFailedIndexes above completions", func(s *batchv1.JobSpec) { s.MaxFailedIndexes = ptr(int32(9)) }, "maxFailedIndexes 9 > completions"},
		{"TerminatingOrFailed with podFailurePolicy", func(s *batchv1.JobSpec) { s.PodReplacementPolicy = ptr(batchv1.TerminatingOrFailed) }, "only podReplacementPolicy Failed"},
		{"rule for a missing container", func(s *batchv1.JobSpec) { s.PodFailurePolicy.Rules[1].OnExitCodes.ContainerName = ptr("nts") }, `no container "nts"`},
		{"exit 0 In", func(s *batchv1.JobSpec) { s.PodFailurePolicy.Rules[1].OnExitCodes.Values = []int32{0, 2} }, "exit code 0"},
		{"args use an undefined variable", func(s *batchv1.JobSpec) { s.Template.Spec.Containers[0].Args[2] = "$(NST_MANIFST)" }, "$(NST_MANIFST)"},
		{"unsupported fieldRef", func(s *batchv1.JobSpec) {
			s.Template.Spec.Containers[0].Env = append(s.Template.Spec.Containers[0].Env, corev1.EnvVar{Name: "X", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.ownerReferences[0].name"}}})
		}, "downward API does not offer"},
		{"limit below request", func(s *batchv1.JobSpec) {
			s.Template.Spec.Containers[0].Resources.Limits[corev1.ResourceMemory] = resource.MustParse("1Gi")
		}, "memory limit 1Gi below"},
		{"parallelism above completions", func(s *batchv1.JobSpec) { s.Parallelism = ptr(int32(5)) }, "parallelism 5 > completions 4"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			objs, err := Build("base")
			if err != nil {
				t.Fatal(err)
			}
			spec := &objs.Jobs[0].Spec
			c.mutate(spec)
			err = errors.Join(semantic(spec)...)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("got %v, want an error containing %q", err, c.want)
			}
		})
	}
}

// TestBuildStrict shows that Build rejects what kustomize itself passes through: a misspelt
// field, a field at the wrong level, a wrong type, and kinds it does not know.
func TestBuildStrict(t *testing.T) {
	job := func(extra string) string {
		return `apiVersion: batch/v1
kind: Job
metadata:
  name: x
spec:
  completionMode: Indexed
  completions: 1
` + extra + `  template:
    spec:
      restartPolicy: Never
      containers: [{name: nst, image: nst}]
`
	}
	cases := []struct {
		name, resource, want string
	}{
		{"valid", job(""), ""},
		{"misspelt field", job("  backofLimitPerIndex: 2\n"), "backofLimitPerIndex"},
		{"field at the wrong level", job("  terminationGracePeriodSeconds: 60\n"), "terminationGracePeriodSeconds"},
		{"wrong type", job("  parallelism: four\n"), "parallelism"},
		{"unknown kind", "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\n", "unexpected resource"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			write(t, filepath.Join(dir, "kustomization.yaml"), "resources: [r.yaml]\n")
			write(t, filepath.Join(dir, "r.yaml"), c.resource)
			_, err := Build(dir)
			switch {
			case c.want == "" && err != nil:
				t.Fatal(err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("got %v, want an error naming %q", err, c.want)
			}
		})
	}
}

func TestInvocation(t *testing.T) {
	objs, err := Build("overlays/aws")
	if err != nil {
		t.Fatal(err)
	}
	inv, err := objs.Invocation(&objs.Jobs[0].Spec.Template.Spec, "nst")
	if err != nil {
		t.Fatal(err)
	}
	cm := objs.ConfigMap("nst-config")
	if cm == nil || cm.Name == "nst-config" {
		t.Fatalf("ConfigMap nst-config (with its hash suffix) not found: %v", objs.ConfigMaps)
	}
	want := []string{"run", "--manifest", cm.Data["manifest-url"]}
	if !slices.Equal(inv.Args, want) {
		t.Errorf("args %q, want %q", inv.Args, want)
	}
	if inv.Env["shard-count"] != "4" || inv.Other["AWS_REGION"] == "" || inv.Env["log-format"] != "json" {
		t.Errorf("env %v / %v", inv.Env, inv.Other)
	}
	if _, err := objs.Invocation(&objs.Jobs[0].Spec.Template.Spec, "sidecar"); err == nil {
		t.Error("no error for a missing container")
	}
	if got := expand("a$(X)b$(Y)$(X)", map[string]string{"X": "1"}); got != "a1b$(Y)1" {
		t.Errorf("expand: %q", got)
	}
}

// TestOverlaysOnlyDiffer checks that the overlays change what they are for and nothing else
// of the base's failure handling and security.
func TestOverlaysOnlyDiffer(t *testing.T) {
	base, err := Build("base")
	if err != nil {
		t.Fatal(err)
	}
	b := &base.Jobs[0].Spec
	for _, dir := range []string{"overlays/aws", "overlays/gcp", "overlays/cpu"} {
		o, err := Build(dir)
		if err != nil {
			t.Fatal(err)
		}
		s := &o.Jobs[0].Spec
		if fmt.Sprint(s.PodFailurePolicy) != fmt.Sprint(b.PodFailurePolicy) ||
			fmt.Sprint(s.Template.Spec.SecurityContext) != fmt.Sprint(b.Template.Spec.SecurityContext) ||
			fmt.Sprint(s.Template.Spec.Containers[0].SecurityContext) != fmt.Sprint(b.Template.Spec.Containers[0].SecurityContext) {
			t.Errorf("%s changes the base's podFailurePolicy or securityContext", dir)
		}
	}
}

func flagValue(args []string, name string) string {
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v
		}
		if a == "--"+name && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

func write(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

func ptr[T any](v T) *T { return &v }
