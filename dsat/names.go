package dsat

import "fmt"

// MaxNameLen is the longest pipeline or step name.
const MaxNameLen = 64

// ValidName reports whether s is a valid pipeline or step name:
// 1 to 64 characters of [a-z0-9_-]. Names are checked before any Redis key
// is built from them, so user input can never move a key's hash tag.
func ValidName(s string) bool {
	if len(s) == 0 || len(s) > MaxNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// CheckName returns an error wrapping ErrInvalidName when s is not valid.
func CheckName(s string) error {
	if !ValidName(s) {
		return fmt.Errorf("%w: %q must be 1 to %d characters of a-z, 0-9, '_' or '-'", ErrInvalidName, s, MaxNameLen)
	}
	return nil
}
