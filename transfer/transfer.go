package transfer

import (
	"bytes"
	"context"
	"encoding/gob"
	"errors"
	"fmt"
	"image"
	"time"
)

// Step is one optimiser step's losses, as written to the loss log (one JSON object a line).
// The losses are the unweighted terms; TotalLoss is the weighted sum the optimiser minimises:
// ContentWeight*ContentLoss + StyleWeight*StyleLoss + TVWeight*TVLoss.
type Step struct {
	Step        int     `json:"step"` // from 1, counted over all scales
	Scale       int     `json:"scale,omitempty"`
	ContentLoss float64 `json:"content_loss"`
	StyleLoss   float64 `json:"style_loss"`
	TVLoss      float64 `json:"tv_loss"`
	TotalLoss   float64 `json:"total_loss"`
	ElapsedS    float64 `json:"elapsed_s"`
	// Stop is set on the last step of a scale that ended before its steps were done, saying
	// why (Params.StopTolerance, or the optimiser converged); on the run's last step it is why
	// the run ended early.
	Stop string `json:"stop,omitempty"`
}

// Request is one stylisation: a content image, one or more styles, and parameters. Images are
// full decoded pictures; the engine scales them as Params say.
type Request struct {
	Content image.Image
	Styles  []image.Image
	// StyleKeys optionally names each style (e.g. by bucket key and ETag). An engine may cache
	// prepared style targets under these keys; equal keys must mean equal images.
	StyleKeys []string
	Params    Params

	// Resume continues an interrupted run from its checkpoint (nil: start fresh). Its
	// ParamsDigest must match Params.
	Resume *Checkpoint

	// OnStep, if set, is called after every step; a non-nil error stops the run with it.
	OnStep func(Step) error
	// SaveEvery > 0 calls OnImage with the current image every SaveEvery steps.
	SaveEvery int
	OnImage   func(step int, img *image.NRGBA) error
	// CheckpointEvery > 0 calls OnCheckpoint every CheckpointEvery steps. Whenever OnCheckpoint
	// is set it is also called once when ctx is cancelled mid-run (with what was reached), so an
	// interrupted run can be resumed.
	CheckpointEvery int
	OnCheckpoint    func(*Checkpoint) error
}

// Validate checks what every engine needs of a request before any work: valid Params, a
// content image and at least one style image (none nil or empty), StyleKeys (if any) and
// Params.StyleBlend (if any) of the styles' length. It reports every problem at once, each
// naming its field, in an error wrapping ErrBadInput. Sizes are Pyramid's to check.
func (r Request) Validate() error {
	var errs []error
	if err := r.Params.Validate(); err != nil {
		errs = append(errs, err)
	}
	if r.Content == nil || r.Content.Bounds().Empty() {
		errs = append(errs, errors.New("content: no image"))
	}
	if len(r.Styles) == 0 {
		errs = append(errs, errors.New("styles: no style image"))
	}
	for i, s := range r.Styles {
		if s == nil || s.Bounds().Empty() {
			errs = append(errs, fmt.Errorf("styles[%d]: no image", i))
		}
	}
	if len(r.StyleKeys) > 0 && len(r.StyleKeys) != len(r.Styles) {
		errs = append(errs, fmt.Errorf("styleKeys: %d keys for %d style images", len(r.StyleKeys), len(r.Styles)))
	}
	if len(r.Styles) > 0 {
		if _, err := r.Params.BlendWeights(len(r.Styles)); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrBadInput, errors.Join(errs...))
	}
	return nil
}

// Result is a finished stylisation.
type Result struct {
	Image    *image.NRGBA
	Log      []Step
	Duration time.Duration
}

// Final returns the last logged step (zero if none).
func (r *Result) Final() Step {
	if r == nil || len(r.Log) == 0 {
		return Step{}
	}
	return r.Log[len(r.Log)-1]
}

// Info describes an engine, for provenance.
type Info struct {
	Engine   string `json:"engine"`             // "torch" or "fake"
	Libtorch string `json:"libtorch,omitempty"` // version of the loaded libtorch
	Device   string `json:"device"`             // "cpu", "cuda:0"
	Weights  string `json:"weights,omitempty"`  // sha256 of the VGG19 weights, or "random:<seed>"
	// MemoryFormat is the engine's activation layout ("channels-last", "nchw"): results in
	// the two agree up to float rounding, not bit for bit.
	MemoryFormat string `json:"memory_format,omitempty"`
}

// Engine is a style-transfer engine. Implementations must be safe for concurrent Stylize
// calls; each call is independent.
type Engine interface {
	Stylize(ctx context.Context, req Request) (*Result, error)
	Info() Info
}

// BatchEngine is an Engine that can also run several requests together (e.g. one GPU
// forward/backward for several images). Results and errors are per request, in order; a
// failure of one request does not fail the others.
type BatchEngine interface {
	Engine
	StylizeBatch(ctx context.Context, reqs []Request) ([]*Result, []error)
}

// Errors an engine returns, for errors.Is.
var (
	// ErrNonFinite: the loss became NaN or infinite; the run stopped.
	ErrNonFinite = errors.New("loss is not finite")
	// ErrBadInput: an image or parameter the engine cannot use (e.g. too small for VGG19).
	ErrBadInput = errors.New("bad input")
	// ErrCheckpointMismatch: Resume does not belong to these parameters or images.
	ErrCheckpointMismatch = errors.New("checkpoint does not match this run")
)

// Checkpoint is a resumable state of one run: the optimised image (in the engine's normalised
// space) and the optimiser's state. It is plain data, so the pipeline can store it anywhere.
type Checkpoint struct {
	Version      int
	ParamsDigest string
	Scale        int // index of the scale in progress, from 0
	Step         int // steps done overall (the loss log's length)
	Width        int
	Height       int
	Image        []float32 // 3 x Height x Width, channel-major
	Optimizer    string
	State        map[string][]float32 // optimiser state, e.g. Adam's "m", "v"
	Log          []Step
}

const checkpointVersion = 1

// checkpointData is Checkpoint without its methods: gob would otherwise call MarshalBinary
// again for the *Checkpoint it is given, recursing until the stack overflows.
type checkpointData Checkpoint

// MarshalBinary encodes c (gob).
func (c *Checkpoint) MarshalBinary() ([]byte, error) {
	var b bytes.Buffer
	cc := checkpointData(*c)
	cc.Version = checkpointVersion
	if err := gob.NewEncoder(&b).Encode(&cc); err != nil {
		return nil, fmt.Errorf("encode checkpoint: %w", err)
	}
	return b.Bytes(), nil
}

// UnmarshalBinary decodes what MarshalBinary wrote and checks it is whole.
func (c *Checkpoint) UnmarshalBinary(data []byte) error {
	var cc checkpointData
	if err := gob.NewDecoder(bytes.NewReader(data)).Decode(&cc); err != nil {
		return fmt.Errorf("decode checkpoint: %w", err)
	}
	if cc.Version != checkpointVersion {
		return fmt.Errorf("decode checkpoint: version %d, want %d", cc.Version, checkpointVersion)
	}
	if cc.Width < 1 || cc.Height < 1 || len(cc.Image) != 3*cc.Width*cc.Height {
		return fmt.Errorf("decode checkpoint: image of %d values for %dx%d", len(cc.Image), cc.Width, cc.Height)
	}
	if cc.Step != len(cc.Log) {
		return fmt.Errorf("decode checkpoint: step %d but %d logged steps", cc.Step, len(cc.Log))
	}
	*c = Checkpoint(cc)
	return nil
}
