package transfer

import "slices"

// A Schedule is a named set of optimisation settings that users pick instead of setting each
// one: the optimiser and its settings, the pyramid and the steps at each of its levels, and
// when to stop. Choosing one sets those Params fields (Apply) and records the name in
// Params.Schedule; settings given explicitly afterwards override the schedule's.
type Schedule struct {
	Name string
	// Summary is one line for --help and the docs.
	Summary string
	apply   func(*Params)
}

// Fields are the JSON names of the Params fields Apply sets: the same for every schedule, so
// that choosing one never leaves part of another's settings behind.
func (s Schedule) Fields() []string { return slices.Clone(scheduleFields) }

// Apply sets s's fields on p and records s.Name in p.Schedule.
func (s Schedule) Apply(p *Params) {
	s.apply(p)
	p.Schedule = s.Name
}

// scheduleFields are the fields every schedule sets (Schedule.Fields).
var scheduleFields = []string{"optimizer", "lr", "history", "firstStep", "steps", "scales", "scaleSteps", "stopTolerance", "stopWindow"}

// schedules are the named schedules, the seed's first.
var schedules = []Schedule{
	{
		Name:    "seed",
		Summary: "the seed's maths: Adam, lr 0.003, one scale, every step run (the default)",
		apply: func(p *Params) {
			d := DefaultParams()
			p.Optimizer, p.LR, p.History, p.FirstStep, p.Steps = d.Optimizer, d.LR, d.History, d.FirstStep, d.Steps
			p.Scales, p.ScaleSteps, p.StopTolerance, p.StopWindow = d.Scales, nil, 0, 0
		},
	},
	// fast is the best fp32 candidate of the time-to-quality benchmark at 512 px
	// (docs/BENCHMARKS.md section 2: the seed's 2000-step Adam loss 119-126x sooner in three
	// runs, where the same runs gave L-BFGS-B's first step at every scale 105-109x), capped:
	// 10 L-BFGS steps at half size, then up to 100 at full size, ended sooner when the loss
	// stops falling. The half-size scale starts with L-BFGS-B's first step, the full-size one from the
	// scaling the half-size one ended with (FirstStepCarry), which saves ~2 evaluations there.
	{
		Name: "fast",
		Summary: "L-BFGS (history 50), coarse to fine: 10 steps at half size, then up to 100 at full size, each scale ended when the loss " +
			"falls less than 0.1% over 10 steps; the full-size scale starts from the half-size one's scaling (firstStep carry)",
		apply: func(p *Params) {
			p.Optimizer, p.LR, p.History, p.FirstStep, p.Steps = LBFGS, 1, 50, FirstStepCarry, 100
			p.Scales, p.ScaleSteps = 2, []int{10}
			p.StopTolerance, p.StopWindow = 1e-3, 10
		},
	},
}

// Schedules returns the named schedules, the seed's first.
func Schedules() []Schedule { return slices.Clone(schedules) }

// ScheduleNames returns the names of Schedules, in order.
func ScheduleNames() []string {
	names := make([]string, len(schedules))
	for i, s := range schedules {
		names[i] = s.Name
	}
	return names
}

// LookupSchedule returns the schedule called name.
func LookupSchedule(name string) (Schedule, bool) {
	for _, s := range schedules {
		if s.Name == name {
			return s, true
		}
	}
	return Schedule{}, false
}
