// Package workers is the satellite runtime of dsat: the process side that
// runs handlers for pipeline steps.
//
// # Handlers
//
// A handler is registered by name on a Mux, like a route on an
// http.ServeMux; a step's handler: field names it and its with: map arrives
// as Task.With. RegisterBuiltins adds echo, sleep, fail, exec (one
// process per token, any language) and process (long-lived processes per
// step and satellite, speaking JSON lines: ProcessHandler). A handler that
// holds something per step implements StepOpener.
//
//	mux := workers.NewMux()
//	workers.RegisterBuiltins(mux, 0)
//	mux.HandleFunc("wordcount", func(ctx context.Context, t *dsat.Task) (dsat.Result, error) {
//		zerolog.Ctx(ctx).Info().Msg("counting") // task, step and satellite on every line
//		return dsat.Result{Output: []byte(`{"words": 3}`)}, nil
//	})
//
// An error retries the token with backoff while attempts remain; SkipRetry
// sends it straight to the dead letters; Snooze(d) runs it again later
// without using an attempt; a panic is an error (the stack goes to the log).
//
// # Satellites
//
// A Satellite hosts a pool of workers for each step it serves. Per step, one
// reader takes free pool slots and reads that many tokens with XREADGROUP
// (one blocking read covers every partition on a single Redis), so a
// satellite never holds tokens it cannot run. Each token runs in the
// state-machine wrapper: the handler under the step timeout, then Complete
// or Fail; a handler still running after the begin window (10ms) is begun
// while it runs (Begin: ACK, ownership for cancel, renewal and reclaim),
// and a faster one gets its ACK written by Complete or Fail. Around that,
// one background loop per file:
//
//   - reclaim (reclaim.go, in the reader): tokens idle past the visibility timeout (default step
//     timeout + 30s) are claimed with XAUTOCLAIM and run; entries delivered
//     more often than the step's attempts are poison and go to the dead
//     letters; deleted entries become "payload lost" dead letters;
//   - renewal (watch.go): a handler running long renews its claim every third of the
//     visibility timeout, only while it still owns the token;
//   - cancellation (watch.go): running handlers of a cancelled task see their context
//     cancelled within WatchInterval (500ms);
//   - promote (promote.go): due retries move back to their streams;
//   - heartbeat (heartbeat.go): the satellite's record with per-step load, expiring by
//     itself when the process dies;
//   - scale (scale_loop.go, policy in scale_policy.go): each pool moves
//     between the step's concurrency min and max, growing while there is a
//     backlog and its reader waited for free slots over the interval (not
//     at an instant: a fast handler's slots are free at almost every
//     instant), shrinking after a quiet period.
//
// Stop (or the end of the context given to Start) stops reading, lets
// running handlers finish until the shutdown timeout, then cancels them;
// their tokens stay pending for the reclaimer, so a shutdown, like a
// crash, loses nothing. A handler that ignores its cancellation is left
// behind after a short grace, named in the log.
//
// # Schedules
//
// A Scheduler (scheduler.go) fires the schedules stored in Redis: every
// Interval (500ms) it calls dsat.Client.FireSchedules, one read when
// nothing is due. dsat serve, worker and dev each run one; a worker binary
// of your own may run one too. Any number may run at once, with no
// leader: each slot still makes exactly one task.
package workers
