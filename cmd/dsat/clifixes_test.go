package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestHelpUnknownCommand: "dsat help <typo>" is a usage error (exit 2)
// that names the typo, not the overview with exit 0 (issue 14).
func TestHelpUnknownCommand(t *testing.T) {
	code, out, errs := runCLI(t, nil, "", "help", "tial")
	if code != 2 || !strings.Contains(errs, `unknown command "tial"`) || out != "" {
		t.Fatalf("help tial: exit %d\n%s%s", code, out, errs)
	}
	if code, out, _ := runCLI(t, nil, "", "help"); code != 0 || !strings.Contains(out, "Commands:") {
		t.Fatalf("help: exit %d %s", code, out)
	}
}

// TestNoDoubledPrefix: errors of the dsat package start with "dsat: ";
// the CLI says "dsat <command>: " once and drops theirs (issue 14).
func TestNoDoubledPrefix(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"dsat: task not found", "task not found"},
		{`b.yaml:2: field "version": dsat: invalid version "1.2.10"`, `b.yaml:2: field "version": invalid version "1.2.10"`},
		{"a; dsat: b\ndsat: c", "a; b\nc"},
		{"the dsat: prefix inside a word stays", "the dsat: prefix inside a word stays"},
	} {
		if got := unprefixed(tc.in); got != tc.want {
			t.Errorf("unprefixed(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	bad := t.TempDir() + "/bad.yaml"
	if err := os.WriteFile(bad, []byte("name: a\nversion: 1.2.10\nsteps:\n  a: {handler: echo}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"validate", bad}, {"graph", bad}, {"status", "nope"}} {
		_, _, errs := runCLI(t, nil, "", args...)
		if strings.Contains(errs, "dsat: ") || !strings.Contains(errs, "dsat "+args[0]+": ") {
			t.Errorf("%v: %q", args, errs)
		}
	}
}

// TestBadTaskIDIsUsage: status, tail, cancel and retry refuse a malformed
// task id with exit 2 before asking the API; retry still takes a dead
// letter's id (issue 14).
func TestBadTaskIDIsUsage(t *testing.T) {
	env := map[string]string{"DSAT_API": "http://127.0.0.1:1"} // never reached
	for _, c := range []string{"status", "tail", "cancel", "retry"} {
		code, _, errs := runCLI(t, env, "", c, "not-a-task")
		if code != 2 || !strings.Contains(errs, `invalid task id "not-a-task"`) || !strings.Contains(errs, "usage: dsat "+c) {
			t.Errorf("%s: exit %d %q", c, code, errs)
		}
	}
	if code, _, errs := runCLI(t, env, "", "retry", "1764201600123-0"); code != 1 || !strings.Contains(errs, "cannot reach the dsat API") {
		t.Errorf("retry of a dead letter id: exit %d %q", code, errs)
	}
}

// TestTailAPIDown: tail against an API that does not answer says so at
// once (it used to retry silently for minutes); a stream that drops after
// it was established is still reconnected (TestTailReconnects).
func TestTailAPIDown(t *testing.T) {
	start := time.Now()
	code, _, errs := runCLI(t, map[string]string{"DSAT_API": "http://127.0.0.1:1"}, "", "tail", "06h1ki9ia4001ttg3m6qbao188.textstats.1.0.0")
	if code != 1 || !strings.Contains(errs, "cannot reach the dsat API at http://127.0.0.1:1") || strings.Count(strings.TrimSpace(errs), "\n") > 0 {
		t.Fatalf("exit %d %q", code, errs)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("took %s", d)
	}
}

// TestTailReconnects: a stream that breaks after the API answered is
// resumed with Last-Event-ID, with a note on stderr.
func TestTailReconnects(t *testing.T) {
	var calls atomic.Int32
	var resumedAfter atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		if calls.Add(1) == 1 {
			fmt.Fprintf(w, "id: 1\nevent: INIT\ndata: {\"seq\":1,\"event\":\"INIT\",\"at\":\"2026-11-29T10:00:00.000Z\"}\n\n")
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler) // the connection breaks mid-stream
		}
		resumedAfter.Store(r.Header.Get("Last-Event-ID"))
		fmt.Fprintf(w, "id: 2\nevent: HAPPY_END\ndata: {\"seq\":2,\"event\":\"HAPPY_END\",\"at\":\"2026-11-29T10:00:01.000Z\"}\n\n")
	}))
	t.Cleanup(srv.Close)
	code, out, errs := runCLI(t, map[string]string{"DSAT_API": srv.URL}, "", "tail", "06h1ki9ia4001ttg3m6qbao188.textstats.1.0.0")
	if code != 0 || calls.Load() != 2 || resumedAfter.Load() != "1" || !strings.Contains(out, "INIT") || !strings.Contains(out, "HAPPY_END") || !strings.Contains(errs, "reconnecting") {
		t.Fatalf("exit %d, %d calls, resumed after %v\n%s%s", code, calls.Load(), resumedAfter.Load(), out, errs)
	}
}
