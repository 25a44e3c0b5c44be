package main

import (
	"flag"
	"io"
	"os"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/dsat-dev/dsat/dsat"
	"github.com/dsat-dev/dsat/workers"
	"golang.org/x/term"
)

func newFlagSet(name string, env *cliEnv) *flag.FlagSet {
	fs := flag.NewFlagSet("dsat "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

// parse parses flags; -h prints the command's help. Flags may also come
// after the positional arguments ("dsat submit textstats --delay 10s
// '{}'", "dsat pause textstats --step lang"), as most CLIs allow: a word
// that starts with "-" is a flag, except "-" and a negative number
// (payloads), and "--" ends the flags. Each flag is parsed with its value
// (the next word, unless it is a bool flag or written --name=value), so a
// payload after a flag is never taken for one. fs.Args() then holds the
// positional arguments in order.
func parse(fs *flag.FlagSet, env *cliEnv, c string, args []string) error {
	pos := []string{}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		if !namesFlag(a) {
			pos = append(pos, a)
			continue
		}
		words := []string{a}
		name, _, inline := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-"), "=")
		if f := fs.Lookup(name); f != nil && !inline && !isBoolFlag(f) && i+1 < len(args) {
			i++
			words = append(words, args[i])
		}
		if err := fs.Parse(words); err != nil {
			if err == flag.ErrHelp {
				printHelp(env.stdout, lookup(c))
				return err
			}
			return usagef("%v", err)
		}
	}
	// Every flag is set: leave the positional arguments in fs.Args().
	return fs.Parse(append([]string{"--"}, pos...))
}

// isBoolFlag reports whether f takes no value (-v, not -v true).
func isBoolFlag(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// namesFlag reports whether a (such as "--step", "-step=x", "-h", or an
// unknown "--nope", which Parse then refuses) is meant as a flag: "-", "--"
// and a negative number ("-5", a JSON payload) are arguments.
func namesFlag(a string) bool {
	name := strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
	return len(a) >= 2 && a[0] == '-' && a != "--" && name != "" && (name[0] < '0' || name[0] > '9') && name[0] != '.'
}

// envString is a string flag whose default comes from an environment
// variable.
func envString(fs *flag.FlagSet, env *cliEnv, name, envVar, def, usage string) *string {
	if v := env.getenv(envVar); v != "" {
		def = v
	}
	return fs.String(name, def, usage+" (env "+envVar+")")
}

// serverOpts are the flags of the commands that talk to Redis.
type serverOpts struct {
	redis, pipelines, logLevel, logFormat, prefix *string
	// drain says which stranded pipeline versions the command loads
	// (drainStranded).
	drain drainPolicy
}

func addServerFlags(drain drainPolicy, fs *flag.FlagSet, env *cliEnv, redisRequired bool) *serverOpts {
	o := &serverOpts{drain: drain}
	usage := "Redis URL: redis://[user:pass@]host:port[/db], rediss:// for TLS, comma-separated addresses for a Redis Cluster"
	if !redisRequired {
		usage += "; empty: an embedded in-memory Redis"
	}
	o.redis = envString(fs, env, "redis", "DSAT_REDIS_URL", "", usage)
	o.pipelines = envString(fs, env, "pipelines", "DSAT_PIPELINES", "", "folder of pipeline YAML files")
	o.prefix = envString(fs, env, "prefix", "DSAT_PREFIX", "dsat", "prefix of every Redis key")
	addLogFlags(fs, env, &o.logLevel, &o.logFormat)
	return o
}

func addLogFlags(fs *flag.FlagSet, env *cliEnv, level, format **string) {
	*level = envString(fs, env, "log-level", "DSAT_LOG_LEVEL", "info", "log level: debug, info, warn, error")
	*format = envString(fs, env, "log-format", "DSAT_LOG_FORMAT", "", "log format: console or json (default: console on a terminal, json otherwise)")
}

// apiOpts are the flags of the API clients.
type apiOpts struct {
	api, token *string
	timeout    *time.Duration
}

func addAPIFlags(fs *flag.FlagSet, env *cliEnv) *apiOpts {
	return &apiOpts{
		api:     envString(fs, env, "api", "DSAT_API", "http://127.0.0.1:8080", "base URL of the dsat API"),
		token:   envString(fs, env, "token", "DSAT_API_TOKEN", "", "API token (sent as Authorization: Bearer)"),
		timeout: fs.Duration("timeout", 30*time.Second, "timeout of each request"),
	}
}

// newLogger builds the process logger: console on a terminal, else JSON.
func newLogger(w io.Writer, level, format string) (zerolog.Logger, error) {
	lvl, err := zerolog.ParseLevel(level)
	if err != nil || level == "" {
		return zerolog.Nop(), usagef("--log-level %q: use debug, info, warn or error", level)
	}
	if format == "" {
		format = "json"
		if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			format = "console"
		}
	}
	switch format {
	case "json":
	case "console":
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: "15:04:05.000"}
	default:
		return zerolog.Nop(), usagef("--log-format %q: use console or json", format)
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger(), nil
}

// flagsFor registers a command's flags on fs (for help output).
func flagsFor(name string, fs *flag.FlagSet) {
	env := &cliEnv{getenv: func(string) string { return "" }}
	switch name {
	case "dev":
		devFlags(fs, env)
	case "serve":
		serveFlags(fs, env)
	case "worker":
		workerFlags(fs, env)
	case "submit", "status", "cancel", "retry":
		addAPIFlags(fs, env)
		if name == "submit" {
			fs.String("idempotency-key", "", "Idempotency-Key header")
			fs.Duration("delay", 0, "run the task this long from now")
			fs.String("at", "", "run the task at this RFC 3339 time")
			fs.String("deadline", "", "cancel the task if it has not ended by then")
		}
		if name == "cancel" || name == "retry" {
			bulkFlags(fs, name)
		}
	case "tasks":
		addAPIFlags(fs, env)
		addSearchFlags(fs, "status")
		fs.Int("limit", 0, "")
		fs.Bool("all", false, "")
		fs.Bool("json", false, "")
	case "pause", "resume":
		addAPIFlags(fs, env)
		fs.String("step", "", "only this step of the pipeline")
	case "validate":
		handlersFlag(fs, env)
	case "tail":
		addAPIFlags(fs, env)
		tailFlags(fs)
	case "top":
		addAPIFlags(fs, env)
		topFlags(fs)
	case "dead":
		addAPIFlags(fs, env)
		deadFlags(fs)
	case "pipelines":
		addAPIFlags(fs, env)
		fs.Bool("json", false, "print JSON")
	case "schedule":
		addAPIFlags(fs, env)
		scheduleFlags(fs)
	case "bench":
		benchFlags(fs, env)
	}
}

// handlersFlag names handlers that a worker binary of the user's own
// registers (Go handlers): validate and serve accept steps that use them.
func handlersFlag(fs *flag.FlagSet, env *cliEnv) *string {
	return envString(fs, env, "handlers", "DSAT_HANDLERS", "",
		"comma-separated names of handlers your own worker binary registers (steps with any other handler must use one built into dsat)")
}

// checkHandlers runs the checks "dsat worker" runs at start on every step
// of the pipelines: the handler exists (built in, or named in external)
// and accepts the step's settings.
func checkHandlers(ps []*dsat.Pipeline, external string) error {
	var names []string
	for _, n := range strings.Split(external, ",") {
		if n = strings.TrimSpace(n); n != "" {
			names = append(names, n)
		}
	}
	return builtinMux(0).Check(ps, names...)
}

// builtinMux is the handlers built into dsat (echo, sleep, fail, exec,
// process).
func builtinMux(maxOutput int) *workers.Mux {
	mux := workers.NewMux()
	workers.RegisterBuiltins(mux, maxOutput)
	return mux
}
