package dsat

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dsat-dev/dsat/lua"
)

// Issue 17's sub-pipeline steps, run-time side (docs/design.md,
// "Sub-pipelines"). A pipeline without them pays nothing: no script reads
// a field, and no sweep reads a key, for it.

// ChildPrefix marks the worker of a sub-pipeline step's token while its
// child task runs ("child:<child id>" in the token record and its END).
const ChildPrefix = "child:"

// ChildIdempotencyKey is the idempotency key of the child task that a
// sub-pipeline step's token submits: the same token and attempt submit one
// child, however often the token is run (a reclaim after a crash).
func ChildIdempotencyKey(d Delivery) string {
	return "dsat/child/" + d.Task + "/" + d.Token + "/" + strconv.Itoa(d.Attempt)
}

// StartChild runs a token of a sub-pipeline step: it submits the child
// task of the step's pipeline with the token's input (idempotent per
// token and attempt) at the parent task's priority (the token's), records
// the parent in the child's state, and parks
// the token (subpipe_park.lua): running, held by no worker, its stream
// entry acknowledged. SettleChildren ends it when the child ends. It
// returns the child's id. Applied: parked now; AlreadyApplied: parked
// before; Dropped: the token is no longer wanted (a cancelled parent also
// cancels the child). A submission refused (the child pipeline not
// loaded, the input not valid for it, its entry backlog full) is an error:
// fail the token with it.
func (c *Client) StartChild(ctx context.Context, d Delivery) (string, Outcome, error) {
	p, keys, err := c.taskKeys(d)
	if err != nil {
		return "", 0, err
	}
	cp, err := c.pipelineFor(p)
	if err != nil {
		return "", 0, err
	}
	st, ok := cp.p.Steps[d.Step]
	if !ok || st.Pipeline == "" {
		return "", 0, fmt.Errorf("%w: pipeline %s %s has no sub-pipeline step %q", ErrStepNotFound, p.Pipeline, p.API, d.Step)
	}
	opts := SubmitOptions{IdempotencyKey: ChildIdempotencyKey(d), Trace: d.Trace, Priority: d.Priority}
	if st.ChildTimeout > 0 {
		// Counted from this hand-off; a repeated one (a reclaimed token)
		// gets the first child back, with its first deadline.
		opts.Deadline = c.cfg.Now().Add(st.ChildTimeout)
	}
	sub, err := c.Submit(ctx, st.Pipeline, d.Payload, opts)
	if err != nil {
		return "", 0, fmt.Errorf("dsat: submit the child task of %s/%s: %w", d.Task, d.Step, err)
	}
	child := sub.ID
	ctid, err := ParseTaskID(child)
	if err != nil {
		return "", 0, err
	}
	parent := d.Task + "|" + d.Step + "|" + d.Token + "|" + strconv.Itoa(d.Attempt)
	if err := lua.SubpipeLink.Run(ctx, c.rdb, []string{c.keys.Task(ctid.Partition, child)}, parent).Err(); err != nil {
		return "", 0, fmt.Errorf("dsat: link child %s: %w", child, err)
	}
	keys = append(keys, c.keys.Children(p), c.keys.ChildInput(p, d.Task, d.Token), c.keys.TaskIndex(p))
	r, err := c.runScript(ctx, lua.SubpipePark, keys, d.Task, d.Token, d.Attempt, d.EntryID, d.Step, d.Worker,
		ms(c.cfg.Now()), c.cfg.FirehoseMaxLen, child, st.Pipeline, d.startedArg(), string(d.Payload))
	if err != nil {
		return "", 0, err
	}
	switch replyCode(r) {
	case 1:
		return child, Applied, nil
	case 0:
		return child, AlreadyApplied, nil
	case -2:
		if err := c.Cancel(ctx, child, "parent cancelled"); err != nil && !errors.Is(err, ErrTaskFinal) && !errors.Is(err, ErrTaskNotFound) {
			return child, Dropped, err
		}
		return child, Dropped, nil
	case -1:
		return child, Dropped, nil
	}
	return "", 0, fmt.Errorf("dsat: park: unexpected reply %v", r)
}

// childRef is one member of a partition's children set.
type childRef struct {
	member, task, token, step, child string
	attempt                          int
}

func parseChildRef(m string) (childRef, bool) {
	f := strings.Split(m, "|")
	if len(f) != 5 {
		return childRef{}, false
	}
	att, err := strconv.Atoi(f[2])
	if err != nil {
		return childRef{}, false
	}
	return childRef{member: m, task: f[0], token: f[1], attempt: att, step: f[3], child: f[4]}, true
}

// childView is what a sweep reads of one waiting token and its child.
type childView struct {
	parentStatus, record string
	status, err, result  string
	input                []byte
	// deadline is the child's deadline (ms; "" none): a sub-pipeline
	// step's timeout (Step.ChildTimeout).
	deadline string
}

// childBatch is how many waiting tokens a sweep reads per round trip.
const childBatch = 100

// SettleChildren ends the sub-pipeline tokens of partition p whose child
// task ended: the step completes with the child's result, or fails with
// its error (and is retried by the step's policy: a new child). A token
// whose task was cancelled has its child cancelled. Each is then removed
// from the partition's children set, only after its parent's script ran,
// so a process that dies in between loses nothing: the next sweep (any
// process) runs the script again, which then changes nothing. It returns
// how many tokens it ended. Satellites run it about once a second for the
// partitions of the pipelines with sub-pipeline steps that they serve,
// dsat serve for every such pipeline; concurrent runs are harmless.
func (c *Client) SettleChildren(ctx context.Context, p Partition) (int, error) {
	return c.settleChildren(ctx, p, true)
}

func (c *Client) settleChildren(ctx context.Context, p Partition, forget bool) (int, error) {
	key := c.keys.Children(p)
	n := 0
	for off := int64(0); ctx.Err() == nil; {
		members, err := c.rdb.ZRange(ctx, key, off, off+childBatch-1).Result()
		if err != nil {
			return n, fmt.Errorf("dsat: read children of %s: %w", p.Tag(), err)
		}
		refs := make([]childRef, 0, len(members))
		for _, m := range members {
			if ref, ok := parseChildRef(m); ok {
				refs = append(refs, ref)
			}
		}
		views, err := c.readChildren(ctx, p, refs)
		if err != nil {
			return n, err
		}
		removed := 0
		for i, ref := range refs {
			done, ended, err := c.settleChild(ctx, p, ref, views[i])
			if err != nil {
				return n, err
			}
			if ended {
				n++
			}
			if done && forget {
				if err := c.forgetChild(ctx, p, ref); err != nil {
					return n, err
				}
				removed++
			}
		}
		if len(members) < childBatch {
			break
		}
		off += int64(len(members) - removed)
	}
	return n, ctx.Err()
}

// readChildren reads, in one round trip, each waiting token's record and
// task status, its child's status, error and result, and its kept input.
func (c *Client) readChildren(ctx context.Context, p Partition, refs []childRef) ([]childView, error) {
	type cmds struct {
		parent, child *redis.SliceCmd
		res, input    *redis.StringCmd
	}
	cs := make([]cmds, len(refs))
	_, err := c.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for i, ref := range refs {
			cs[i].parent = pipe.HMGet(ctx, c.keys.Task(p, ref.task), "status", "k:"+ref.token)
			cs[i].input = pipe.Get(ctx, c.keys.ChildInput(p, ref.task, ref.token))
			if ctid, err := ParseTaskID(ref.child); err == nil {
				ck := c.keys.Task(ctid.Partition, ref.child)
				cs[i].child = pipe.HMGet(ctx, ck, "status", "error", "deadline")
				cs[i].res = pipe.Get(ctx, c.keys.TaskResult(ctid.Partition, ref.child))
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("dsat: read children of %s: %w", p.Tag(), err)
	}
	str := func(v []any, i int) string {
		if i < len(v) {
			s, _ := v[i].(string)
			return s
		}
		return ""
	}
	views := make([]childView, len(refs))
	for i := range refs {
		pv := cs[i].parent.Val()
		views[i] = childView{parentStatus: str(pv, 0), record: str(pv, 1), input: []byte(cs[i].input.Val())}
		if cs[i].child != nil {
			cv := cs[i].child.Val()
			views[i].status, views[i].err, views[i].result = str(cv, 0), str(cv, 1), cs[i].res.Val()
			views[i].deadline = str(cv, 2)
		}
	}
	return views, nil
}

// settleChild acts on one waiting token: done says its member may leave
// the set, ended that the token ended now with its child's outcome.
func (c *Client) settleChild(ctx context.Context, p Partition, ref childRef, v childView) (done, ended bool, err error) {
	held := "r|" + strconv.Itoa(ref.attempt) + "|" + ref.step + "|" + ChildPrefix + ref.child
	switch {
	case v.parentStatus == StatusCancelled:
		if err := c.Cancel(ctx, ref.child, "parent cancelled"); err != nil && !errors.Is(err, ErrTaskFinal) &&
			!errors.Is(err, ErrTaskNotFound) && !errors.Is(err, ErrInvalidTaskID) {
			return false, false, err
		}
		return true, false, nil
	case v.record != held:
		return true, false, nil // ended before (its member left behind), or the task is gone
	case v.status != "" && !Final(v.status):
		return false, false, nil // the child still runs
	}
	input := v.input
	if len(input) == 0 {
		input = []byte("null")
	}
	d := Delivery{Envelope: Envelope{Task: ref.task, Step: ref.step, Token: ref.token, Attempt: ref.attempt, Payload: input},
		Worker: ChildPrefix + ref.child}
	var o Outcome
	if v.status == StatusSucceeded {
		o, err = c.Complete(ctx, d, []byte(v.result), "")
		if errors.Is(err, ErrNoRoute) {
			o, _, err = c.Fail(ctx, d, Failure{Message: err.Error(), Final: true})
		}
	} else {
		o, _, err = c.Fail(ctx, d, Failure{Message: childFailure(ref.child, v, c.cfg.Now())})
	}
	if err != nil {
		return false, false, fmt.Errorf("dsat: end the sub-pipeline step %s/%s: %w", ref.task, ref.step, err)
	}
	return true, o == Applied, nil
}

// childFailure is the error of a sub-pipeline step whose child did not
// succeed.
func childFailure(child string, v childView, now time.Time) string {
	dl, _ := strconv.ParseInt(v.deadline, 10, 64)
	switch {
	case v.status == StatusCancelled && dl > 0 && dl <= now.UnixMilli():
		return fmt.Sprintf("child task %s cancelled: it ran past the step's timeout", child)
	case v.status == "":
		return fmt.Sprintf("child task %s not found (expired or purged)", child)
	case v.err != "":
		return fmt.Sprintf("child task %s %s: %s", child, v.status, v.err)
	}
	return fmt.Sprintf("child task %s %s", child, v.status)
}

// forgetChild removes a settled token from the children set, with its
// kept input.
func (c *Client) forgetChild(ctx context.Context, p Partition, ref childRef) error {
	_, err := c.rdb.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
		pipe.Del(ctx, c.keys.ChildInput(p, ref.task, ref.token))
		pipe.ZRem(ctx, c.keys.Children(p), ref.member)
		return nil
	})
	if err != nil {
		return fmt.Errorf("dsat: forget child %s: %w", ref.child, err)
	}
	return nil
}

// HasSubPipelines reports whether a step of p is a sub-pipeline step (its
// partitions need SettleChildren sweeps).
func (p *Pipeline) HasSubPipelines() bool {
	for _, name := range p.Order {
		if p.Steps[name].Pipeline != "" {
			return true
		}
	}
	return false
}

// ParentRef names the sub-pipeline step that submitted a child task.
type ParentRef struct {
	Task string `json:"task"`
	Step string `json:"step"`
}

// subpipeState adds a task's parent and its steps' children to its state.
func subpipeState(st *TaskState, h map[string]string) {
	if v := h["parent"]; v != "" {
		f := strings.SplitN(v, "|", 3)
		if len(f) >= 2 {
			st.Parent = &ParentRef{Task: f[0], Step: f[1]}
		}
	}
	for name, s := range st.Steps {
		if child, ok := strings.CutPrefix(s.Worker, ChildPrefix); ok {
			s.Child, s.Worker = child, ""
			st.Steps[name] = s
		}
	}
}
