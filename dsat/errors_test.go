package dsat_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"

	"github.com/dsat-dev/dsat/dsat"
	"github.com/dsat-dev/dsat/internal/redistest"
)

// serverErr is an error reply of Redis (go-redis's redis.Error).
type serverErr string

func (e serverErr) Error() string { return string(e) }
func (serverErr) RedisError()     {}

func TestTemporary(t *testing.T) {
	t.Parallel()
	wrap := func(err error) error { return fmt.Errorf("dsat: complete: %w", err) }
	for _, err := range []error{io.EOF, context.DeadlineExceeded, &net.OpError{Op: "read", Err: errors.New("connection reset")},
		serverErr("LOADING Redis is loading the dataset in memory"), serverErr("BUSY Redis is busy running a script"),
		serverErr("TRYAGAIN"), serverErr("READONLY You can't write against a read only replica.")} {
		if !dsat.Temporary(err) || !dsat.Temporary(wrap(err)) {
			t.Errorf("%v: not temporary", err)
		}
	}
	for _, err := range []error{nil, dsat.ErrNoRoute, dsat.ErrStepNotFound, dsat.ErrInvalidPayload, dsat.ErrPipelineNotFound,
		errors.New("dsat: complete: unexpected reply 7"), serverErr("ERR wrong number of arguments"), context.Canceled} {
		if dsat.Temporary(err) || dsat.Temporary(wrap(err)) && err != nil {
			t.Errorf("%v: temporary", err)
		}
	}
}

// TestNoSuchStepIsFinal: a token of a step the loaded pipeline version
// does not have is answered with ErrStepNotFound (final: not retried).
func TestNoSuchStepIsFinal(t *testing.T) {
	t.Parallel()
	h := newHarness(t, redistest.Backends()[0], linearYAML)
	id := h.submit(`{}`)
	d := dsat.Delivery{Envelope: dsat.Envelope{Task: id, Step: "ghost", Token: "1", Attempt: 1}, EntryID: "1-1", Worker: "w"}
	_, _, err := h.c.Fail(h.ctx, d, dsat.Failure{Message: "x"})
	if !errors.Is(err, dsat.ErrStepNotFound) || dsat.Temporary(err) {
		t.Fatalf("fail of an unknown step: %v", err)
	}
	_, errs := h.c.CompleteBatch(h.ctx, []dsat.Completion{{Delivery: d, Output: []byte(`{}`)}})
	if !errors.Is(errs[0], dsat.ErrStepNotFound) {
		t.Fatalf("complete of an unknown step: %v", errs[0])
	}
}
