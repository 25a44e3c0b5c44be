package dsat

import (
	"math"
	"strconv"
	"strings"
	"time"
)

// Stream ids ("<ms>-<seq>") and event ids ("<stream id>" or
// "<stream id>.<k>" for the k-th event of a firehose entry that holds
// several): their form, order and neighbours, in one place.

// ValidStreamID reports whether s is a concrete stream id "ms-seq" (not a
// special id such as $, +, - or >).
func ValidStreamID(s string) bool {
	a, b, ok := strings.Cut(s, "-")
	if !ok || len(s) > 41 {
		return false
	}
	_, e1 := strconv.ParseUint(a, 10, 64)
	_, e2 := strconv.ParseUint(b, 10, 64)
	return e1 == nil && e2 == nil
}

// NextStreamID is the smallest stream id after id (for exclusive ranges
// that work on every Redis and on miniredis).
func NextStreamID(id string) string {
	a, b := splitID(id)
	if b == math.MaxUint64 {
		return strconv.FormatUint(a+1, 10) + "-0"
	}
	return strconv.FormatUint(a, 10) + "-" + strconv.FormatUint(b+1, 10)
}

// ValidEventID reports whether s is an event id: a concrete stream id
// "ms-seq", or "ms-seq.k" (k >= 1) for an event that is not the last of
// its entry.
func ValidEventID(s string) bool {
	entry, sub, ok := strings.Cut(s, ".")
	if !ok {
		return ValidStreamID(s)
	}
	k, err := strconv.ParseUint(sub, 10, 32)
	return err == nil && k >= 1 && ValidStreamID(entry)
}

// splitEventID returns an event id's entry id and its position in the
// entry: k for "<id>.<k>", and -1 (after every event) for a plain id.
func splitEventID(id string) (entry string, k int) {
	entry, sub, ok := strings.Cut(id, ".")
	if !ok {
		return id, -1
	}
	n, _ := strconv.Atoi(sub)
	return entry, n
}

// EventEntryID is the stream id of the entry that holds the event id.
func EventEntryID(id string) string {
	entry, _ := splitEventID(id)
	return entry
}

// EventIDLess orders event ids: by entry, then by position in the entry
// (a plain entry id, the entry's last event, comes after its "<id>.<k>").
func EventIDLess(x, y string) bool {
	xe, xk := splitEventID(x)
	ye, yk := splitEventID(y)
	if xe != ye {
		return StreamIDLess(xe, ye)
	}
	return xk != -1 && (yk == -1 || xk < yk)
}

// RangeStart is the first stream id an XRANGE must read to get the events
// after the event id afterID: afterID's own entry when afterID is inside
// it, the next one otherwise.
func RangeStart(afterID string) string {
	entry, k := splitEventID(afterID)
	if k == -1 {
		return NextStreamID(entry)
	}
	return entry
}

// prevID is the largest stream id before id.
func prevID(id string) string {
	a, b := splitID(id)
	if b > 0 {
		return strconv.FormatUint(a, 10) + "-" + strconv.FormatUint(b-1, 10)
	}
	if a == 0 {
		return "0-0"
	}
	return strconv.FormatUint(a-1, 10) + "-18446744073709551615"
}

func splitID(id string) (uint64, uint64) {
	for i := 0; i < len(id); i++ {
		if id[i] == '-' {
			a, _ := strconv.ParseUint(id[:i], 10, 64)
			b, _ := strconv.ParseUint(id[i+1:], 10, 64)
			return a, b
		}
	}
	a, _ := strconv.ParseUint(id, 10, 64)
	return a, 0
}

// StreamIDLess orders stream ids "ms-seq" numerically.
func StreamIDLess(x, y string) bool {
	xa, xb := splitID(x)
	ya, yb := splitID(y)
	return xa < ya || xa == ya && xb < yb
}

// StreamIDTime is the time in a stream id: when Redis added the entry
// (zero time for an id that is not one).
func StreamIDTime(id string) time.Time {
	ms, _, ok := strings.Cut(id, "-")
	n, err := strconv.ParseInt(ms, 10, 64)
	if !ok || err != nil {
		return time.Time{}
	}
	return time.UnixMilli(n)
}
