package dsat

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/dsat-dev/dsat/lua"
)

// EventProgress is a running handler's progress report (issue 18): detail
// {"progress": 0.4, "message": "11/54 pages"}.
const EventProgress = "PROGRESS"

// MaxProgressMessage bounds a progress report's message, in bytes; a
// longer one is cut (on a character boundary).
const MaxProgressMessage = 256

// ErrBadProgress: a progress value that is not a number (NaN, ±Inf).
var ErrBadProgress = errors.New("dsat: progress is not a number")

// StepProgress is a step's latest progress report, as GET /v1/tasks/{id}
// shows it in steps.<name>.progress.
type StepProgress struct {
	Value   float64 `json:"value"`
	Message string  `json:"message"`
	At      Time    `json:"at"`
}

// CleanProgress checks a progress report: NaN and ±Inf are ErrBadProgress;
// a value out of [0, 1] is clamped into it (and rounded to 4 decimals); the
// message is made valid UTF-8 (bad bytes become U+FFFD) and cut to
// MaxProgressMessage bytes.
func CleanProgress(value float64, message string) (float64, string, error) {
	if math.IsNaN(value) || math.IsInf(value, 0) {
		return 0, "", ErrBadProgress
	}
	value = math.Round(min(max(value, 0), 1)*1e4) / 1e4
	if !utf8.ValidString(message) {
		message = strings.ToValidUTF8(message, "\uFFFD")
	}
	if len(message) > MaxProgressMessage {
		n := MaxProgressMessage
		for n > 0 && !utf8.RuneStart(message[n]) {
			n--
		}
		message = message[:n]
	}
	return value, message, nil
}

// Progress records a running handler's progress report: the event
// PROGRESS and the step's progress in the task's state. It writes nothing
// unless the token is live at its step and attempt and not held by another
// worker (Dropped then). A token not yet begun (d.Started set: its handler
// runs in the satellite's begin window) gets its ACK first, at d.Started;
// its Begin then answers AlreadyApplied. The report is cleaned by
// CleanProgress first (NaN or ±Inf: ErrBadProgress, nothing sent).
// Throttling is the caller's (workers.Progress: at most 5 a second).
func (c *Client) Progress(ctx context.Context, d Delivery, value float64, message string) (Outcome, error) {
	value, message, err := CleanProgress(value, message)
	if err != nil {
		return 0, err
	}
	p, err := deliveryPartition(d)
	if err != nil {
		return 0, err
	}
	detail, _ := json.Marshal(struct {
		Progress float64 `json:"progress"`
		Message  string  `json:"message"`
	}{value, message})
	keys := []string{c.keys.Firehose(p), c.keys.Task(p, d.Task), c.keys.TaskLog(p, d.Task), c.keys.TaskIndex(p)}
	r, err := c.runScript(ctx, lua.Progress, keys, ms(c.cfg.Now()), c.cfg.FirehoseMaxLen, d.Task, d.Token,
		d.Attempt, d.Step, d.Worker, d.startedArg(), strconv.FormatFloat(value, 'f', -1, 64), message, string(detail))
	if err != nil {
		return 0, err
	}
	if replyCode(r) == 1 {
		return Applied, nil
	}
	return Dropped, nil
}

// parseProgress reads a step's progress field "<value>|<at ms>|<message>"
// (lua/progress.lua).
func parseProgress(v string) (*StepProgress, bool) {
	parts := strings.SplitN(v, "|", 3)
	if len(parts) != 3 {
		return nil, false
	}
	f, err := strconv.ParseFloat(parts[0], 64)
	if err != nil {
		return nil, false
	}
	return &StepProgress{Value: f, At: msTime(parts[1]), Message: parts[2]}, true
}
