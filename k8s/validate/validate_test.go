package validate

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/kubernetes/pkg/apis/batch"
	api "k8s.io/kubernetes/pkg/apis/core"
)

// root is the k8s/ directory: every kustomize tree under it is checked.
const root = ".."

// problems renders the tree in dir and runs the API server's create path on each object. It
// returns one line per thing the server would refuse ("<object>: <field>: <message>", one per
// cause of an Invalid error) or warn about ("<object>: warning: <text>"), in the server's order,
// and the created objects by ID.
func problems(t *testing.T, dir string) ([]string, map[string]runtime.Object) {
	t.Helper()
	objs, err := Render(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) == 0 {
		t.Fatalf("%s renders nothing", dir)
	}
	var out []string
	created := map[string]runtime.Object{}
	for _, o := range objs {
		res, err := Create(t.Context(), Namespace, o)
		var status *apierrors.StatusError
		switch {
		case err == nil:
			created[o.ID] = res.Object
			for _, w := range res.Warnings {
				out = append(out, fmt.Sprintf("%s: warning: %s", o.ID, w))
			}
		case errors.As(err, &status) && status.ErrStatus.Details != nil && len(status.ErrStatus.Details.Causes) > 0:
			for _, c := range status.ErrStatus.Details.Causes {
				out = append(out, fmt.Sprintf("%s: %s: %s", o.ID, c.Field, c.Message))
			}
		default:
			out = append(out, err.Error())
		}
	}
	return out, created
}

// TestTrees runs the API server's create path on every object of every tree under k8s/.
// Warnings fail too: kubectl prints them on every apply.
func TestTrees(t *testing.T) {
	trees, err := Trees(root)
	if err != nil {
		t.Fatal(err)
	}
	// A floor, not the list: trees added later are found and checked without editing this.
	for _, want := range []string{"base", "nightly", "overlays/aws", "overlays/cpu", "overlays/gcp"} {
		if !slices.Contains(trees, want) {
			t.Errorf("tree k8s/%s not discovered (found %q)", want, trees)
		}
	}
	for _, dir := range trees {
		t.Run(dir, func(t *testing.T) {
			probs, created := problems(t, root+"/"+dir)
			for _, p := range probs {
				t.Error(p)
			}
			for id, obj := range created {
				checkCreated(t, id, obj)
			}
			t.Logf("%d objects pass the create path", len(created))
		})
	}
}

// checkCreated checks that defaulting and PrepareForCreate did run on a Job's pod template
// (a decode alone would leave these empty), so a pass means the server's code saw the object.
func checkCreated(t *testing.T, id string, obj runtime.Object) {
	t.Helper()
	var spec *batch.JobSpec
	switch x := obj.(type) {
	case *batch.Job:
		spec = &x.Spec
		if x.UID == "" || x.Spec.Selector == nil || x.Spec.Template.Labels[batch.ControllerUidLabel] != string(x.UID) {
			t.Errorf("%s: PrepareForCreate did not generate the selector: %v", id, x.Spec.Selector)
		}
		if x.Spec.Suspend == nil {
			t.Errorf("%s: spec.suspend not defaulted", id)
		}
	case *batch.CronJob:
		spec = &x.Spec.JobTemplate.Spec
	default:
		return
	}
	for _, c := range spec.Template.Spec.Containers {
		if c.ImagePullPolicy == "" || c.TerminationMessagePolicy == "" {
			t.Errorf("%s: container %s was not defaulted (imagePullPolicy %q, terminationMessagePolicy %q)", id, c.Name, c.ImagePullPolicy, c.TerminationMessagePolicy)
		}
	}
	if spec.Template.Spec.DNSPolicy != api.DNSClusterFirst {
		t.Errorf("%s: pod spec not defaulted (dnsPolicy %q)", id, spec.Template.Spec.DNSPolicy)
	}
}

// TestRejects shows that the tree check can fail: broken copies of the trees (testdata/) give
// exactly the API server's own messages, and only for the broken object.
func TestRejects(t *testing.T) {
	cases := []struct {
		dir  string
		want []string
	}{
		{"onfailure-with-podfailurepolicy", []string{
			`batch/v1 Job nst: spec.template.spec.restartPolicy: Invalid value: "OnFailure": only "Never" is supported when podFailurePolicy is specified`,
		}},
		{"perindex-without-indexed", []string{
			`batch/v1 Job nst: spec.backoffLimitPerIndex: Invalid value: 2: requires indexed completion mode`,
			`batch/v1 Job nst: spec.maxFailedIndexes: Invalid value: 2: requires indexed completion mode`,
		}},
		{"misspelt-field", []string{
			`batch/v1 Job nst: decode: strict decoding error: unknown field "spec.backofLimitPerIndex"`,
		}},
		{"unknown-time-zone", []string{
			`batch/v1 CronJob nst-nightly: spec.timeZone: Invalid value: "Mars/Olympus": unknown time zone Mars/Olympus`,
		}},
		{"indexed-name-too-long", []string{
			`batch/v1 Job nst-catalogue-2026-11-restyle-with-the-new-presets-and-weights: metadata.name: Invalid value: "nst-catalogue-2026-11-restyle-with-the-new-presets-and-weights": will not able to create pod with invalid DNS label: nst-catalogue-2026-11-restyle-with-the-new-presets-and-weights-3`,
		}},
		{"deprecated-node-label", []string{
			`batch/v1 Job nst: warning: spec.template.spec.nodeSelector[beta.kubernetes.io/arch]: deprecated since v1.14; use "kubernetes.io/arch" instead`,
		}},
	}
	for _, c := range cases {
		t.Run(c.dir, func(t *testing.T) {
			got, _ := problems(t, "testdata/"+c.dir)
			if !slices.Equal(got, c.want) {
				t.Errorf("the server says\n %s\nwant\n %s", strings.Join(got, "\n "), strings.Join(c.want, "\n "))
			}
		})
	}
}

// TestUnservedKind shows that an object whose kind (or version) has no strategy wired here is
// an error, never silently passed: batch/v1beta1 CronJob is no longer served.
func TestUnservedKind(t *testing.T) {
	for _, gvk := range []schema.GroupVersionKind{
		{Group: "batch", Version: "v1beta1", Kind: "CronJob"},
		{Group: "", Version: "v1", Kind: "Secret"},
	} {
		_, err := Create(t.Context(), Namespace, Object{ID: gvk.Kind + " x", GVK: gvk, JSON: []byte(`{}`)})
		if err == nil || !strings.Contains(err.Error(), "no API-server strategy is wired for") {
			t.Errorf("%s: %v, want refused as not wired", gvk, err)
		}
	}
}
