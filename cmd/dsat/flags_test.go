package main

import (
	"bytes"
	"errors"
	"flag"
	"slices"
	"strings"
	"testing"
)

// TestParseFlagsAfterArguments: flags may follow the positional
// arguments (review 8: "dsat submit textstats --delay 10s '{}'" and "dsat
// pause textstats --step lang" were refused with "want a pipeline name"),
// while "-", a negative number and everything after "--" stay arguments.
func TestParseFlagsAfterArguments(t *testing.T) {
	for _, c := range []struct {
		args      []string
		pos       []string
		delay     string
		verbose   bool
		wantError string
	}{
		{args: []string{"textstats", "--delay", "10s", "{}"}, pos: []string{"textstats", "{}"}, delay: "10s"},
		{args: []string{"--delay=10s", "textstats", "{}"}, pos: []string{"textstats", "{}"}, delay: "10s"},
		{args: []string{"textstats", "{}", "-delay=1m", "-v"}, pos: []string{"textstats", "{}"}, delay: "1m", verbose: true},
		{args: []string{"p", "-5"}, pos: []string{"p", "-5"}},
		{args: []string{"p", "-"}, pos: []string{"p", "-"}},
		{args: []string{"p", "--", "--delay", "x"}, pos: []string{"p", "--delay", "x"}},
		{args: []string{"--", "--delay"}, pos: []string{"--delay"}},
		{args: []string{"p", "--delay"}, wantError: "flag needs an argument"},
		{args: []string{"p", "--delay", "1s", "--nope"}, wantError: "flag provided but not defined: -nope"},
		{args: []string{"p", "-nope"}, wantError: "flag provided but not defined: -nope"},
		{args: []string{"p", "-0.5"}, pos: []string{"p", "-0.5"}},
		{args: []string{"p", "--delay", "1s", "-5"}, pos: []string{"p", "-5"}, delay: "1s"},
		{args: []string{"p", "-v", "-0.5"}, pos: []string{"p", "-0.5"}, verbose: true},
		{args: []string{"p", "--delay", "--", "x"}, pos: []string{"p", "x"}, delay: "--"},
		{args: []string{"p", "-v=true", "x"}, pos: []string{"p", "x"}, verbose: true},
		{args: []string{"p", "-h"}, wantError: "help requested"},
		{args: nil, pos: []string{}},
	} {
		var out bytes.Buffer
		env := &cliEnv{stdout: &out, stderr: &out, getenv: func(string) string { return "" }}
		fs := newFlagSet("submit", env)
		delay := fs.String("delay", "", "")
		verbose := fs.Bool("v", false, "")
		err := parse(fs, env, "submit", c.args)
		if c.wantError != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantError) {
				t.Errorf("%q: error %v, want %q", c.args, err, c.wantError)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", c.args, err)
			continue
		}
		if got := fs.Args(); !slices.Equal(got, c.pos) && (len(got) != 0 || len(c.pos) != 0) {
			t.Errorf("%q: arguments %q, want %q", c.args, got, c.pos)
		}
		if *delay != c.delay || *verbose != c.verbose {
			t.Errorf("%q: delay %q verbose %v, want %q %v", c.args, *delay, *verbose, c.delay, c.verbose)
		}
	}
	// -h after an argument still prints the help.
	var out bytes.Buffer
	env := &cliEnv{stdout: &out, stderr: &out, getenv: func(string) string { return "" }}
	fs := newFlagSet("submit", env)
	if err := parse(fs, env, "submit", []string{"textstats", "-h"}); !errors.Is(err, flag.ErrHelp) || !strings.Contains(out.String(), "dsat submit") {
		t.Errorf("-h after an argument: %v, printed %q", err, out.String())
	}
}
