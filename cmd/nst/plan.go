package main

import (
	"context"
	"encoding/json"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/pflag"

	"github.com/nst-project/nst/pipeline"
)

func planCommand() command {
	var (
		bf     batchFlags
		asJSON bool
	)
	return command{
		name:    "plan",
		summary: "dry run: list a manifest's pairs, their shards, what is done and the work left",
		examples: `  nst plan --manifest examples/demo.yaml
  nst plan --manifest s3://config/catalogue.yaml --shard-count 8 --json | jq '.Shards'`,
		setup: func(fs *pflag.FlagSet) func(context.Context, *env) error {
			bf.register(fs)
			fs.BoolVar(&asJSON, "json", false, "print the plan as JSON")
			return func(ctx context.Context, e *env) error {
				if len(e.args) > 0 {
					return usagef("unexpected arguments %q", e.args)
				}
				cfg, err := bf.config()
				if err != nil {
					return err
				}
				cfg.Logger = e.logger
				p, err := pipeline.PlanBatch(ctx, cfg)
				if err != nil {
					return batchErr(err)
				}
				if asJSON {
					enc := json.NewEncoder(e.stdout)
					enc.SetIndent("", "  ")
					return enc.Encode(p)
				}
				tw := tabwriter.NewWriter(e.stdout, 2, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "SHARD\tID\tPRESET\tCONTENT\tSTYLE\tDONE\tIMAGE")
				for _, it := range p.Items {
					done := "-"
					if it.Done {
						done = "done"
					}
					fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", it.Shard, it.ID, it.Preset, it.Content, it.Style, done, it.Outputs.Image)
				}
				if err := tw.Flush(); err != nil {
					return err
				}
				fmt.Fprintf(e.stdout, "\nrun %s: %d pairs in %d shards, %d done; work (steps x pixels): %d, left %d\n",
					p.RunID, p.Total, p.ShardCount, p.Done, p.Work, p.TodoWork)
				for _, s := range p.Shards {
					fmt.Fprintf(e.stdout, "  shard %d: %d pairs, %d done, work left %d\n", s.Index, s.Items, s.Done, s.TodoWork)
				}
				return nil
			}
		},
	}
}
