package dsat

import (
	"context"
	"errors"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// taskPage is how many fields one HSCAN of a task hash asks for. A hash
// with fewer fields (every task but a big map's) comes back in one call,
// whole and of one moment, as HGETALL would; a bigger one comes in pages,
// so neither Redis nor the reader holds a huge map's hash at once.
const taskPage = 4096

// stateFields are the task hash's fields the state shows besides the token
// records ("k:") and the per-step fields of stateFieldPrefixes.
var stateFields = map[string]bool{
	"pipeline": true, "pv": true, "status": true, "created": true, "updated": true, "seq": true,
	"error": true, "run_at": true, "deadline": true, "pr": true, "parent": true,
}

// taskFold gathers what a task's state needs from its hash, a page of
// fields at a time: the fields stateFromHash reads, with only each step's
// latest token record, and the mapped steps' item counts. A page may
// repeat fields of an earlier one (HSCAN returns a field at least once):
// keeping fields is idempotent, and a token is counted once.
type taskFold struct {
	h      map[string]string
	latest map[string]int // step -> its latest token's number
	mapped map[string]bool
	items  map[string]ItemCounts
	seen   map[int]bool // tokens counted in items
}

func newTaskFold(p *Pipeline) *taskFold {
	f := &taskFold{h: map[string]string{}, latest: map[string]int{}}
	if p != nil {
		f.mapped, f.items, f.seen = map[string]bool{}, map[string]ItemCounts{}, map[int]bool{}
		for _, n := range p.Order {
			if p.Mapped(n) {
				f.mapped[n] = true
			}
		}
	}
	return f
}

// add folds fields, an HSCAN page: field, value, field, value...
func (f *taskFold) add(kv []string) {
	for i := 0; i+1 < len(kv); i += 2 {
		k, v := kv[i], kv[i+1]
		switch {
		case strings.HasPrefix(k, "k:"):
			f.token(k, v)
		case stateFields[k], strings.HasPrefix(k, "pk:"), strings.HasPrefix(k, "p:"),
			strings.HasPrefix(k, "s:") && strings.HasSuffix(k, ":err"):
			f.h[k] = v
		}
	}
}

// token keeps the record if it is its step's latest yet, and counts a
// mapped step's item.
func (f *taskFold) token(k, v string) {
	tok, err := strconv.Atoi(k[2:])
	rec, ok := parseTokenRecord(v)
	if err != nil || !ok {
		return
	}
	if f.mapped[rec.step] && !f.seen[tok] {
		f.seen[tok] = true
		if f.items[rec.step] == nil {
			f.items[rec.step] = ItemCounts{}
		}
		f.items[rec.step][rec.state]++
	}
	if cur, ok := f.latest[rec.step]; ok {
		if tok < cur {
			return
		}
		delete(f.h, "k:"+strconv.Itoa(cur))
	}
	f.latest[rec.step] = tok
	f.h[k] = v
}

// readTaskHash reads the task hash key with HSCAN, folding each page into
// f; it reports whether the hash exists. result, when not nil, is queued
// in the first call's round trip.
func (c *Client) readTaskHash(ctx context.Context, key string, f *taskFold, result func(redis.Pipeliner)) (bool, error) {
	var cursor uint64
	found, page := false, int64(taskPage)
	if c.taskPage > 0 {
		page = c.taskPage
	}
	for first := true; first || cursor != 0; first = false {
		var scan *redis.ScanCmd
		_, err := c.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			scan = p.HScan(ctx, key, cursor, "", page)
			if first && result != nil {
				result(p)
			}
			return nil
		})
		if err != nil && !errors.Is(err, redis.Nil) {
			return false, err
		}
		kv, next, err := scan.Result()
		if err != nil {
			return false, err
		}
		found = found || len(kv) > 0
		f.add(kv)
		cursor = next
	}
	return found, nil
}
