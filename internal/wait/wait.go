// Package wait holds the one way dsat's loops pause: for a duration or
// until their context ends, whichever comes first.
package wait

import (
	"context"
	"time"
)

// Sleep waits d or until ctx ends; it reports whether the whole d passed.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
