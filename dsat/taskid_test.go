package dsat

import (
	"errors"
	"net/url"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestTaskIDRoundTrip(t *testing.T) {
	t.Parallel()
	p := Partition{Pipeline: "text-stats_2", API: "1.2", N: 11}
	now := time.Date(2026, 11, 26, 10, 0, 0, 123e6, time.UTC)
	id := TaskID{Unique: new(idGen).next(now), Partition: p}
	s := id.String()
	if url.PathEscape(s) != s {
		t.Fatalf("id %q is not URL-safe", s)
	}
	got, err := ParseTaskID(s)
	if err != nil {
		t.Fatal(err)
	}
	if got != id || got.Partition != p {
		t.Fatalf("round trip: %+v != %+v", got, id)
	}
	if !got.Time().Equal(now.Truncate(time.Millisecond)) {
		t.Fatalf("time %v, want %v", got.Time(), now)
	}
}

func TestTaskIDsSortByCreationAndAreUnique(t *testing.T) {
	t.Parallel()
	p := Partition{Pipeline: "x", API: "1.0"}
	start := time.Now()
	var ids []string
	for i := 0; i < 2000; i++ {
		// Many ids per millisecond, and one clock step backwards.
		now := start.Add(time.Duration(i/500) * time.Millisecond)
		if i == 1500 {
			now = start
		}
		ids = append(ids, NewTaskID(p, now).Unique)
	}
	if !sort.StringsAreSorted(ids) {
		t.Fatal("ids made in order do not sort in order")
	}
	// Concurrent generators never collide.
	var mu sync.Mutex
	seen := map[string]bool{}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 1000; i++ {
				u := NewTaskID(p, time.Now()).Unique
				mu.Lock()
				if seen[u] {
					t.Errorf("duplicate id %s", u)
				}
				seen[u] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
}

func TestParseTaskIDRejects(t *testing.T) {
	t.Parallel()
	good := NewTaskID(Partition{Pipeline: "p", API: "1.0"}, time.Now()).String()
	u := good[:26]
	for _, bad := range []string{
		"", "x", good + ".1", u + ".p.1.0", u[:25] + ".p.1.0.0", u + "x.p.1.0.0",
		strings.ToUpper(u) + ".p.1.0.0", u[:25] + "z.p.1.0.0", u[:25] + "1.p.1.0.0",
		u + ".P.1.0.0", u + ".p{x}.1.0.0", u + ".p.01.0.0", u + ".p.1.0.-1", u + ".p.1.0.1024",
		u + ".p.1.0.a", u + "/../.p.1.0.0", strings.Repeat("a", 10000),
	} {
		if _, err := ParseTaskID(bad); !errors.Is(err, ErrInvalidTaskID) {
			t.Errorf("ParseTaskID(%.40q) = %v, want ErrInvalidTaskID", bad, err)
		}
	}
}

func TestValidName(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"a", "text-stats", "a_b", "0", strings.Repeat("x", 64)} {
		if !ValidName(ok) {
			t.Errorf("%q should be valid", ok)
		}
	}
	for _, bad := range []string{"", "A", "a b", "a{b}", "a:b", "a.b", "é", strings.Repeat("x", 65)} {
		if ValidName(bad) || !errors.Is(CheckName(bad), ErrInvalidName) {
			t.Errorf("%q should be invalid", bad)
		}
	}
}

func TestKeysShareTheTag(t *testing.T) {
	t.Parallel()
	k := NewKeys("")
	p := Partition{Pipeline: "textstats", API: "1.2", N: 0}
	for _, key := range []string{k.Step(p, "lang"), k.Task(p, "id"), k.TaskLog(p, "id"), k.Firehose(p), k.Retry(p), k.Dead(p), k.Idempotency(p, "}{")} {
		if !strings.HasPrefix(key, "dsat:{textstats@1.2#0}:") {
			t.Errorf("key %q does not start with the partition tag", key)
		}
	}
	if got := k.Step(p, "lang"); got != "dsat:{textstats@1.2#0}:s:lang" {
		t.Errorf("step key %q", got)
	}
}
