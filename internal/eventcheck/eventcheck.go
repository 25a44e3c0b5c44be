// Package eventcheck measures what a task's events say about limits, for
// tests: how many tokens ran at once, how many began in a window.
package eventcheck

import (
	"slices"
	"time"

	"github.com/dsat-dev/dsat/dsat"
)

// Sort orders events by time, an end before an ACK of the same
// millisecond (the permit it freed may be the ACK's).
func Sort(evs []dsat.Event) {
	slices.SortStableFunc(evs, func(x, y dsat.Event) int {
		if c := x.At.Compare(y.At.Time); c != 0 {
			return c
		}
		return isACK(x) - isACK(y)
	})
}

func isACK(e dsat.Event) int {
	if e.Event == "ACK" {
		return 1
	}
	return 0
}

// Runs reports whether e starts or ends a handler run (ACK, END, ERROR,
// TIMEOUT).
func Runs(e dsat.Event) bool {
	return e.Event == "ACK" || e.Event == "END" || e.Event == "ERROR" || e.Event == "TIMEOUT"
}

// ACKTimes are the times of the ACKs among evs.
func ACKTimes(evs []dsat.Event) []time.Time {
	var out []time.Time
	for _, e := range evs {
		if e.Event == "ACK" {
			out = append(out, e.At.Time)
		}
	}
	return out
}

// MostInWindow is the most of the sorted times ts in any window [t, t+w).
func MostInWindow(ts []time.Time, w time.Duration) int {
	most := 0
	for i, a := range ts {
		n := 0
		for _, b := range ts[i:] {
			if b.Sub(a) >= w {
				break
			}
			n++
		}
		most = max(most, n)
	}
	return most
}

// MostRunning is the most tokens ACKed and not ended at once, by sorted
// run events (Sort, Runs).
func MostRunning(evs []dsat.Event) int {
	n, most := 0, 0
	for _, e := range evs {
		if e.Event == "ACK" {
			n++
		} else {
			n--
		}
		most = max(most, n)
	}
	return most
}
