package main

import (
	"context"
	"fmt"
	"runtime"

	"github.com/spf13/pflag"

	"github.com/nst-project/nst/transfer/torch"
)

func versionCommand() command {
	return command{
		name:     "version",
		summary:  "print nst's version and the libtorch and devices it sees",
		examples: "  nst version",
		setup: func(fs *pflag.FlagSet) func(context.Context, *env) error {
			return func(ctx context.Context, e *env) error {
				if len(e.args) > 0 {
					return usagef("unexpected arguments %q", e.args)
				}
				fmt.Fprintf(e.stdout, "nst %s (%s, %s/%s)\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
				fmt.Fprintf(e.stdout, "libtorch %s\n", torch.Version())
				fmt.Fprintf(e.stdout, "devices: %s\n", torch.Devices())
				return nil
			}
		},
	}
}
