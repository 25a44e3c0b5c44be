package httpapi

import (
	"context"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/dsat-dev/dsat/dsat"
	"github.com/dsat-dev/dsat/internal/wait"
)

// hubs fans each partition's firehose out to every open event stream of
// this process: one Redis reader per partition, started by the first
// subscriber and stopped with the last, never one blocking read per HTTP
// client.
type hubs struct {
	c   *dsat.Client
	log zerolog.Logger
	m   *Metrics
	mu  sync.Mutex
	all map[dsat.Partition]*hub
	// readers counts the running reader goroutines; close waits for them.
	readers sync.WaitGroup
}

func newHubs(c *dsat.Client, log zerolog.Logger, m *Metrics) *hubs {
	return &hubs{c: c, log: log, m: m, all: map[dsat.Partition]*hub{}}
}

// hub is one partition's reader and its subscribers.
type hub struct {
	part   dsat.Partition
	start  string // the firehose's last id when the reader started
	mu     sync.Mutex
	last   string // id of the last entry broadcast (guarded by mu)
	subs   map[*subscriber]struct{}
	cancel context.CancelFunc
}

// subscriber receives the events of some partitions (optionally of one
// task only); every subscriber gets the same *Event, which nobody changes. When it falls behind by more than its buffer, overflow is
// closed and the stream ends; the client resumes with Last-Event-ID.
type subscriber struct {
	task     string
	ch       chan *dsat.Event
	overflow chan struct{}
	once     sync.Once
}

const subscriberBuffer = 1024

func newSubscriber(task string) *subscriber {
	return &subscriber{task: task, ch: make(chan *dsat.Event, subscriberBuffer), overflow: make(chan struct{})}
}

// subscribe adds s to the partition's hub and returns the position from
// which the hub delivers (every later event reaches s).
func (hs *hubs) subscribe(ctx context.Context, p dsat.Partition, s *subscriber) (string, error) {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	h, ok := hs.all[p]
	if !ok {
		last, err := hs.c.FirehoseLast(ctx, p)
		if err != nil {
			return "", err
		}
		h = &hub{part: p, start: last, subs: map[*subscriber]struct{}{}}
		h.last = h.start
		var rctx context.Context
		rctx, h.cancel = context.WithCancel(context.Background())
		hs.all[p] = h
		hs.readers.Add(1)
		go func() {
			defer hs.readers.Done()
			hs.read(rctx, h)
		}()
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.subs[s] = struct{}{}
	return h.last, nil
}

// unsubscribe removes s; the last one out stops the reader.
func (hs *hubs) unsubscribe(p dsat.Partition, s *subscriber) {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	h, ok := hs.all[p]
	if !ok {
		return
	}
	h.mu.Lock()
	delete(h.subs, s)
	empty := len(h.subs) == 0
	h.mu.Unlock()
	if empty {
		h.cancel()
		delete(hs.all, p)
	}
}

// close stops every reader and waits for them (each read blocks at most
// readBlock). Subscribers still open are left; the API closes them first.
func (hs *hubs) close() {
	hs.mu.Lock()
	for p, h := range hs.all {
		h.cancel()
		delete(hs.all, p)
	}
	hs.mu.Unlock()
	hs.readers.Wait()
}

// readBlock bounds one blocking firehose read: a stopped reader exits
// within it (close waits for that), at the cost of a few empty reads a
// second while a feed is open and nothing happens.
const readBlock = 250 * time.Millisecond

// read follows the partition's firehose until ctx ends; a stopped hub's
// goroutine exits within readBlock.
func (hs *hubs) read(ctx context.Context, h *hub) {
	last := h.start
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		entries, err := hs.c.FirehoseRead(ctx, h.part, last, 500, readBlock)
		if err != nil {
			if ctx.Err() == nil {
				hs.log.Warn().Err(err).Str("partition", h.part.Tag()).Msg("firehose read failed")
			}
			wait.Sleep(ctx, backoff)
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		for _, m := range entries {
			last = m.ID
			evs := m.Events
			if evs == nil {
				h.broadcast(m.ID, nil)
				continue
			}
			for i := range evs {
				hs.m.events.WithLabelValues(evs[i].Pipeline, evs[i].Event).Inc()
				h.broadcast(evs[i].ID, &evs[i])
			}
		}
	}
}

// broadcast hands an event to every subscriber and moves the hub's
// position to its event id, under one lock, so a new subscriber misses
// nothing after the position subscribe returned. A nil ev (an entry that
// does not parse) only moves the position.
func (h *hub) broadcast(id string, ev *dsat.Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.last = id
	if ev == nil {
		return
	}
	for s := range h.subs {
		if s.task != "" && s.task != ev.Task {
			continue
		}
		select {
		case s.ch <- ev:
		default:
			s.once.Do(func() { close(s.overflow) })
		}
	}
}
