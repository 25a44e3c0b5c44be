package dsat

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

// A task id looks like
//
//	06fa1bqk0c8m3pz4tq2hn6v1a8.textstats.1.2.0
//	└──────── unique ────────┘ └ pipe ┘ X Y partition
//
// The unique part is 26 characters of lower-case base32hex over 128 bits:
// 48 bits of Unix milliseconds, a 16-bit per-process counter and 64 random
// bits. base32hex keeps byte order, so ids sort by creation time (and, within
// one process and millisecond, by creation order). The rest names the
// partition, so the task's keys are found without a scan. Every character is
// URL-safe.

const uniqueLen = 26

var idEncoding = base32.NewEncoding("0123456789abcdefghijklmnopqrstuv").WithPadding(base32.NoPadding)

// TaskID is a parsed task id.
type TaskID struct {
	Unique    string
	Partition Partition
}

// String returns the id's text form.
func (id TaskID) String() string {
	p := id.Partition
	return id.Unique + "." + p.Pipeline + "." + p.API + "." + strconv.Itoa(p.N)
}

// Time returns the creation time encoded in the id (millisecond precision).
func (id TaskID) Time() time.Time {
	raw, err := idEncoding.DecodeString(id.Unique)
	if err != nil || len(raw) < 6 {
		return time.Time{}
	}
	var b [8]byte
	copy(b[2:], raw[:6])
	return time.UnixMilli(int64(binary.BigEndian.Uint64(b[:])))
}

// ParseTaskID parses and checks a task id. A malformed id returns an error
// wrapping ErrInvalidTaskID; no Redis call is ever needed to reject one.
func ParseTaskID(s string) (TaskID, error) {
	bad := func(why string) (TaskID, error) {
		if len(s) > 80 {
			s = s[:80] + "..."
		}
		return TaskID{}, fmt.Errorf("%w %q: %s", ErrInvalidTaskID, s, why)
	}
	if len(s) > uniqueLen+1+MaxNameLen+20 {
		return bad("too long")
	}
	var parts [5]string
	if cutAll(s, '.', parts[:]) != 5 {
		return bad("want <26 characters>.<pipeline>.<X>.<Y>.<partition>")
	}
	u := parts[0]
	if len(u) != uniqueLen {
		return bad("unique part must be 26 characters")
	}
	for i := 0; i < len(u); i++ {
		c := u[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'v') {
			return bad("unique part must be base32hex (0-9, a-v)")
		}
	}
	if strings.IndexByte("048cgkos", u[uniqueLen-1]) < 0 {
		// 26 characters carry 130 bits for 128: the last two must be zero.
		return bad("unique part out of range")
	}
	if !ValidName(parts[1]) {
		return bad("pipeline name must be [a-z0-9_-]{1,64}")
	}
	_, errX := versionNumber(parts[2])
	_, errY := versionNumber(parts[3])
	if errX != nil || errY != nil {
		return bad("version must be X.Y numbers")
	}
	n, err := versionNumber(parts[4])
	if err != nil || n >= MaxPartitions {
		return bad("partition must be a number below " + strconv.Itoa(MaxPartitions))
	}
	// X and Y are canonical numbers (versionNumber): "X.Y" is that part of s.
	api := len(parts[0]) + 1 + len(parts[1]) + 1
	return TaskID{Unique: u, Partition: Partition{Pipeline: parts[1], API: s[api : api+len(parts[2])+1+len(parts[3])], N: n}}, nil
}

// idGen makes the unique part of task ids.
type idGen struct {
	mu     sync.Mutex
	lastMS int64
	seq    uint16
}

var defaultIDGen idGen

// next returns a new unique part for time now.
func (g *idGen) next(now time.Time) string {
	ms := now.UnixMilli()
	g.mu.Lock()
	if ms <= g.lastMS {
		ms = g.lastMS // clock went back or same ms: keep order with the counter
		g.seq++
		if g.seq == 0 { // counter wrapped: borrow the next millisecond
			ms++
		}
	} else {
		g.seq = 0
	}
	g.lastMS = ms
	seq := g.seq
	g.mu.Unlock()

	var raw [16]byte
	binary.BigEndian.PutUint64(raw[0:8], uint64(ms)<<16|uint64(seq))
	if _, err := rand.Read(raw[8:]); err != nil {
		panic("dsat: crypto/rand failed: " + err.Error())
	}
	return idEncoding.EncodeToString(raw[:])
}

// NewTaskID returns a fresh id for a task of partition p created at now.
func NewTaskID(p Partition, now time.Time) TaskID {
	return TaskID{Unique: defaultIDGen.next(now), Partition: p}
}
