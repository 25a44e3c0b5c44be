package dsat

import "context"

// SettleChildrenNoForgetForTest is SettleChildren by a process that dies
// after each parent script and before removing the member from the
// children set.
func SettleChildrenNoForgetForTest(ctx context.Context, c *Client, p Partition) (int, error) {
	return c.settleChildren(ctx, p, false)
}
