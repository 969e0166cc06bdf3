package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/spf13/pflag"
	"golang.org/x/term"

	"github.com/nst-project/nst/pipeline"
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

// invalidAsUsage marks the pipeline's invalid-manifest errors as usage errors (exit 2).
func invalidAsUsage(err error) error {
	if errors.Is(err, pipeline.ErrInvalid) {
		return usageError{err}
	}
	return err
}

// command is one subcommand: its flags are defined on fs, and run does the work.
type command struct {
	name     string
	summary  string
	examples string
	hidden   bool // left out of nst --help (internal commands)
	setup    func(fs *pflag.FlagSet) func(ctx context.Context, env *env) error
}

// env carries what a subcommand may touch: its arguments, output streams and logger.
type env struct {
	args   []string
	stdout io.Writer
	stderr io.Writer
	logger *slog.Logger
	// tty is true when stderr is a terminal: progress bars instead of log lines.
	tty   bool
	quiet bool
}

func commands() []command {
	return []command{versionCommand(), stylizeCommand(), runCommand(), planCommand(), reportCommand(), workerCommand()}
}

// commonFlags are accepted by every subcommand.
type commonFlags struct {
	logFormat string
	quiet     bool
}

func (c *commonFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&c.logFormat, "log-format", "", "text or json (default: text on a terminal, json otherwise)")
	fs.BoolVarP(&c.quiet, "quiet", "q", false, "only warnings and errors")
}

// applyEnv sets every flag not given on the command line from NST_<NAME> (upper case, dashes
// as underscores), the way Kubernetes passes settings; flags win. It then hands the value of
// each deprecated name (deprecatedAlias) given on the command line or in NST_<OLD> to the flag
// that replaces it, unless that flag was given as strongly (the command line beats the
// environment, and the new name the old); it returns a warning for each deprecated name used.
func applyEnv(fs *pflag.FlagSet, getenv func(string) string) (warnings []string, err error) {
	given := map[string]bool{} // on the command line
	fs.Visit(func(f *pflag.Flag) { given[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *pflag.Flag) {
		if given[f.Name] || replacedBy(f) != "" {
			return
		}
		name := envName(f.Name)
		v := getenv(name)
		if v == "" {
			return
		}
		if err := fs.Set(f.Name, v); err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: %v", name, v, err))
		}
	})
	fs.VisitAll(func(f *pflag.Flag) {
		repl := replacedBy(f)
		if repl == "" {
			return
		}
		oldEnv, newEnv := envName(f.Name), envName(repl)
		var what, v string
		var beaten bool
		switch {
		case given[f.Name]:
			what, v = "--"+f.Name, f.Value.String()
			warnings = append(warnings, fmt.Sprintf("%s is deprecated: use --%s", what, repl))
			beaten = given[repl]
		case getenv(oldEnv) != "":
			what, v = oldEnv, getenv(oldEnv)
			warnings = append(warnings, fmt.Sprintf("%s is deprecated: use %s", what, newEnv))
			beaten = given[repl] || getenv(newEnv) != ""
		default:
			return
		}
		if beaten {
			warnings = append(warnings, fmt.Sprintf("%s %s ignored: --%s is set", what, v, repl))
			return
		}
		if err := fs.Set(repl, v); err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: %v", what, v, err))
		}
	})
	return warnings, errors.Join(errs...)
}

// replacedByAnnotation marks a deprecated flag; its value names the flag that replaces it.
const replacedByAnnotation = "nst-replaced-by"

// deprecatedAlias defines old as a deprecated name of new, a flag defined already: --help
// leaves old out, and applyEnv gives the value of --old (or of NST_<OLD>) to new, with a
// warning. old keeps its raw text, so that new's type parses it and new wins when both are
// given, in whatever order.
func deprecatedAlias(fs *pflag.FlagSet, old, new string) {
	f := fs.Lookup(new)
	fs.String(old, "", f.Usage)
	fs.Lookup(old).NoOptDefVal = f.NoOptDefVal
	// pflag prints its own warning to the flag set's output, which runEnv discards: applyEnv
	// returns one instead, so that it reaches the log (JSON in pods).
	_ = fs.MarkDeprecated(old, "use --"+new)
	_ = fs.SetAnnotation(old, replacedByAnnotation, []string{new})
}

// replacedBy returns the flag that replaces f if f is a deprecated name, else "".
func replacedBy(f *pflag.Flag) string {
	if r := f.Annotations[replacedByAnnotation]; len(r) == 1 {
		return r[0]
	}
	return ""
}

func envName(flag string) string {
	return "NST_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

func newLogger(w io.Writer, format string, quiet, tty bool) (*slog.Logger, error) {
	level := slog.LevelInfo
	if quiet {
		level = slog.LevelWarn
	}
	opts := &slog.HandlerOptions{Level: level}
	switch format {
	case "":
		if tty {
			return slog.New(slog.NewTextHandler(w, opts)), nil
		}
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, usagef("--log-format: %q is not text or json", format)
	}
}

// run is main without the process: it parses args, runs one subcommand and maps the outcome to
// an exit code. It writes only to stdout and stderr.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return runEnv(ctx, args, stdout, stderr, os.Getenv)
}

// runEnv is run with the environment injected (tests).
func runEnv(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
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
	var common commonFlags
	common.register(fs)
	err := fs.Parse(args[1:])
	var warnings []string
	if err == nil {
		warnings, err = applyEnv(fs, getenv)
	}
	if err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			commandUsage(stdout, cmd, fs)
			return exitOK
		}
		fmt.Fprintf(stderr, "nst %s: %s (run 'nst %s --help')\n", cmd.name, printable(err.Error(), false), cmd.name)
		return exitUsage
	}
	tty := isTerminal(stderr)
	logger, err := newLogger(stderr, common.logFormat, common.quiet, tty)
	if err != nil {
		fmt.Fprintf(stderr, "nst %s: %s\n", cmd.name, printable(err.Error(), false))
		return exitUsage
	}
	for _, w := range warnings {
		logger.Warn(printable(w, false))
	}
	err = do(ctx, &env{args: fs.Args(), stdout: stdout, stderr: stderr, logger: logger, tty: tty, quiet: common.quiet})
	if (cmd.name == "run" || cmd.name == "plan" || cmd.name == "report") && !errors.Is(err, errUsage) {
		logResources(logger, cmd.name)
	}
	return exitCode(ctx, stderr, cmd.name, err)
}

// exitCode prints err (made printable: keys and file names in it cannot drive the terminal)
// and maps it to an exit code.
func exitCode(ctx context.Context, stderr io.Writer, name string, err error) int {
	if err == nil {
		return exitOK
	}
	msg := printable(err.Error(), true)
	switch {
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "nst %s: %s\n", name, msg)
		return exitUsage
	case ctx.Err() != nil && errors.Is(err, context.Canceled):
		fmt.Fprintf(stderr, "nst %s: interrupted: %s\n", name, msg)
		return exitInterrupted
	default:
		fmt.Fprintf(stderr, "nst %s: %s\n", name, msg)
		return exitFailed
	}
}

// printable returns s with what could drive a terminal escaped as in a Go string literal:
// control characters (ESC starts colour and cursor sequences; CR overwrites a line), DEL, C1
// controls, Unicode format characters (bidirectional overrides, zero-width marks) and bytes
// that are not UTF-8. Newlines and tabs are kept when keepLines (a manifest's problems are
// one per line), escaped otherwise. Object keys and file names reach messages unfiltered.
func printable(s string, keepLines bool) string {
	if !strings.ContainsFunc(s, func(r rune) bool { return r == utf8.RuneError || unsafeRune(r, keepLines) }) {
		return s
	}
	var b strings.Builder
	for len(s) > 0 {
		r, size := utf8.DecodeRuneInString(s)
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[0])
		case unsafeRune(r, keepLines):
			q := strconv.QuoteRuneToASCII(r)
			b.WriteString(q[1 : len(q)-1])
		default:
			b.WriteString(s[:size])
		}
		s = s[size:]
	}
	return b.String()
}

func unsafeRune(r rune, keepLines bool) bool {
	if keepLines && (r == '\n' || r == '\t') {
		return false
	}
	return unicode.IsControl(r) || unicode.Is(unicode.Cf, r)
}

// quoteKey returns an object key for human output: as it is when every character is
// printable, else Go-quoted ("a\x1b[31m.png"), so that a key can neither colour the terminal
// nor pass for other text.
func quoteKey(k string) string {
	if printable(k, false) == k {
		return k
	}
	return strconv.Quote(k)
}

func topUsage(w io.Writer, cmds []command) {
	fmt.Fprintf(w, "nst %s: neural style transfer over image catalogues\n\nUsage:\n  nst <command> [flags]\n\nCommands:\n", version)
	sort.Slice(cmds, func(i, j int) bool { return cmds[i].name < cmds[j].name })
	for _, c := range cmds {
		if !c.hidden {
			fmt.Fprintf(w, "  %-9s %s\n", c.name, c.summary)
		}
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
	fmt.Fprintf(w, "\nEvery flag can also be set by an environment variable NST_<FLAG>, e.g. %s; flags win.\n", envName("log-format"))
	if c.examples != "" {
		fmt.Fprintf(w, "\nExamples:\n%s\n", strings.TrimRight(c.examples, "\n"))
	}
}
