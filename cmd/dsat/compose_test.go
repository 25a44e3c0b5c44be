package main

import (
	"os"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// TestComposeFileMatchesTheBinary checks that every dsat command and flag
// in docker-compose.yml exists, so the file cannot rot.
func TestComposeFileMatchesTheBinary(t *testing.T) {
	b, err := os.ReadFile("../../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var compose struct {
		Services map[string]struct {
			Image   string   `yaml:"image"`
			Build   any      `yaml:"build"`
			Command []string `yaml:"command"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(b, &compose); err != nil {
		t.Fatal(err)
	}
	checked := 0
	for name, s := range compose.Services {
		if !strings.HasPrefix(s.Image, "dsat") && s.Build == nil {
			continue
		}
		if len(s.Command) == 0 {
			t.Fatalf("service %s runs dsat without a command", name)
		}
		c := lookup(s.Command[0])
		if c == nil {
			t.Fatalf("service %s: dsat has no command %q", name, s.Command[0])
		}
		fs := newFlagSet(c.name, &cliEnv{getenv: func(string) string { return "" }})
		flagsFor(c.name, fs)
		for _, a := range s.Command[1:] {
			if !strings.HasPrefix(a, "--") {
				continue
			}
			flagName := strings.SplitN(strings.TrimPrefix(a, "--"), "=", 2)[0]
			if fs.Lookup(flagName) == nil {
				t.Errorf("service %s: dsat %s has no flag --%s", name, c.name, flagName)
			}
		}
		// The whole command line parses.
		if err := fs.Parse(s.Command[1:]); err != nil {
			t.Errorf("service %s: %v", name, err)
		}
		checked++
	}
	if checked < 2 {
		t.Fatalf("checked %d dsat services, want serve and worker", checked)
	}
	df, err := os.ReadFile("../../Dockerfile")
	if err != nil || !strings.Contains(string(df), `ENTRYPOINT ["dsat"]`) || !strings.Contains(string(df), "USER dsat") {
		t.Fatalf("Dockerfile lacks the dsat entrypoint or the non-root user")
	}
}
