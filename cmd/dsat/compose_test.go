package main

import (
	"os"
	"regexp"
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

// TestComposeDeployment: the services that run dsat build their image
// (older Compose aborts on pulling dsat:local), have healthchecks on a
// path and port the service serves, the API is published on loopback
// only, the base image is a supported one with jq (the wordcount example)
// and wget (the healthchecks), and a .dockerignore keeps the context small
// (issue 14).
func TestComposeDeployment(t *testing.T) {
	b, err := os.ReadFile("../../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var compose struct {
		Services map[string]struct {
			Image       string   `yaml:"image"`
			Build       any      `yaml:"build"`
			PullPolicy  string   `yaml:"pull_policy"`
			Command     []string `yaml:"command"`
			Ports       []string `yaml:"ports"`
			Healthcheck struct {
				Test []string `yaml:"test"`
			} `yaml:"healthcheck"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(b, &compose); err != nil {
		t.Fatal(err)
	}
	wantPath := map[string]string{"serve": "/readyz", "worker": "/readyz"}
	for name, s := range compose.Services {
		if !strings.HasPrefix(s.Image, "dsat") {
			continue
		}
		if s.Build == nil && s.PullPolicy != "never" {
			t.Errorf("service %s: image %s with neither build: nor pull_policy: never", name, s.Image)
		}
		addr := ""
		for i, a := range s.Command {
			if a == "--addr" && i+1 < len(s.Command) {
				addr = s.Command[i+1]
			}
		}
		_, port, _ := strings.Cut(addr, ":")
		hc := strings.Join(s.Healthcheck.Test, " ")
		if want := "http://127.0.0.1:" + port + wantPath[s.Command[0]]; port == "" || !strings.HasPrefix(hc, "CMD wget ") || !strings.HasSuffix(hc, want) {
			t.Errorf("service %s (dsat %s --addr %q): healthcheck %q, want wget of %s", name, s.Command[0], addr, hc, want)
		}
		for _, p := range s.Ports {
			if !strings.HasPrefix(p, "127.0.0.1:") {
				t.Errorf("service %s publishes %s beyond loopback", name, p)
			}
		}
	}
	df, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	base := regexp.MustCompile(`(?m)^FROM (alpine:3\.(2[2-9]|[3-9][0-9])|debian:(bookworm|trixie)-slim)$`)
	if !base.Match(df) || !strings.Contains(string(df), "apk add --no-cache jq") {
		t.Errorf("Dockerfile: want a supported base (alpine 3.22+, debian bookworm/trixie slim) that installs jq:\n%s", df)
	}
	di, err := os.ReadFile("../../.dockerignore")
	if err != nil || !regexp.MustCompile(`(?m)^\.git$`).Match(di) {
		t.Errorf(".dockerignore missing or does not leave out .git: %v", err)
	}
}
