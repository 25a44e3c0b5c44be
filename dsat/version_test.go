package dsat

import (
	"errors"
	"sort"
	"strings"
	"testing"
)

func TestParseVersion(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"1.2", "1.2.0"}, {"1.2.0", "1.2.0"}, {"0.0.a", "0.0.a"}, {"10.20.z", "10.20.z"}, {"0.1.9", "0.1.9"},
	} {
		v, err := ParseVersion(tc.in)
		if err != nil || v.String() != tc.want {
			t.Errorf("ParseVersion(%q) = %v, %v; want %s", tc.in, v, err, tc.want)
		}
	}
	for _, tc := range []struct{ in, why string }{
		{"1.2.10", "one character"},
		{"1.2.A", "lower-case"},
		{"-1.0.0", "must be a number"},
		{"1..2", "Y is empty"},
		{"v1.2.3", "must be a number"},
		{"", "empty"},
		{"1", "want X.Y"},
		{"1.2.3.4", "want X.Y"},
		{"01.2", "leading zero"},
		{"1.2.", "Z is empty"},
		{"1.999999.0", "larger than"},
		{"1.2.-", "lower-case"},
	} {
		_, err := ParseVersion(tc.in)
		if !errors.Is(err, ErrInvalidVersion) || !strings.Contains(err.Error(), tc.why) {
			t.Errorf("ParseVersion(%q) error = %v; want one saying %q", tc.in, err, tc.why)
		}
	}
}

// TestVersionOrderAgreesWithStringOrder covers every Z of 0-9a-z: version
// order and string order of the Z character agree.
func TestVersionOrderAgreesWithStringOrder(t *testing.T) {
	t.Parallel()
	const zs = "0123456789abcdefghijklmnopqrstuvwxyz"
	var vs []Version
	var ss []string
	for i := len(zs) - 1; i >= 0; i-- { // reversed, so sorting has work to do
		s := "3.7." + string(zs[i])
		vs = append(vs, MustParseVersion(s))
		ss = append(ss, s)
	}
	sort.Slice(vs, func(i, j int) bool { return vs[i].Compare(vs[j]) < 0 })
	sort.Strings(ss)
	for i := range vs {
		if vs[i].String() != ss[i] {
			t.Fatalf("position %d: version order %s, string order %s", i, vs[i], ss[i])
		}
		if i > 0 && vs[i-1].Compare(vs[i]) != -1 {
			t.Fatalf("%s should be older than %s", vs[i-1], vs[i])
		}
	}
	for _, tc := range []struct {
		a, b string
		cmp  int
	}{
		{"1.2", "1.2.0", 0}, {"1.9.z", "1.10.0", -1}, {"2.0.0", "1.99.z", 1}, {"1.2.a", "1.2.9", 1},
	} {
		if got := MustParseVersion(tc.a).Compare(MustParseVersion(tc.b)); got != tc.cmp {
			t.Errorf("Compare(%s, %s) = %d, want %d", tc.a, tc.b, got, tc.cmp)
		}
	}
}

func TestVersionCompatible(t *testing.T) {
	t.Parallel()
	v := MustParseVersion("1.2.0")
	for in, want := range map[string]bool{"1.2.z": true, "1.2": true, "1.3.0": false, "2.2.0": false} {
		if got := v.Compatible(MustParseVersion(in)); got != want {
			t.Errorf("1.2.0 compatible with %s = %v", in, got)
		}
	}
	if v.API() != "1.2" {
		t.Errorf("API = %s", v.API())
	}
}
