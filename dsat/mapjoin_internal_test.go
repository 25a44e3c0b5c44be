package dsat

import (
	"fmt"
	"testing"
)

// TestMapJoinUnusedCostsNothing: a pipeline without a map or a join
// policy passes the scripts exactly the arguments it did before issue 17
// (a join by its bare name, no extra argument to fail.lua), so the scripts
// take their old paths; join: true and join: all are the same.
func TestMapJoinUnusedCostsNothing(t *testing.T) {
	t.Parallel()
	for _, join := range []string{"true", "all"} {
		p, err := ParsePipeline("p.yaml", []byte(fmt.Sprintf(`name: p
version: 1.0.0
steps:
  a: {handler: echo, next: [b, c]}
  b: {handler: echo, next: [j]}
  c: {handler: echo, next: [j]}
  j: {handler: echo, join: %s}
`, join)))
		if err != nil {
			t.Fatal(err)
		}
		cp := compile(p)
		if cp.failMapJoin != nil {
			t.Fatalf("join: %s: fail.lua gets extra arguments", join)
		}
		want := fmt.Sprint([]any{"next", "", "", 1, 1, "j", "j"})
		if got := fmt.Sprint(cp.routeArg["b"]); got != want {
			t.Fatalf("join: %s: complete.lua's arguments for b: %s, want %s", join, got, want)
		}
	}
}
