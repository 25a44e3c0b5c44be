package dsat

import (
	"cmp"
	"context"
	"slices"
	"time"
)

// levelReader reads new tokens of a step that uses priorities: each read
// starts at the next level of priorityOrder and fills the rest of its
// count from the other levels, highest first (non-blocking reads, one per
// level on one Redis); only when every level is empty does it block, on
// every stream at once. It costs up to three more commands per read than
// the normal level alone, and only for pipelines that use priorities.
type levelReader struct {
	r       *StepReader
	turn    int                // position in priorityOrder
	streams map[Priority][]int // the stream indexes of each level
	rot     map[Priority]int   // cluster round-robin position per level
	// beforeBlock, when set (tests only: export_test.go), runs after the
	// reads of the levels found nothing, before the blocking read.
	beforeBlock func()
}

// EnablePriorities makes the reader cover the high and low streams of its
// step too (creating their consumer groups) and read by priority from
// then on. Enabling it twice is harmless.
func (r *StepReader) EnablePriorities(ctx context.Context) error {
	if r.prio != nil {
		return nil
	}
	first := len(r.keys)
	r.addLevel(PriorityHigh)
	r.addLevel(PriorityLow)
	if err := r.ensureGroups(ctx, r.keys[first:]); err != nil {
		r.parts, r.levels, r.keys = r.parts[:first], r.levels[:first], r.keys[:first]
		return err
	}
	l := &levelReader{r: r, streams: map[Priority][]int{}, rot: map[Priority]int{}}
	for i, level := range r.levels {
		l.streams[level] = append(l.streams[level], i)
	}
	r.prio = l
	return nil
}

// PrioritiesEnabled reports whether EnablePriorities was called.
func (r *StepReader) PrioritiesEnabled() bool { return r.prio != nil }

// read reads up to count new tokens by priority (it may return more when
// a read covers several streams, as ReadNew may).
func (l *levelReader) read(ctx context.Context, count int, block time.Duration) ([]Entry, error) {
	start := priorityOrder[l.turn%len(priorityOrder)]
	l.turn++
	var out []Entry
	for _, level := range levelOrder(start) {
		need := count - len(out)
		if need <= 0 {
			break
		}
		got, err := l.readLevel(ctx, level, need)
		if err != nil {
			return nil, err // what was read is pending: re-read as own entries
		}
		out = append(out, got...)
	}
	if len(out) > 0 {
		return out, nil
	}
	if l.beforeBlock != nil {
		l.beforeBlock()
	}
	out, err := l.r.readAll(ctx, count, block)
	// The blocking read returns up to count entries of each stream, in the
	// streams' order (normal, high, low): put them highest first, as the
	// reads above do, so that the reader runs the high ones and keeps
	// (spills) the lower ones when it has fewer slots than entries.
	slices.SortStableFunc(out, func(a, b Entry) int { return cmp.Compare(b.Priority, a.Priority) })
	return out, err
}

// levelOrder is start, then the other levels, highest first.
func levelOrder(start Priority) [3]Priority {
	out := [3]Priority{start}
	k := 1
	for _, level := range Levels {
		if level != start {
			out[k] = level
			k++
		}
	}
	return out
}

// readLevel reads up to count new tokens of one level without blocking:
// one XREADGROUP over its partitions' streams on one Redis; on a cluster
// (one command reaches one slot) one per partition, starting at the next
// in turn, until count is filled or every partition was tried, so a level
// gives what all its partitions hold before a lower one is read.
func (l *levelReader) readLevel(ctx context.Context, level Priority, count int) ([]Entry, error) {
	idx := l.streams[level]
	if !l.r.cluster || len(idx) == 1 {
		args := make([]string, 0, 2*len(idx))
		for _, i := range idx {
			args = append(args, l.r.keys[i])
		}
		for range idx {
			args = append(args, ">")
		}
		return l.r.read(ctx, args, count, -1)
	}
	var out []Entry
	start := l.rot[level]
	l.rot[level]++
	for k := 0; k < len(idx) && len(out) < count; k++ {
		i := idx[(start+k)%len(idx)]
		res, err := l.r.read(ctx, []string{l.r.keys[i], ">"}, count-len(out), -1)
		if err != nil {
			return nil, err
		}
		out = append(out, res...)
	}
	return out, nil
}
