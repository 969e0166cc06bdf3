package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/spf13/pflag"
)

// Exit codes, the one table Kubernetes and scripts act on (documented in the README).
const (
	exitOK          = 0   // everything asked for was done
	exitFailed      = 1   // some pairs failed (or the engine failed); the rest were written
	exitUsage       = 2   // bad flags, manifest or parameters: retrying cannot help
	exitInterrupted = 130 // SIGINT/SIGTERM before the work was complete
)

// version is set at build time (-ldflags "-X main.version=...").
var version = "dev"

// errUsage marks errors that mean the invocation itself was wrong (exit 2).
var errUsage = errors.New("usage")

type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() []error {
	return []error{e.err, errUsage}
}

func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

// command is one subcommand: its flags are defined on fs, and run does the work.
type command struct {
	name     string
	summary  string
	examples string
	setup    func(fs *pflag.FlagSet) func(ctx context.Context, env *env) error
}

// env carries what a subcommand may touch: its arguments and output streams.
type env struct {
	args   []string
	stdout io.Writer
	stderr io.Writer
}

func commands() []command {
	return []command{versionCommand()}
}

// run is main without the process: it parses args, runs one subcommand and maps the outcome to
// an exit code. It writes only to stdout and stderr.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmds := commands()
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		topUsage(stdout, cmds)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	var cmd *command
	for i := range cmds {
		if cmds[i].name == args[0] {
			cmd = &cmds[i]
		}
	}
	if cmd == nil {
		fmt.Fprintf(stderr, "nst: unknown command %q (run 'nst --help')\n", args[0])
		return exitUsage
	}
	fs := pflag.NewFlagSet("nst "+cmd.name, pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.SortFlags = false
	do := cmd.setup(fs)
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			commandUsage(stdout, cmd, fs)
			return exitOK
		}
		fmt.Fprintf(stderr, "nst %s: %v (run 'nst %s --help')\n", cmd.name, err, cmd.name)
		return exitUsage
	}
	err := do(ctx, &env{args: fs.Args(), stdout: stdout, stderr: stderr})
	return exitCode(ctx, stderr, cmd.name, err)
}

func exitCode(ctx context.Context, stderr io.Writer, name string, err error) int {
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "nst %s: %v\n", name, err)
		return exitUsage
	case ctx.Err() != nil && errors.Is(err, context.Canceled):
		fmt.Fprintf(stderr, "nst %s: interrupted: %v\n", name, err)
		return exitInterrupted
	default:
		fmt.Fprintf(stderr, "nst %s: %v\n", name, err)
		return exitFailed
	}
}

func topUsage(w io.Writer, cmds []command) {
	fmt.Fprintf(w, "nst %s: neural style transfer over image catalogues\n\nUsage:\n  nst <command> [flags]\n\nCommands:\n", version)
	sort.Slice(cmds, func(i, j int) bool { return cmds[i].name < cmds[j].name })
	for _, c := range cmds {
		fmt.Fprintf(w, "  %-9s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, "\nRun 'nst <command> --help' for its flags and examples.\n\n")
	fmt.Fprint(w, exitCodeHelp)
}

const exitCodeHelp = `Exit codes:
  0    success
  1    some pairs failed (the others were written), or the run failed
  2    bad flags, manifest or parameters (retrying will not help)
  130  interrupted by SIGINT or SIGTERM before the work was complete
`

func commandUsage(w io.Writer, c *command, fs *pflag.FlagSet) {
	fmt.Fprintf(w, "nst %s: %s\n\nUsage:\n  nst %s [flags]\n\nFlags:\n%s", c.name, c.summary, c.name, fs.FlagUsages())
	if c.examples != "" {
		fmt.Fprintf(w, "\nExamples:\n%s\n", strings.TrimRight(c.examples, "\n"))
	}
}
