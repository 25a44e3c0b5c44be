package main

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestReadmeCommands checks every dsat command line and every curl path in
// the README's shell blocks against the binary and the API's routes.
func TestReadmeCommands(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(string(b), -1)
	dsatCmd := regexp.MustCompile(`(?:^|\$\(|\| )(?:go run \./cmd/dsat|dsat) ([a-z]+)((?: [^|)]*)?)`)
	curlPath := regexp.MustCompile(`curl .*http://127\.0\.0\.1:8080(/[^ '"]*)`)
	routes := []string{
		"POST /v1/pipelines/{name}/tasks", "POST /v1/pipelines/{name}/batch", "GET /v1/tasks/{id}",
		"GET /v1/tasks/{id}/events", "GET /v1/events", "POST /v1/tasks/{id}/cancel", "POST /v1/tasks/{id}/retry",
		"GET /v1/dead", "GET /v1/pipelines", "GET /v1/pipelines/{name}", "GET /v1/satellites",
		"GET /v1/schedules", "PUT /v1/schedules/{id}", "GET /v1/schedules/{id}", "DELETE /v1/schedules/{id}",
		"POST /v1/schedules/{id}/pause", "POST /v1/schedules/{id}/resume",
		"GET /v1/tasks", "POST /v1/pipelines/{name}/retry-failed", "POST /v1/pipelines/{name}/cancel",
		"POST /v1/pipelines/{name}/dead/retry",
	}
	checked := 0
	for _, blk := range blocks {
		text := strings.ReplaceAll(blk[1], "\\\n", " ")
		for _, line := range strings.Split(text, "\n") {
			line = strings.TrimSpace(strings.SplitN(line, "  #", 2)[0])
			for _, m := range dsatCmd.FindAllStringSubmatch(line, -1) {
				c := lookup(m[1])
				if c == nil {
					t.Errorf("README runs unknown command %q: %s", m[1], line)
					continue
				}
				fs := newFlagSet(c.name, &cliEnv{getenv: func(string) string { return "" }})
				flagsFor(c.name, fs)
				args := strings.Fields(m[2])
				if c.name == "schedule" && len(args) > 0 {
					args = args[1:] // the action; its flags may follow the id
				}
				for err := fs.Parse(args); ; err = fs.Parse(fs.Args()[1:]) {
					if err != nil {
						t.Errorf("README line %q: %v", line, err)
					}
					if err != nil || fs.NArg() == 0 {
						break
					}
				}
				checked++
			}
			if m := curlPath.FindStringSubmatch(line); m != nil {
				method := "GET"
				if m := regexp.MustCompile(`-X ([A-Z]+)`).FindStringSubmatch(line); m != nil {
					method = m[1]
				}
				path := strings.SplitN(m[1], "?", 2)[0]
				if !matchesRoute(method+" "+path, routes) {
					t.Errorf("README curl %s %s matches no route", method, path)
				}
				checked++
			}
		}
	}
	if checked < 8 {
		t.Fatalf("only %d README commands checked", checked)
	}
}

func matchesRoute(req string, routes []string) bool {
	for _, r := range routes {
		pat := "^" + regexp.MustCompile(`\\\{[a-z]+\\\}`).ReplaceAllString(regexp.QuoteMeta(r), `[^/]+`) + "$"
		if regexp.MustCompile(pat).MatchString(req) {
			return true
		}
	}
	return false
}
