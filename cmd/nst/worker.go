package main

import (
	"context"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/spf13/pflag"

	"github.com/nst-project/nst/transfer/worker"
)

// workerCommand is the hidden `nst worker`: the child process that `nst run` starts for each
// compute lane (transfer/worker). It serves jobs on stdin/stdout with the torch engine, so a
// libtorch crash ends this process, not the run.
func workerCommand() command {
	var (
		ef   engineFlags
		seed int64
	)
	return command{
		name:    "worker",
		summary: "serve engine jobs on stdin/stdout (started by nst run; not for direct use)",
		hidden:  true,
		setup: func(fs *pflag.FlagSet) func(context.Context, *env) error {
			ef.register(fs)
			fs.Int64Var(&seed, "random-seed", 0, "seed of --random-weights")
			return func(ctx context.Context, e *env) error {
				// The parent cancels jobs through the pipe, so that they checkpoint first; a
				// signal here (e.g. Ctrl-C reaching the process group) must not cut that short.
				signal.Ignore(os.Interrupt, syscall.SIGTERM)
				eng, err := ef.openSeeded(e, seed)
				if err != nil {
					return err
				}
				defer eng.Close()
				return worker.Serve(context.Background(), os.Stdin, os.Stdout, eng)
			}
		},
	}
}

// workerArgs are the arguments of `nst worker` for an engine configured like ef.
func (f *engineFlags) workerArgs(seed int64) []string {
	args := []string{"worker", "--device", f.device, "--threads", strconv.Itoa(f.threads),
		"--memory-format", f.memoryFormat, "--log-format", "json"}
	if f.randomWeights {
		args = append(args, "--random-weights", "--random-seed", strconv.FormatInt(seed, 10))
	} else {
		args = append(args, "--weights", f.weights)
		if f.weightsSHA256 != "" {
			args = append(args, "--weights-sha256", f.weightsSHA256)
		}
	}
	return args
}
