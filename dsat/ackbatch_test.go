package dsat_test

import (
	"slices"
	"testing"

	"github.com/dsat-dev/dsat/dsat"
	"github.com/dsat-dev/dsat/internal/redistest"
)

// TestCompleteRemovesExactlyTheAcknowledgedEntries: complete.lua removes a
// batch's entries with a trim of the stream's head where it can
// (lib.lua: ack_batch), and must still remove each acknowledged entry and
// nothing else: no entry still pending (running, or to be reclaimed), no
// entry not yet delivered, whatever the order the handlers finished in.
func TestCompleteRemovesExactlyTheAcknowledgedEntries(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, b redistest.Backend) {
		h := newHarness(t, b, linearYAML)
		stream := h.c.Keys().Step(h.p.Partition(0), "a")
		var tasks []string
		for range 6 {
			tasks = append(tasks, h.submit(`{}`))
		}
		ds := h.read("a")
		if len(ds) != 6 {
			t.Fatalf("read %d tokens", len(ds))
		}
		tasks = append(tasks, h.submit(`{}`), h.submit(`{}`)) // queued, not delivered
		undelivered := func() []string {
			all, err := h.rdb.XRange(h.ctx, stream, "-", "+").Result()
			if err != nil {
				t.Fatal(err)
			}
			return []string{all[len(all)-2].ID, all[len(all)-1].ID}
		}()
		// The stream holds exactly want, and want's entries of ds are the
		// group's pending ones.
		holds := func(what string, want []string, pending int64) {
			t.Helper()
			all, err := h.rdb.XRange(h.ctx, stream, "-", "+").Result()
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, m := range all {
				got = append(got, m.ID)
			}
			eq(t, what+": entries", got, want)
			pend, err := h.rdb.XPending(h.ctx, stream, "a").Result()
			if err != nil {
				t.Fatal(err)
			}
			eq(t, what+": pending", pend.Count, pending)
		}
		complete := func(ds ...dsat.Delivery) {
			t.Helper()
			var cs []dsat.Completion
			for _, d := range ds {
				cs = append(cs, dsat.Completion{Delivery: d, Output: []byte(`{}`)})
			}
			outs, errs := h.c.CompleteBatch(h.ctx, cs)
			for i := range cs {
				if errs[i] != nil || (outs[i] != dsat.Applied && outs[i] != dsat.AlreadyApplied) {
					t.Fatalf("complete %s: %v %v", cs[i].Delivery.EntryID, outs[i], errs[i])
				}
			}
		}
		holds("before", append([]string{ds[0].EntryID, ds[1].EntryID, ds[2].EntryID, ds[3].EntryID, ds[4].EntryID, ds[5].EntryID}, undelivered...), 6)
		// Tokens 0 and 3 still run; the others finished, out of order. The
		// entries before token 3 are trimmed or deleted, those after it
		// deleted: neither the running ones nor the undelivered go.
		complete(ds[5], ds[1], ds[4], ds[2])
		holds("around two running tokens", append([]string{ds[0].EntryID, ds[3].EntryID}, undelivered...), 2)
		// The same token twice in one call, beside a new one: the second is
		// already applied, and its entry is gone already.
		complete(ds[3], ds[3], ds[1])
		holds("a token twice", append([]string{ds[0].EntryID}, undelivered...), 1)
		complete(ds[0])
		holds("the oldest", undelivered, 0)
		rest := h.read("a")
		slices.Reverse(rest)
		complete(rest...)
		holds("all", nil, 0)
		h.drain(nil)
		for _, id := range tasks {
			eq(t, "status of "+id, h.state(id).Status, dsat.StatusSucceeded)
			h.checkInvariants(id)
		}
		h.streamsEmpty()
	})
}
