package dsat

import (
	"context"
	"fmt"

	"github.com/dsat-dev/dsat/lua"
)

// Ready reports whether Redis answers and every script is loaded; it
// loads the missing ones (after a Redis restart or a failover the script
// cache is empty).
func (c *Client) Ready(ctx context.Context) error {
	if err := c.rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("dsat: Redis does not answer: %w", err)
	}
	for name, s := range lua.All {
		ok, err := s.Exists(ctx, c.rdb).Result()
		if err == nil && len(ok) == 1 && ok[0] {
			continue
		}
		if err := s.Load(ctx, c.rdb).Err(); err != nil {
			return fmt.Errorf("dsat: cannot load script %s: %w", name, err)
		}
	}
	return nil
}
