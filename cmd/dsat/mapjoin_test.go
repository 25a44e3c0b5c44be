package main

import (
	"strings"
	"testing"
)

// TestGraphMap: dsat graph draws a map's items as a stack of boxes with
// how many run at once, labels the map's edge, and names a join's policy.
func TestGraphMap(t *testing.T) {
	out := graphOf(t, `name: m
version: 1.0.0
steps:
  split: {handler: echo, map: pages, next: [ocr]}
  ocr: {handler: echo, max_parallel: 50, next: [tag]}
  tag: {handler: echo, next: [collect]}
  collect: {handler: echo, join: settled}
`)
	for _, want := range []string{
		`"ocr" [label="ocr\n(echo)", shape=box3d, style=solid, xlabel="×50 at once"];`,
		`"tag" [label="tag\n(echo)", shape=box3d, style=solid, xlabel="×50 at once"];`, // the whole chain
		`"split" -> "ocr" [label="map pages", style=bold];`,
		`"collect" [label="collect\n(echo)", peripheries=2, xlabel="join settled"];`,
	} {
		if !strings.Contains(out, want) {
			t.Fatalf("no %s in\n%s", want, out)
		}
	}
}
