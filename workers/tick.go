package workers

import (
	"context"
	"time"
)

// every runs f now and then every d until ctx ends: the shape of the
// satellite's background loops (promote, heartbeat, scale, watch).
func every(ctx context.Context, d time.Duration, f func(ctx context.Context)) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		f(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
