package torch

import (
	"context"
	"errors"
	"image"
	"testing"

	"github.com/nst-project/nst/transfer"
)

// TestResumeFromPeriodicCheckpoint is the torch engine's side of a SIGKILL: checkpoints every 5
// steps, the run stopped at step 8 with the checkpoint it takes on the way out thrown away (a
// killed process writes none), and a new run resumed from the last periodic one (step 5). With
// Adam the resumed run computes only steps 6-12, and its every step (content, style and total loss) and its image equal the
// uninterrupted run's bit for bit; only elapsed_s differs. (pipeline's
// TestKillLosesOnlyStepsSinceCheckpoint shows the same through the pipeline with the Fake engine,
// cmd/nst's TestFanout a real SIGKILL of the nst binary.)
func TestResumeFromPeriodicCheckpoint(t *testing.T) {
	e := narrowEngine(t, "vgg19-narrow.pth")
	p := smallParams(12)
	full, err := stylize(t, e, transfer.Request{Params: p})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var periodic *transfer.Checkpoint
	_, err = e.Stylize(ctx, transfer.Request{
		Content: loadPNG(t, "content.png"), Styles: []image.Image{loadPNG(t, "style.png")}, Params: p,
		CheckpointEvery: 5,
		OnStep: func(s transfer.Step) error {
			if s.Step == 8 {
				cancel()
			}
			return nil
		},
		OnCheckpoint: func(c *transfer.Checkpoint) error {
			if ctx.Err() == nil { // the one taken on cancellation is lost with the process
				periodic = c
			}
			return nil
		},
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("stopped run: err = %v, want context.Canceled", err)
	}
	if periodic == nil || periodic.Step != 5 {
		t.Fatalf("last periodic checkpoint %+v, want step 5", periodic)
	}
	b, err := periodic.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var back transfer.Checkpoint
	if err := back.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	var computed []int
	res, err := stylize(t, e, transfer.Request{Params: p, Resume: &back,
		OnStep: func(s transfer.Step) error { computed = append(computed, s.Step); return nil }})
	if err != nil {
		t.Fatal(err)
	}
	if len(computed) != 7 || computed[0] != 6 {
		t.Fatalf("resumed run computed steps %v, want 6..12: it did not start from the checkpoint", computed)
	}
	if len(res.Log) != len(full.Log) {
		t.Fatalf("resumed log has %d steps, want %d", len(res.Log), len(full.Log))
	}
	for i, a := range full.Log {
		r := res.Log[i]
		if a.Step != r.Step || a.TotalLoss != r.TotalLoss || a.StyleLoss != r.StyleLoss || a.ContentLoss != r.ContentLoss {
			t.Errorf("step %d: resumed %+v, uninterrupted %+v", i+1, r, a)
		}
	}
	if string(res.Image.Pix) != string(full.Image.Pix) {
		t.Error("resumed image differs from the uninterrupted run's")
	}
}
