package transfer

import (
	"encoding/json"
	"os"
	"reflect"
	"regexp"
	"testing"
)

// TestSchedulesMatchTheGPUBenchmark: bench/ttq_torch.py times nst's named schedules in
// PyTorch on machines where nst cannot run (bench/gpu.sh); its copy of each schedule's
// settings must be the one nst runs.
func TestSchedulesMatchTheGPUBenchmark(t *testing.T) {
	src, err := os.ReadFile("../bench/ttq_torch.py")
	if err != nil {
		t.Fatal(err)
	}
	line := regexp.MustCompile(`(?m)^\s*"([a-z]+)": json\.loads\('(\{.*\})'\),\s*# schedule ([a-z]+)$`)
	found := map[string]bool{}
	for _, m := range line.FindAllStringSubmatch(string(src), -1) {
		name := m[1]
		found[name] = true
		s, ok := LookupSchedule(name)
		if !ok {
			t.Errorf("bench/ttq_torch.py has a schedule %q that nst does not", name)
			continue
		}
		var got map[string]any
		if err := json.Unmarshal([]byte(m[2]), &got); err != nil {
			t.Fatalf("schedule %s in bench/ttq_torch.py: %v", name, err)
		}
		p := DefaultParams()
		s.Apply(&p)
		b, _ := json.Marshal(p)
		var all map[string]any
		_ = json.Unmarshal(b, &all)
		want := map[string]any{}
		for _, f := range s.Fields() {
			if v, ok := all[f]; ok {
				want[f] = v
			}
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("schedule %s: bench/ttq_torch.py has %v, nst %v", name, got, want)
		}
	}
	for _, s := range Schedules() {
		if s.Name != "seed" && !found[s.Name] {
			t.Errorf("schedule %s is missing from bench/ttq_torch.py's SCHEDULES", s.Name)
		}
	}
}
