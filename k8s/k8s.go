// Package k8s holds nst's Kubernetes manifests (a kustomize base, a nightly CronJob component
// and cloud overlays in the directories beside this file) and the code to build them without a
// cluster: Build runs kustomize's Go API, as `kubectl kustomize` does, and decodes every
// resource strictly into the k8s.io/api types, so a misspelt or misplaced field is an error
// rather than something the API server would silently drop.
//
// Build only decodes; semantic rules that strict decoding cannot see (such as
// backoffLimitPerIndex needing completionMode: Indexed) are checked by this package's tests.
// Invocation gives the nst command line a pod template amounts to, for tests of the flag set
// (cmd/nst owns the flags).
package k8s

import (
	"fmt"
	"regexp"
	"strings"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// Kustomizations are the directories, relative to this package's, that build something to
// apply: the base, the base as a nightly CronJob, and one overlay per platform.
var Kustomizations = []string{"base", "nightly", "overlays/aws", "overlays/gcp", "overlays/cpu"}

// Objects are the resources one kustomization builds, by kind, in kustomize's output order.
type Objects struct {
	Jobs            []batchv1.Job
	CronJobs        []batchv1.CronJob
	ServiceAccounts []corev1.ServiceAccount
	ConfigMaps      []corev1.ConfigMap
}

// Build runs kustomize on the kustomization in dir (a directory on disk, such as "k8s/base" or
// "k8s/overlays/aws") with kustomize's default options, and decodes each resource strictly:
// unknown or misspelt fields, duplicate keys and wrong types are errors. A kind other than
// batch/v1 Job and CronJob, v1 ServiceAccount and ConfigMap is an error too, so nothing the
// tests do not look at can slip into a build.
func Build(dir string) (*Objects, error) {
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize %s: %w", dir, err)
	}
	var objs Objects
	for _, r := range m.Resources() {
		data, err := r.AsYAML()
		if err != nil {
			return nil, fmt.Errorf("kustomize %s: %s: %w", dir, r.CurId(), err)
		}
		gvk := r.GetGvk()
		var into any
		switch gvk.ApiVersion() + " " + gvk.Kind {
		case "batch/v1 Job":
			objs.Jobs = append(objs.Jobs, batchv1.Job{})
			into = &objs.Jobs[len(objs.Jobs)-1]
		case "batch/v1 CronJob":
			objs.CronJobs = append(objs.CronJobs, batchv1.CronJob{})
			into = &objs.CronJobs[len(objs.CronJobs)-1]
		case "v1 ServiceAccount":
			objs.ServiceAccounts = append(objs.ServiceAccounts, corev1.ServiceAccount{})
			into = &objs.ServiceAccounts[len(objs.ServiceAccounts)-1]
		case "v1 ConfigMap":
			objs.ConfigMaps = append(objs.ConfigMaps, corev1.ConfigMap{})
			into = &objs.ConfigMaps[len(objs.ConfigMaps)-1]
		default:
			return nil, fmt.Errorf("kustomize %s: unexpected resource %s", dir, r.CurId())
		}
		if err := yaml.UnmarshalStrict(data, into); err != nil {
			return nil, fmt.Errorf("kustomize %s: %s: %w", dir, r.CurId(), err)
		}
	}
	return &objs, nil
}

// ConfigMap returns the built ConfigMap whose name is name, or whose name is name plus the
// content-hash suffix that kustomize's configMapGenerator adds ("nst-config" finds
// "nst-config-5f8tk2m9h7"); nil if there is none.
func (o *Objects) ConfigMap(name string) *corev1.ConfigMap {
	hashed := regexp.MustCompile(`^` + regexp.QuoteMeta(name) + `-[a-z0-9]{10}$`)
	for i := range o.ConfigMaps {
		if n := o.ConfigMaps[i].Name; n == name || hashed.MatchString(n) {
			return &o.ConfigMaps[i]
		}
	}
	return nil
}

// PodSpecs returns the pod template of every Job and CronJob in o, by "Job/<name>" and
// "CronJob/<name>".
func (o *Objects) PodSpecs() map[string]*corev1.PodSpec {
	specs := map[string]*corev1.PodSpec{}
	for i := range o.Jobs {
		specs["Job/"+o.Jobs[i].Name] = &o.Jobs[i].Spec.Template.Spec
	}
	for i := range o.CronJobs {
		specs["CronJob/"+o.CronJobs[i].Name] = &o.CronJobs[i].Spec.JobTemplate.Spec.Template.Spec
	}
	return specs
}

// Container returns the container named name in spec, or nil.
func Container(spec *corev1.PodSpec, name string) *corev1.Container {
	for i := range spec.Containers {
		if spec.Containers[i].Name == name {
			return &spec.Containers[i]
		}
	}
	return nil
}

// Invocation is the nst command line a container amounts to: what a cmd/nst test can feed to
// the real flag set.
type Invocation struct {
	// Args are the container's args (the image's ENTRYPOINT is nst, so Args[0] is the
	// subcommand), with $(VAR) references expanded from Env as the kubelet would.
	Args []string
	// Env holds the container's NST_* variables by the flag each sets: NST_SHARD_COUNT is
	// "shard-count". A literal value is kept as is; a value from a ConfigMap in the same build
	// is resolved; a downward-API value reads "$(fieldRef:<fieldPath>)" and one from a Secret
	// "$(secretKeyRef:<name>/<key>)", both known only in a pod.
	Env map[string]string
	// Other holds the container's other variables (AWS_REGION, GOTCH_CACHE, ...) in the same
	// form.
	Other map[string]string
}

// Invocation returns the command line of the container named name in spec, resolving
// ConfigMap references against o. It fails when the container is missing, uses envFrom (whose
// variables cannot be listed without the cluster), or refers to a ConfigMap or key not in o.
func (o *Objects) Invocation(spec *corev1.PodSpec, name string) (*Invocation, error) {
	c := Container(spec, name)
	if c == nil {
		return nil, fmt.Errorf("no container %q", name)
	}
	if len(c.EnvFrom) > 0 {
		return nil, fmt.Errorf("container %q: envFrom is not supported; name each variable", name)
	}
	inv := &Invocation{Env: map[string]string{}, Other: map[string]string{}}
	vars := map[string]string{}
	for _, e := range c.Env {
		v := e.Value
		switch src := e.ValueFrom; {
		case src == nil:
		case src.ConfigMapKeyRef != nil:
			ref := src.ConfigMapKeyRef
			cm := o.ConfigMap(ref.Name)
			if cm == nil {
				return nil, fmt.Errorf("env %s: no ConfigMap %q in the build", e.Name, ref.Name)
			}
			var ok bool
			if v, ok = cm.Data[ref.Key]; !ok {
				return nil, fmt.Errorf("env %s: ConfigMap %s has no key %q", e.Name, cm.Name, ref.Key)
			}
		case src.FieldRef != nil:
			v = "$(fieldRef:" + src.FieldRef.FieldPath + ")"
		case src.SecretKeyRef != nil:
			v = "$(secretKeyRef:" + src.SecretKeyRef.Name + "/" + src.SecretKeyRef.Key + ")"
		default:
			return nil, fmt.Errorf("env %s: only literal, ConfigMap, Secret and fieldRef values are supported", e.Name)
		}
		vars[e.Name] = v
		if flag, ok := strings.CutPrefix(e.Name, "NST_"); ok {
			inv.Env[strings.ReplaceAll(strings.ToLower(flag), "_", "-")] = v
		} else {
			inv.Other[e.Name] = v
		}
	}
	for _, a := range c.Args {
		inv.Args = append(inv.Args, expand(a, vars))
	}
	return inv, nil
}

var varRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)`)

// expand replaces $(NAME) with vars[NAME] where NAME is defined, as the kubelet does for args.
// (The kubelet also turns $$ into $; none of nst's manifests need it.)
func expand(s string, vars map[string]string) string {
	return varRef.ReplaceAllStringFunc(s, func(m string) string {
		if v, ok := vars[m[2:len(m)-1]]; ok {
			return v
		}
		return m
	})
}
