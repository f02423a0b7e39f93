// Command anomalynode is the one binary of the node: each subcommand wires the
// packages together (dimse, ingest, inference, output, configs) and holds no logic
// a test would want. Subcommands register themselves from their own files.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"

	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"
)

// command is one subcommand of the binary.
type command struct {
	name    string
	summary string
	// run parses args (without the subcommand name) and does the work.
	run func(ctx context.Context, env *env, args []string) error
}

// env is what every subcommand is handed: its logger and output streams.
type env struct {
	log    zerolog.Logger
	stdout io.Writer
	stderr io.Writer
}

var commands = map[string]*command{}

func register(c *command) {
	if _, dup := commands[c.name]; dup {
		panic("anomalynode: duplicate subcommand " + c.name)
	}
	commands[c.name] = c
}

// newFlagSet returns a flag set whose usage line names the subcommand and whose
// errors are returned rather than exiting, so main prints one clear error line.
func newFlagSet(e *env, name, usage string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprintf(e.stderr, "usage: anomalynode %s %s\n", name, usage)
		fs.PrintDefaults()
	}
	return fs
}

// newLogger builds the process logger: level and format from the
// environment (ANOMALYNODE_LOG_LEVEL, ANOMALYNODE_LOG_FORMAT), else from the
// given defaults; "auto" means console on a terminal and JSON elsewhere.
func newLogger(w *os.File, level, format string) zerolog.Logger {
	out, lvl := logOutput(w, level, format)
	return zerolog.New(out).Level(lvl).With().Timestamp().Logger()
}

// logOutput is newLogger's writer and level, for loggers that also write
// elsewhere (the console's journal).
func logOutput(w *os.File, level, format string) (io.Writer, zerolog.Level) {
	if v := os.Getenv("ANOMALYNODE_LOG_LEVEL"); v != "" {
		level = v
	}
	if v := os.Getenv("ANOMALYNODE_LOG_FORMAT"); v != "" {
		format = v
	}
	lvl, err := zerolog.ParseLevel(strings.ToLower(level))
	if err != nil || level == "" {
		lvl = zerolog.InfoLevel
	}
	var out io.Writer = w
	if format == "console" || ((format == "" || format == "auto") && isatty.IsTerminal(w.Fd())) {
		out = zerolog.ConsoleWriter{Out: w, TimeFormat: "15:04:05.000"}
	}
	return out, lvl
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: anomalynode COMMAND [flags]\n\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "\nRun 'anomalynode COMMAND --help' for a command's flags.")
}

func main() {
	os.Exit(runMain(os.Args[1:]))
}

func runMain(args []string) int {
	e := &env{log: newLogger(os.Stderr, "info", "auto"), stdout: os.Stdout, stderr: os.Stderr}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(e.stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(e.stderr, "anomalynode: unknown command %q (run 'anomalynode --help')\n", args[0])
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := c.run(ctx, e, args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(e.stderr, "anomalynode %s: %v\n", c.name, err)
		return 1
	}
	return 0
}
