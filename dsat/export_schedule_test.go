package dsat

import (
	"context"
	"time"
)

// FireStaleForTest reads a schedule, runs between (other processes fire
// it meanwhile), then fires it as it was read: a stalled process.
func FireStaleForTest(ctx context.Context, c *Client, id string, between func()) (bool, error) {
	rec, err := c.readSchedule(ctx, id)
	if err != nil {
		return false, err
	}
	between()
	_, ok, err := c.fireRecord(ctx, rec)
	return ok, err
}

// ClaimOnlyForTest claims a schedule's due firing and submits nothing: a
// process that died right after its claim. It returns the claimed slots.
func ClaimOnlyForTest(ctx context.Context, c *Client, id string) ([]time.Time, error) {
	rec, err := c.readSchedule(ctx, id)
	if err != nil || rec == nil {
		return nil, err
	}
	cl, err := c.claim(ctx, rec)
	if err != nil || cl == nil {
		return nil, err
	}
	return cl.slots, nil
}
