// Command dsat runs pipelines on Redis Streams: the HTTP API (serve),
// satellites (worker), everything at once on an embedded Redis (dev), and
// clients of the API (submit, status, tail, cancel, retry, dead,
// pipelines, schedule), plus validate, graph, bench and version. Run "dsat help" for the list.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"regexp"
	"sort"
	"strings"
	"syscall"

	"github.com/redis/go-redis/v9"
)

// quietRedisLogger drops go-redis's internal log lines (dial retries):
// dsat reports connection problems itself, once, with what to fix.
type quietRedisLogger struct{}

func (quietRedisLogger) Printf(context.Context, string, ...interface{}) {}

// Version is dsat's own version, in the dsat version scheme.
const Version = "0.1.0"

// command is one subcommand.
type command struct {
	name    string
	summary string
	usage   string // after "dsat <name> "
	help    string // longer text with examples
	run     func(ctx context.Context, env *cliEnv, args []string) error
}

// cliEnv is what commands use to talk to the world (tests swap it).
type cliEnv struct {
	stdout, stderr io.Writer
	stdin          io.Reader
	getenv         func(string) string
}

// usageError makes the process exit with code 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return &usageError{fmt.Sprintf(format, a...)} }

// exitError carries a specific exit code (tail: 1 when a task failed).
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

var commands []*command

func register(c *command) { commands = append(commands, c) }

func lookup(name string) *command {
	for _, c := range commands {
		if c.name == name {
			return c
		}
	}
	return nil
}

func main() {
	redis.SetLogger(quietRedisLogger{}) // go-redis's own retries log through zerolog instead
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, &cliEnv{stdout: os.Stdout, stderr: os.Stderr, stdin: os.Stdin, getenv: os.Getenv}, os.Args[1:])
	stop()
	os.Exit(code)
}

// run dispatches to a subcommand and maps its error to an exit code:
// 0 ok, 1 failure, 2 usage.
func run(ctx context.Context, env *cliEnv, args []string) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		if len(args) > 1 {
			if c := lookup(args[1]); c != nil {
				printHelp(env.stdout, c)
				return 0
			}
			fmt.Fprintf(env.stderr, "dsat help: unknown command %q; run \"dsat help\" for the list\n", args[1])
			return 2
		}
		printOverview(env.stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	c := lookup(args[0])
	if c == nil {
		fmt.Fprintf(env.stderr, "dsat: unknown command %q; run \"dsat help\" for the list\n", args[0])
		return 2
	}
	err := c.run(ctx, env, args[1:])
	var ue *usageError
	var ee *exitError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(env.stderr, "dsat %s: %s\nusage: dsat %s %s (see \"dsat help %s\")\n", c.name, unprefixed(ue.msg), c.name, c.usage, c.name)
		return 2
	case errors.As(err, &ee):
		if ee.msg != "" {
			fmt.Fprintf(env.stderr, "dsat %s: %s\n", c.name, unprefixed(ee.msg))
		}
		return ee.code
	default:
		fmt.Fprintf(env.stderr, "dsat %s: %s\n", c.name, unprefixed(oneLine(err.Error())))
		return 1
	}
}

// dsatPrefix is the "dsat: " that the dsat package's errors start with
// (Go's convention for a package's errors), wherever it begins a message
// or a clause of one.
var dsatPrefix = regexp.MustCompile(`(^|: |; |\n)dsat: `)

// unprefixed drops the "dsat: " of wrapped errors: the CLI already says
// "dsat <command>: " once, and an API problem's detail may carry one too.
func unprefixed(s string) string { return dsatPrefix.ReplaceAllString(s, "$1") }

// oneLine keeps an error message on one line, except validation errors,
// which list one problem per line.
func oneLine(s string) string {
	if strings.Count(s, "\n") > 0 && strings.Contains(s, ".yaml") || strings.Contains(s, ".yml") {
		return s
	}
	return strings.ReplaceAll(s, "\n", "; ")
}

func printOverview(w io.Writer) {
	fmt.Fprintf(w, "dsat %s: pipelines of steps on Redis Streams.\n\nUsage: dsat <command> [flags] [args]\n\nCommands:\n", Version)
	sorted := append([]*command{}, commands...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].name < sorted[j].name })
	for _, c := range sorted {
		fmt.Fprintf(w, "  %-9s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "\nStart here: dsat dev   (everything in one process, no setup)\nRun \"dsat help <command>\" for its flags and examples.\n")
}

func printHelp(w io.Writer, c *command) {
	fmt.Fprintf(w, "dsat %s %s\n\n%s\n\n%s\n", c.name, c.usage, c.summary, strings.TrimSpace(c.help))
	fs := newFlagSet(c.name, &cliEnv{stdout: w, stderr: w, getenv: func(string) string { return "" }})
	flagsFor(c.name, fs)
	if n := countFlags(fs); n > 0 {
		fmt.Fprintf(w, "\nFlags:\n")
		fs.SetOutput(w)
		fs.PrintDefaults()
	}
}

func countFlags(fs *flag.FlagSet) int {
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	return n
}
