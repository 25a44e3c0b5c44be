package dsat

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/dsat-dev/dsat/lua"
)

// finalLetters are the task index letters of the final statuses, in lex
// order (ixLetter).
var finalLetters = []string{"c", "f", "s"}

// PruneIndex removes from partition p's task index (Keys.TaskIndex) the
// members of tasks whose keys expired, so that the index never outgrows
// the tasks that still exist; the scripts that end a task pay nothing for
// it. It examines at most limit members, starting after cursor ("" for
// the start), and returns the cursor to continue from ("" when it reached
// the end: start over next time) and how many members it removed.
//
// Only final members created more than the retention ago are candidates:
// a task's keys expire a retention after it ended, and it ended after it
// was created. So a call finds no candidate at all (one ZRANGEBYLEX per
// final status) until tasks start to expire, and then mostly expired ones;
// a candidate whose task still exists (it ran long, or another process
// keeps tasks longer) is kept and passed over by the cursor. The time
// keepers call it every round; any number of calls at once are harmless.
func (c *Client) PruneIndex(ctx context.Context, p Partition, cursor string, limit int) (next string, removed int, err error) {
	if limit < 1 {
		limit = 1
	}
	bound := idBound(c.cfg.Now().Add(-c.cfg.Retention))
	key := c.keys.TaskIndex(p)
	var members []string
	for _, l := range finalLetters {
		min := "[" + l
		if cursor != "" {
			if cursor[:1] > l {
				continue
			}
			if cursor[:1] == l {
				min = "(" + cursor
			}
		}
		got, err := c.rdb.ZRangeByLex(ctx, key, &redis.ZRangeBy{Min: min, Max: "(" + l + bound, Count: int64(limit - len(members))}).Result()
		if err != nil {
			return cursor, 0, fmt.Errorf("dsat: read task index of %s: %w", p.Tag(), err)
		}
		if members = append(members, got...); len(members) == limit {
			next = members[limit-1]
			break
		}
	}
	if len(members) == 0 {
		return next, 0, nil
	}
	keys := make([]string, 1, 1+len(members))
	keys[0] = key
	args := make([]any, len(members))
	for i, m := range members {
		keys = append(keys, c.keys.Task(p, TaskID{Unique: m[1:], Partition: p}.String()))
		args[i] = m
	}
	r, err := c.runScript(ctx, lua.IndexPrune, keys, args...)
	if err != nil {
		return cursor, 0, fmt.Errorf("dsat: prune task index of %s: %w", p.Tag(), err)
	}
	return next, int(replyCode(r)), nil
}
