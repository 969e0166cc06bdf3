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
		bf         manifestFlags
		asJSON     bool
		pairs      bool
		format     string
		shardIndex int
	)
	return command{
		name:    "plan",
		summary: "dry run: count a manifest's pairs per shard (done, stale, new), the work left; --pairs lists them",
		examples: `  nst plan --manifest examples/demo.yaml
  nst plan --manifest s3://config/catalogue.yaml --shard-count 8 --json | jq '.shards'
  nst plan --manifest catalogue.yaml --pairs --format jsonl | jq -c 'select(.state == "stale")'
  nst plan --manifest catalogue.yaml --verify        # also list the outputs and find damaged ones`,
		setup: func(fs *pflag.FlagSet) func(context.Context, *env) error {
			bf.register(fs)
			fs.BoolVar(&asJSON, "json", false, "print the totals as JSON")
			fs.BoolVar(&pairs, "pairs", false, "also list every pair (streamed, before the totals)")
			fs.StringVar(&format, "format", "table", "the --pairs format: table or jsonl (one JSON object a line)")
			fs.IntVar(&shardIndex, "shard-index", -1, "plan only this shard (default: every shard)")
			return func(ctx context.Context, e *env) error {
				if len(e.args) > 0 {
					return usagef("unexpected arguments %q", e.args)
				}
				if format != "table" && format != "jsonl" {
					return usagef("--format %q: want table or jsonl", format)
				}
				cfg, err := bf.config()
				if err != nil {
					return err
				}
				cfg.Logger = e.logger
				opts := pipeline.PlanOptions{Shard: shardIndex}
				var tw *tabwriter.Writer
				if pairs {
					enc := json.NewEncoder(e.stdout)
					if format == "table" {
						tw = tabwriter.NewWriter(e.stdout, 2, 4, 2, ' ', 0)
						fmt.Fprintln(tw, "SHARD\tID\tPRESET\tCONTENT\tSTYLE\tSTATE\tIMAGE")
					}
					n := 0
					opts.Each = func(it pipeline.PlanItem) error {
						if tw == nil {
							return enc.Encode(it)
						}
						state := it.State
						if it.Cause != "" {
							state += ": " + it.Cause
						}
						fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", it.Shard, it.ID, it.Preset, quoteKey(it.Content), quoteKey(it.Style), quoteKey(state), quoteKey(it.Outputs.Image))
						if n++; n%1000 == 0 {
							return tw.Flush() // stream: a catalogue's list is never held
						}
						return nil
					}
				}
				p, err := pipeline.PlanRun(ctx, cfg, opts)
				if tw != nil {
					if ferr := tw.Flush(); err == nil {
						err = ferr
					}
				}
				if err != nil {
					return invalidAsUsage(err)
				}
				if asJSON {
					enc := json.NewEncoder(e.stdout)
					enc.SetIndent("", "  ")
					return enc.Encode(p)
				}
				if pairs && format == "jsonl" {
					return nil // scripts get the pairs alone
				}
				if pairs {
					fmt.Fprintln(e.stdout)
				}
				t := p.Total
				verified := ""
				if p.Verified {
					verified = fmt.Sprintf(", %d damaged", t.Damaged)
				}
				fmt.Fprintf(e.stdout, "run %s: %d pairs in %d shards: %d done%s, %d stale, %d new, %d refused; work (steps x pixels): %d, left %d\n",
					p.RunID, t.Items, p.ShardCount, t.Done, verified, t.Stale, t.New, t.Refused, t.Work, t.TodoWork)
				tw = tabwriter.NewWriter(e.stdout, 2, 4, 2, ' ', tabwriter.AlignRight)
				fmt.Fprintln(tw, "SHARD\tPAIRS\tDONE\tDAMAGED\tSTALE\tNEW\tREFUSED\tWORK LEFT\t")
				for _, s := range p.Shards {
					fmt.Fprintf(tw, "%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t\n", s.Index, s.Items, s.Done, s.Damaged, s.Stale, s.New, s.Refused, s.TodoWork)
				}
				return tw.Flush()
			}
		},
	}
}
