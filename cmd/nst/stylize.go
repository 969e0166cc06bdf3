package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/pflag"

	"github.com/nst-project/nst/render"
	"github.com/nst-project/nst/transfer"
	"github.com/nst-project/nst/transfer/imaging"
	"github.com/nst-project/nst/transfer/torch"
)

// engineFlags are the flags that choose and configure the libtorch engine (stylize and run).
type engineFlags struct {
	weights       string
	weightsSHA256 string
	randomWeights bool
	device        string
	threads       int
	memoryFormat  string
}

func (f *engineFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.weights, "weights", "", "torchvision VGG19 weights (vgg19-dcbb9e9d.pth)")
	fs.StringVar(&f.weightsSHA256, "weights-sha256", "", "expected sha256 of the weights file")
	fs.BoolVar(&f.randomWeights, "random-weights", false, "use seeded random VGG19 weights (demos and tests: no real style)")
	fs.StringVar(&f.device, "device", "auto", "cpu, cuda, cuda:N or auto")
	fs.IntVar(&f.threads, "threads", 0, "libtorch intra-op threads per optimisation (0: one per core)")
	registerMemoryFormat(fs, &f.memoryFormat)
}

// checkMemoryFormat rejects a --memory-format the engine does not know, as a usage error.
func checkMemoryFormat(v string) error {
	if v != torch.NCHW && v != torch.ChannelsLast {
		return usagef("--memory-format %q: want %s or %s", v, torch.NCHW, torch.ChannelsLast)
	}
	return nil
}

// registerMemoryFormat adds --memory-format, shared by stylize, run and worker.
func registerMemoryFormat(fs *pflag.FlagSet, v *string) {
	fs.StringVar(v, "memory-format", torch.NCHW, "VGG19 activation layout: nchw (the seed's; losses within 1e-5 of its PyTorch loop) or channels-last (NHWC kernels: the layout GPU tensor cores want; losses within 1e-3 of nchw's)")
}

// paramFlags are the engine parameters as flags, one per transfer.ParamTable entry, with the
// engine's defaults.
type paramFlags struct {
	p transfer.Params // the flags' values; register points the flags at its fields
}

func (f *paramFlags) register(fs *pflag.FlagSet) {
	f.p = transfer.DefaultParams()
	for _, d := range transfer.ParamTable() {
		name, usage := d.Flag(), d.Usage
		switch v := d.Field(&f.p).(type) {
		case *int:
			fs.IntVar(v, name, *v, usage)
		case *int64:
			fs.Int64Var(v, name, *v, usage)
		case *float64:
			fs.Float64Var(v, name, *v, usage)
		case *bool:
			fs.BoolVar(v, name, *v, usage)
		case *string:
			fs.StringVar(v, name, *v, usage)
		case *[]int:
			fs.IntSliceVar(v, name, *v, usage)
		case *[]float64:
			fs.Float64SliceVar(v, name, *v, usage)
		case *[]transfer.LayerWeight:
			fs.Var(styleLayersValue{v}, name, usage)
		default: // a parameter of a new type: add its flag type here
			panic(fmt.Sprintf("parameter %s: no flag for %T", d.Name, v))
		}
	}
}

// styleLayersValue is the flag of a []transfer.LayerWeight: "conv1_1:1,conv2_1:0.8".
type styleLayersValue struct{ v *[]transfer.LayerWeight }

func (s styleLayersValue) String() string {
	var parts []string
	for _, l := range *s.v {
		parts = append(parts, fmt.Sprintf("%s:%g", l.Layer, l.Weight))
	}
	return strings.Join(parts, ",")
}

func (s styleLayersValue) Set(v string) error {
	ls, err := transfer.ParseStyleLayers(v)
	if err == nil {
		*s.v = ls
	}
	return err
}

func (styleLayersValue) Type() string { return "string" }

// params resolves the flags into Params as the pipeline resolves a manifest's options
// (transfer.Resolve): the flags given, on the command line or in NST_ variables, override the
// --schedule's settings. An invalid value is a usage error naming its flag.
func (f *paramFlags) params(fs *pflag.FlagSet) (transfer.Params, error) {
	p := transfer.Resolve(f.p, func(name string) bool {
		d, ok := transfer.LookupParam(name)
		return ok && fs.Changed(d.Flag())
	})
	var errs []error
	for _, fe := range transfer.FieldErrors(p.Validate()) {
		d, _ := transfer.LookupParam(fe.Field)
		if fe.Index >= 0 {
			errs = append(errs, fmt.Errorf("--%s: element %d: %s", d.Flag(), fe.Index, fe.Msg))
		} else {
			errs = append(errs, fmt.Errorf("--%s: %s", d.Flag(), fe.Msg))
		}
	}
	if len(errs) > 0 {
		return p, usageError{errors.Join(errs...)}
	}
	return p, nil
}

func (f *engineFlags) open(ctx context.Context, e *env) (*torch.Engine, error) {
	return f.openSeeded(e, 0)
}

// openSeeded opens the torch engine; seed seeds --random-weights.
func (f *engineFlags) openSeeded(e *env, seed int64) (*torch.Engine, error) {
	if f.weights == "" && !f.randomWeights {
		return nil, usagef("no VGG19 weights: %s", torch.WeightsHelp)
	}
	return torch.New(torch.Options{
		Weights: f.weights, WeightsSHA256: f.weightsSHA256, RandomWeights: f.randomWeights, RandomSeed: seed,
		Device: f.device, Threads: f.threads, MemoryFormat: f.memoryFormat, Logger: e.logger,
	})
}

func stylizeCommand() command {
	var (
		content, out, lossLog string
		lossPlot              string
		styles                []string
		saveEvery             int
		ef                    engineFlags
		pf                    paramFlags
	)
	return command{
		name:    "stylize",
		summary: "stylise one image with one or more styles",
		examples: `  nst stylize --content photo.jpg --style starry_night.jpg --out out.png --weights vgg19-dcbb9e9d.pth
  nst stylize --content photo.jpg --style a.jpg,b.jpg --style-blend 0.7,0.3 --optimizer lbfgs --steps 100 \
      --preserve-colors --loss-log out.loss.jsonl --out out.jpg --weights vgg19.pth   # also out.loss.png
  nst stylize --content photo.jpg --style style.jpg --out demo.png --random-weights   # no real style: demo only`,
		setup: func(fs *pflag.FlagSet) func(context.Context, *env) error {
			fs.StringVar(&content, "content", "", "content image (JPEG, PNG, GIF, WebP)")
			fs.StringSliceVar(&styles, "style", nil, "style image(s), comma-separated")
			fs.StringVar(&out, "out", "", "output image; .png or .jpg/.jpeg")
			fs.StringVar(&lossLog, "loss-log", "", "write the per-step losses here as JSON Lines")
			fs.StringVar(&lossPlot, "loss-plot", "", "draw the loss curves (log scale) to this PNG (default: beside --loss-log, as .png)")
			fs.IntVar(&saveEvery, "save-every", 0, "also write the image every N steps (out-name.stepN.ext)")
			ef.register(fs)
			pf.register(fs)
			return func(ctx context.Context, e *env) error {
				if len(e.args) > 0 {
					return usagef("unexpected arguments %q", e.args)
				}
				if content == "" || len(styles) == 0 || out == "" {
					return usagef("--content, --style and --out are required")
				}
				format, err := imaging.FormatForName(out)
				if err != nil {
					return usagef("--out: %v", err)
				}
				if err := checkMemoryFormat(ef.memoryFormat); err != nil {
					return err
				}
				p, err := pf.params(fs)
				if err != nil {
					return err
				}
				if len(p.StyleBlend) > 0 && len(p.StyleBlend) != len(styles) {
					return usagef("--style-blend has %d weights for %d styles", len(p.StyleBlend), len(styles))
				}
				plot := place{what: "--loss-plot", path: lossPlot, output: true}
				if lossPlot == "" && lossLog != "" {
					plot.what = "the loss plot"
					plot.path = strings.TrimSuffix(lossLog, filepath.Ext(lossLog)) + ".png"
					plot.note = " (named after --loss-log " + lossLog + "; choose another with --loss-plot)"
				}
				files := []place{{what: "--content", path: content}}
				for _, s := range styles {
					files = append(files, place{what: "--style", path: s})
				}
				if ef.weights != "" {
					files = append(files, place{what: "--weights", path: ef.weights})
				}
				files = append(files, place{what: "--out", path: out, output: true})
				if lossLog != "" {
					files = append(files, place{what: "--loss-log", path: lossLog, output: true, inPlace: true})
				}
				if plot.path != "" {
					files = append(files, plot)
				}
				if err := checkOutputs(files, out, saveEvery, p.TotalSteps()); err != nil {
					return err
				}

				req := transfer.Request{Params: p}
				if req.Content, err = readImage(content); err != nil {
					return usageError{err}
				}
				for _, s := range styles {
					img, err := readImage(s)
					if err != nil {
						return usageError{err}
					}
					req.Styles = append(req.Styles, img)
				}
				eng, err := ef.open(ctx, e)
				if err != nil {
					return err
				}
				defer eng.Close()

				// The loss log is written as the steps come (it can be followed with tail -f).
				var logF *os.File
				var logW *bufio.Writer
				if lossLog != "" {
					if logF, err = os.Create(lossLog); err != nil {
						return fmt.Errorf("--loss-log %s: %w", lossLog, cause(err))
					}
					defer logF.Close()
					logW = bufio.NewWriter(logF)
				}
				bar := newStepProgress(e, p.TotalSteps())
				req.OnStep = func(s transfer.Step) error {
					bar.step(s)
					if logW == nil {
						return nil
					}
					b, err := json.Marshal(s)
					if err != nil {
						return err
					}
					if _, err := logW.Write(append(b, '\n')); err != nil {
						return fmt.Errorf("--loss-log %s: %w", lossLog, cause(err))
					}
					// Each line as it comes, so the log can be followed (tail -f, benchmarks).
					if err := logW.Flush(); err != nil {
						return fmt.Errorf("--loss-log %s: %w", lossLog, cause(err))
					}
					return nil
				}
				if saveEvery > 0 {
					req.SaveEvery = saveEvery
					fr := frames{out: out}
					req.OnImage = func(step int, img *image.NRGBA) error {
						return writeImage("--save-every", fr.name(step), img, format)
					}
				}
				res, err := eng.Stylize(ctx, req)
				bar.done()
				if logW != nil {
					// Keep what was logged even when the run failed.
					ferr := logW.Flush()
					if cerr := logF.Close(); ferr == nil {
						ferr = cerr
					}
					if ferr != nil && err == nil {
						err = fmt.Errorf("--loss-log %s: %w", lossLog, cause(ferr))
					}
				}
				if err != nil {
					if errors.Is(err, transfer.ErrBadInput) {
						return usageError{err}
					}
					return err
				}
				if err := writeImage("--out", out, res.Image, format); err != nil {
					return err
				}
				if plot.path != "" {
					if err := writePlot(plot.what, plot.path, res.Log, filepath.Base(out)); err != nil {
						return err
					}
				}
				fin := res.Final()
				e.logger.Info("done", "out", out, "steps", len(res.Log), "total_loss", fin.TotalLoss,
					"content_loss", fin.ContentLoss, "style_loss", fin.StyleLoss, "seconds", res.Duration.Seconds())
				return nil
			}
		},
	}
}

func readImage(path string) (*image.NRGBA, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	img, _, err := imaging.Decode(bufio.NewReader(f), imaging.DefaultLimits())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return img, nil
}

// checkOutputs refuses, before any work, an output of files that would be written over an
// input or over another output (the frames of --save-every every included, up to step last),
// however each is spelt (relative, through links, hard links), and an output that cannot be
// created where it is named.
func checkOutputs(files []place, out string, every, last int) error {
	var places []place
	for _, f := range files {
		pl, err := newPlace(f)
		if err != nil {
			return err
		}
		places = append(places, pl)
	}
	var fr frames
	if every > 0 {
		var err error
		if fr, err = newFrames(out, every, last); err != nil {
			return err
		}
	}
	if err := checkPlaces(places, fr); err != nil {
		return err
	}
	for _, pl := range places {
		if pl.output {
			if err := checkWritable(pl); err != nil {
				return err
			}
		}
	}
	return nil
}

// writePlot draws the loss curves of log to path (a PNG), titled title.
func writePlot(what, path string, log []transfer.Step, title string) error {
	var buf bytes.Buffer
	if err := render.LossPlot(&buf, log, render.PlotOptions{Title: title}); err != nil {
		return fmt.Errorf("%s %s: %w", what, path, err)
	}
	return writeFile(what, path, func(w io.Writer) error {
		_, err := w.Write(buf.Bytes())
		return err
	})
}

// writeImage writes img to path atomically (see writeFile); what names it in errors.
func writeImage(what, path string, img image.Image, format string) error {
	return writeFile(what, path, func(w io.Writer) error {
		bw := bufio.NewWriter(w)
		if err := imaging.Encode(bw, img, format, imaging.DefaultJPEGQuality); err != nil {
			return fmt.Errorf("encode: %w", err)
		}
		return bw.Flush()
	})
}
