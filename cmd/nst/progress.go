package main

import (
	"strconv"

	"github.com/schollz/progressbar/v3"

	"github.com/nst-project/nst/transfer"
)

// stepProgress shows an optimisation's progress: a bar with ETA on a terminal, a log line per
// tenth of the run otherwise.
type stepProgress struct {
	e     *env
	total int
	bar   *progressbar.ProgressBar
	next  int
}

func newStepProgress(e *env, total int) *stepProgress {
	p := &stepProgress{e: e, total: total}
	if e.tty && !e.quiet {
		p.bar = progressbar.NewOptions(total,
			progressbar.OptionSetWriter(e.stderr),
			progressbar.OptionSetDescription("stylize"),
			progressbar.OptionShowCount(),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionShowElapsedTimeOnFinish(),
			progressbar.OptionClearOnFinish(),
		)
	}
	return p
}

func (p *stepProgress) step(s transfer.Step) {
	if p.bar != nil {
		p.bar.Describe(formatLoss(s.TotalLoss))
		_ = p.bar.Set(s.Step)
		return
	}
	if s.Step >= p.next {
		p.e.logger.Info("step", "step", s.Step, "of", p.total, "total_loss", s.TotalLoss,
			"content_loss", s.ContentLoss, "style_loss", s.StyleLoss, "elapsed_s", s.ElapsedS)
		p.next = s.Step + max(1, p.total/10)
	}
}

func (p *stepProgress) done() {
	if p.bar != nil {
		_ = p.bar.Finish()
	}
}

func formatLoss(v float64) string {
	return "loss " + strconv.FormatFloat(v, 'g', 4, 64)
}
