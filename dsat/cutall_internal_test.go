package dsat

import (
	"slices"
	"testing"
)

// TestCutAll: cutAll gives the parts of s and how many s has, also when
// s has more than out holds.
func TestCutAll(t *testing.T) {
	for _, c := range []struct {
		s     string
		size  int
		n     int
		parts []string
	}{
		{"a.b.c", 3, 3, []string{"a", "b", "c"}},
		{"a.b.c", 2, 3, []string{"a", "b"}},
		{"a.b.c.d.e", 2, 3, []string{"a", "b"}},
		{"", 2, 1, []string{"", ""}},
		{"a.", 3, 2, []string{"a", "", ""}},
		{".", 2, 2, []string{"", ""}},
	} {
		out := make([]string, c.size)
		if n := cutAll(c.s, '.', out); n != c.n || !slices.Equal(out, c.parts) {
			t.Errorf("cutAll(%q, %d) = %d %q, want %d %q", c.s, c.size, n, out, c.n, c.parts)
		}
	}
}
