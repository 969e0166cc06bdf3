// Package validate runs kube-apiserver's own create path over nst's Kubernetes manifests,
// offline: the objects every kustomize tree under k8s/ renders are decoded, defaulted and
// validated by the code of k8s.io/kubernetes at the version this module pins, exactly as the
// API server does on `kubectl apply` of a new object:
//
//  1. strict decoding of the JSON body (unknown and duplicate fields are errors, as with
//     kubectl's default --validate=strict), through the server's codec factory into the
//     internal type, which runs the registered defaulting functions and the conversion from
//     the served version;
//  2. the create handler's and the generic store's metadata steps (rest.WipeObjectMetaSystemFields,
//     rest.FillObjectMetaSystemFields);
//  3. rest.BeforeCreate with the resource's registry strategy (pkg/registry/batch/job,
//     .../batch/cronjob, .../core/serviceaccount, .../core/configmap): PrepareForCreate, the
//     hand-written and declarative validation, object-meta validation, the create warnings and
//     Canonicalize.
//
// Admission (quota, policies, webhooks such as EKS's pod identity webhook) and the cluster's
// feature-gate settings are not covered: the feature gates are k8s.io/kubernetes's defaults for
// this version. It lives in a module of its own so that nst's go.mod does not carry
// k8s.io/kubernetes.
package validate

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	_ "time/tzdata" // CronJob timeZone: kube-apiserver embeds the zone database too (cmd/kube-apiserver)

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/registry/rest"
	"k8s.io/apiserver/pkg/warning"
	"k8s.io/kubernetes/pkg/api/legacyscheme"
	"k8s.io/kubernetes/pkg/apis/batch"
	_ "k8s.io/kubernetes/pkg/apis/batch/install" // batch/v1 into legacyscheme: types, defaults, conversions
	api "k8s.io/kubernetes/pkg/apis/core"
	_ "k8s.io/kubernetes/pkg/apis/core/install" // v1 likewise
	"k8s.io/kubernetes/pkg/registry/batch/cronjob"
	"k8s.io/kubernetes/pkg/registry/batch/job"
	"k8s.io/kubernetes/pkg/registry/core/configmap"
	"k8s.io/kubernetes/pkg/registry/core/serviceaccount"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// Namespace is the namespace the objects are created in (docs/kubernetes.md applies them with
// -n nst); the trees set none, so the server takes the request's.
const Namespace = "nst"

// resource is what the server knows about one served kind: its REST resource name, its
// registry strategy and the internal object the store decodes into.
type resource struct {
	name     string
	strategy rest.RESTCreateStrategy
	new      func() runtime.Object
}

// served are the group/version/kinds nst's trees may contain, each as the API server serves
// it. A kind that is missing here is an error, not a skipped check: wire its strategy first.
// Keyed by the full GVK, so a version the server no longer serves (batch/v1beta1 CronJob) is
// refused too.
var served = map[schema.GroupVersionKind]resource{
	{Group: "batch", Version: "v1", Kind: "Job"}:       {"jobs", job.Strategy, func() runtime.Object { return &batch.Job{} }},
	{Group: "batch", Version: "v1", Kind: "CronJob"}:   {"cronjobs", cronjob.Strategy, func() runtime.Object { return &batch.CronJob{} }},
	{Group: "", Version: "v1", Kind: "ServiceAccount"}: {"serviceaccounts", serviceaccount.Strategy, func() runtime.Object { return &api.ServiceAccount{} }},
	{Group: "", Version: "v1", Kind: "ConfigMap"}:      {"configmaps", configmap.Strategy, func() runtime.Object { return &api.ConfigMap{} }},
}

// Object is one rendered resource.
type Object struct {
	// ID names it in messages: "batch/v1 Job nst".
	ID   string
	GVK  schema.GroupVersionKind
	JSON []byte
}

// Result is what the create path made of one object.
type Result struct {
	// Object is the internal object after defaulting and BeforeCreate, as the server would
	// store it (before conversion back to the storage version).
	Object runtime.Object
	// Warnings are what the server would send back in Warning headers (kubectl prints them).
	Warnings []string
}

// Create runs the API server's create path on obj in namespace ns. The error is the server's
// own (an *errors.StatusError for validation, a strict-decoding error for unknown fields) with
// the object's ID in front.
func Create(ctx context.Context, ns string, obj Object) (*Result, error) {
	res, ok := served[obj.GVK]
	if !ok {
		return nil, fmt.Errorf("%s: no API-server strategy is wired for %s in k8s/validate (served: %s)", obj.ID, obj.GVK, servedList())
	}
	// The create handler: negotiate the JSON serializer, use its strict variant (the
	// fieldValidation=Strict that kubectl sends), decode into the hub (internal) version.
	info, ok := runtime.SerializerInfoForMediaType(legacyscheme.Codecs.SupportedMediaTypes(), runtime.ContentTypeJSON)
	if !ok || info.StrictSerializer == nil {
		return nil, errors.New("legacyscheme has no strict JSON serializer")
	}
	hub := schema.GroupVersion{Group: obj.GVK.Group, Version: runtime.APIVersionInternal}
	decoder := legacyscheme.Codecs.DecoderToVersion(info.StrictSerializer, hub)
	defaultGVK := obj.GVK
	out, _, err := decoder.Decode(obj.JSON, &defaultGVK, res.new())
	if err != nil {
		return nil, fmt.Errorf("%s: decode: %w", obj.ID, err)
	}
	accessor, err := meta.Accessor(out)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", obj.ID, err)
	}
	rest.WipeObjectMetaSystemFields(accessor)
	// The generic store's create.
	rest.FillObjectMetaSystemFields(accessor)
	if accessor.GetGenerateName() != "" && accessor.GetName() == "" {
		accessor.SetName(res.strategy.GenerateName(accessor.GetGenerateName()))
	}
	// What the request filters put in the context of POST /apis/<group>/<version>/namespaces/<ns>/<resource>
	// (/api/v1/... for the core group); declarative validation reads it.
	prefix := "apis"
	if obj.GVK.Group == "" {
		prefix = "api"
	}
	ctx = genericapirequest.WithRequestInfo(genericapirequest.WithNamespace(ctx, ns), &genericapirequest.RequestInfo{
		IsResourceRequest: true,
		Verb:              "create",
		APIPrefix:         prefix,
		APIGroup:          obj.GVK.Group,
		APIVersion:        obj.GVK.Version,
		Namespace:         ns,
		Resource:          res.name,
	})
	rec := &warnings{}
	ctx = warning.WithWarningRecorder(ctx, rec)
	if err := rest.BeforeCreate(res.strategy, ctx, out); err != nil {
		return nil, fmt.Errorf("%s: %w", obj.ID, err)
	}
	return &Result{Object: out, Warnings: rec.list()}, nil
}

func servedList() string {
	var s []string
	for gvk := range served {
		s = append(s, gvk.GroupVersion().String()+" "+gvk.Kind)
	}
	slices.Sort(s)
	return strings.Join(s, ", ")
}

// warnings records the warnings a strategy adds, as the server's handler chain does.
type warnings struct {
	mu   sync.Mutex
	msgs []string
}

func (w *warnings) AddWarning(agent, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.msgs = append(w.msgs, text)
}

func (w *warnings) list() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.msgs)
}

// Render builds the kustomization in dir with kustomize's default options, as
// `kubectl kustomize` does (the same API and options as k8s/k8s.go's Build, which also decodes
// strictly into k8s.io/api types), and returns each resource as the JSON kubectl would send.
func Render(dir string) ([]Object, error) {
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize %s: %w", dir, err)
	}
	var objs []Object
	for _, r := range m.Resources() {
		data, err := r.MarshalJSON()
		if err != nil {
			return nil, fmt.Errorf("kustomize %s: %s: %w", dir, r.CurId(), err)
		}
		gvk := r.GetGvk()
		objs = append(objs, Object{
			ID:   fmt.Sprintf("%s %s %s", gvk.ApiVersion(), gvk.Kind, r.GetName()),
			GVK:  schema.GroupVersionKind{Group: gvk.Group, Version: gvk.Version, Kind: gvk.Kind},
			JSON: data,
		})
	}
	return objs, nil
}

// Trees returns every directory under root (relative to it, slash-separated, sorted) holding
// a kustomization that builds something to apply: kustomization.yaml, .yml or Kustomization,
// except kind: Component (a component only builds as part of another tree). Directories named
// testdata and hidden ones are skipped.
func Trees(root string) ([]string, error) {
	var dirs []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != root && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) {
				return filepath.SkipDir
			}
			return nil
		}
		if !slices.Contains([]string{"kustomization.yaml", "kustomization.yml", "Kustomization"}, d.Name()) {
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
		if head.Kind == "Component" {
			return nil
		}
		rel, err := filepath.Rel(root, filepath.Dir(path))
		if err != nil {
			return err
		}
		dirs = append(dirs, filepath.ToSlash(rel))
		return nil
	})
	slices.Sort(dirs)
	return dirs, err
}
