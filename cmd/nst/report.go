package main

import (
	"context"
	"fmt"

	"github.com/spf13/pflag"

	"github.com/nst-project/nst/pipeline"
)

func reportCommand() command {
	var bf manifestFlags
	return command{
		name:    "report",
		summary: "write a run's HTML contact sheet (thumbnails, losses, failures, totals) to _report/index.html in its output",
		examples: `  nst report --manifest examples/demo.yaml          # then open examples/out/_report/index.html
  nst report --manifest s3://config/catalogue.yaml --run-id nightly-20260101`,
		setup: func(fs *pflag.FlagSet) func(context.Context, *env) error {
			fs.StringVar(&bf.manifest, "manifest", "", "the manifest: a local path or a bucket URL (s3://config/catalogue.yaml); see docs/manifest.md")
			fs.StringVar(&bf.runID, "run-id", "", "the run whose summaries give failures and totals (default <metadata.name>-<manifest digest>-<UTC date>)")
			fs.IntVar(&bf.ioJobs, "io-jobs", pipeline.DefaultIOJobs, "concurrent reads and thumbnail writes")
			return func(ctx context.Context, e *env) error {
				if len(e.args) > 0 {
					return usagef("unexpected arguments %q", e.args)
				}
				cfg, err := bf.config()
				if err != nil {
					return err
				}
				cfg.Logger = e.logger
				key, err := pipeline.WriteContactSheet(ctx, cfg)
				if err != nil {
					return invalidAsUsage(err)
				}
				fmt.Fprintf(e.stdout, "contact sheet: %s under the manifest's output URL\n", quoteKey(key))
				return nil
			}
		},
	}
}
