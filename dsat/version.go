package dsat

import (
	"fmt"
	"strconv"
)

// Version is a version in the dsat scheme, a safe subset of PEP 440:
// X.Y.Z where X and Y are numbers and Z is one character of [0-9a-z]
// (default "0"). X changes with a new philosophy, Y when the API breaks,
// Z for fixes and additions. Two versions are compatible when X and Y match.
//
// Z is a single character so that comparing Z as a string and as a value
// agree; X and Y are compared as numbers and carry no leading zeros, so
// every version has exactly one spelling.
type Version struct {
	Major int
	Minor int
	Patch byte // one of 0-9a-z
}

// maxVersionPart bounds X and Y so they stay small, readable numbers.
const maxVersionPart = 99999

// ParseVersion parses "X.Y" or "X.Y.Z". "1.2" means "1.2.0".
func ParseVersion(s string) (Version, error) {
	bad := func(why string) (Version, error) {
		return Version{}, fmt.Errorf("%w %q: %s", ErrInvalidVersion, s, why)
	}
	if s == "" {
		return bad("empty; write X.Y or X.Y.Z, e.g. 1.2.0")
	}
	var parts [3]string
	k := cutAll(s, '.', parts[:])
	if k < 2 || k > 3 {
		return bad("want X.Y or X.Y.Z")
	}
	var v Version
	var err error
	if v.Major, err = versionNumber(parts[0]); err != nil {
		return bad("X " + err.Error())
	}
	if v.Minor, err = versionNumber(parts[1]); err != nil {
		return bad("Y " + err.Error())
	}
	v.Patch = '0'
	if k == 3 {
		z := parts[2]
		switch {
		case z == "":
			return bad("Z is empty")
		case len(z) > 1:
			return bad("Z must be one character of 0-9a-z (so string and version order agree)")
		case !isPatchChar(z[0]):
			return bad("Z must be one of 0-9 or a lower-case letter a-z")
		}
		v.Patch = z[0]
	}
	return v, nil
}

func versionNumber(p string) (int, error) {
	if p == "" {
		return 0, fmt.Errorf("is empty")
	}
	for i := 0; i < len(p); i++ {
		if p[i] < '0' || p[i] > '9' {
			return 0, fmt.Errorf("must be a number (digits only, no sign or prefix)")
		}
	}
	if len(p) > 1 && p[0] == '0' {
		return 0, fmt.Errorf("has a leading zero")
	}
	n, err := strconv.Atoi(p)
	if err != nil || n > maxVersionPart {
		return 0, fmt.Errorf("is larger than %d", maxVersionPart)
	}
	return n, nil
}

func isPatchChar(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' }

// MustParseVersion is ParseVersion for constants; it panics on error.
func MustParseVersion(s string) Version {
	v, err := ParseVersion(s)
	if err != nil {
		panic(err)
	}
	return v
}

// String returns "X.Y.Z".
func (v Version) String() string {
	p := v.Patch
	if p == 0 {
		p = '0'
	}
	return strconv.Itoa(v.Major) + "." + strconv.Itoa(v.Minor) + "." + string(p)
}

// API returns "X.Y", the part that decides compatibility (and the hash tag).
func (v Version) API() string { return strconv.Itoa(v.Major) + "." + strconv.Itoa(v.Minor) }

// Compare returns -1, 0 or +1 as v is older than, equal to or newer than w.
func (v Version) Compare(w Version) int {
	switch {
	case v.Major != w.Major:
		return cmpInt(v.Major, w.Major)
	case v.Minor != w.Minor:
		return cmpInt(v.Minor, w.Minor)
	default:
		return cmpInt(int(v.patch()), int(w.patch()))
	}
}

func (v Version) patch() byte {
	if v.Patch == 0 {
		return '0'
	}
	return v.Patch
}

// Compatible reports whether v and w share X and Y.
func (v Version) Compatible(w Version) bool { return v.Major == w.Major && v.Minor == w.Minor }

func cmpInt(a, b int) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// MarshalText implements encoding.TextMarshaler.
func (v Version) MarshalText() ([]byte, error) { return []byte(v.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (v *Version) UnmarshalText(b []byte) error {
	p, err := ParseVersion(string(b))
	if err != nil {
		return err
	}
	*v = p
	return nil
}
