package workers

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dsat-dev/dsat/dsat"
	"github.com/dsat-dev/dsat/internal/redistest"
)

const progressYAML = `
name: prog
version: 1.0.0
steps:
  burst: {handler: burst, next: [steady]}
  steady: {handler: steady}
`

// progressEvents returns a task's events and its PROGRESS details.
func progressEvents(t *testing.T, b *bundle, id string) ([]dsat.Event, []string, []dsat.Event) {
	t.Helper()
	evs, err := b.c.History(b.ctx, id, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	var prog []dsat.Event
	for _, e := range evs {
		names = append(names, e.Event+":"+e.Step)
		if e.Event == dsat.EventProgress {
			prog = append(prog, e)
		}
	}
	return evs, names, prog
}

// TestProgressGoHandler: a Go handler reporting many times quickly gets
// its first report written at once and the rest throttled to 5 a second,
// the last one always kept and written before its END. The first report,
// made inside the begin window, writes the token's ACK; the late begin
// then finds it begun and the handler runs on.
func TestProgressGoHandler(t *testing.T) {
	redistest.ForEachBackend(t, func(t *testing.T, be redistest.Backend) {
		b := setup(t, be, progressYAML)
		m := NewMux()
		// took holds how long each handler's reports took (task/step): on a
		// loaded machine the sleeps stretch and the throttle lets more by.
		var took sync.Map
		m.HandleFunc("burst", func(ctx context.Context, task *dsat.Task) (dsat.Result, error) {
			defer func(t0 time.Time) { took.Store(task.ID+"/burst", time.Since(t0)) }(time.Now())
			for i := 1; i <= 10; i++ {
				Progress(ctx, float64(i)/10, fmt.Sprintf("%d/10", i))
				time.Sleep(10 * time.Millisecond) // past the begin window after a few
			}
			Progress(ctx, math.NaN(), "ignored")
			return dsat.Result{Output: task.Payload}, nil
		})
		m.HandleFunc("steady", func(ctx context.Context, task *dsat.Task) (dsat.Result, error) {
			defer func(t0 time.Time) { took.Store(task.ID+"/steady", time.Since(t0)) }(time.Now())
			for i := 1; i <= 40; i++ {
				Progress(ctx, float64(i)/40, fmt.Sprintf("%d/40", i))
				time.Sleep(20 * time.Millisecond)
			}
			return dsat.Result{Output: task.Payload}, nil
		})
		cfg := b.fast("s1")
		cfg.BeginWindow = 50 * time.Millisecond
		b.start(m, cfg)
		ids := b.submit(2, `{}`)
		for _, st := range b.wait(ids, 10*time.Second) {
			if st.Status != dsat.StatusSucceeded {
				t.Fatalf("task %s %s", st.ID, st.Status)
			}
			if st.Steps["burst"].Progress != nil {
				t.Fatalf("a done step keeps its progress: %+v", st.Steps["burst"].Progress)
			}
		}
		for _, id := range ids {
			_, names, prog := progressEvents(t, b, id)
			// at most one report per throttle interval, plus the last one
			allowed := func(step string) int {
				d, _ := took.Load(id + "/" + step)
				return int(d.(time.Duration)/progressInterval) + 2
			}
			want := regexp.MustCompile(`^INIT: ACK:burst (PROGRESS:burst ){2,}END:burst SEND:burst ACK:steady (PROGRESS:steady ){3,}END:steady HAPPY_END:$`)
			if got := strings.Join(names, " "); !want.MatchString(got) {
				t.Fatalf("events %s", got)
			}
			details := func(step string) (out []string) {
				for _, e := range prog {
					if e.Step == step {
						out = append(out, string(e.Detail))
					}
				}
				return out
			}
			eqJSON := func(what string, got []string, want ...string) {
				t.Helper()
				if strings.Join(got, " ") != strings.Join(want, " ") {
					t.Fatalf("%s: %v, want %v", what, got, want)
				}
			}
			// The first report, inside the begin window, wrote the ACK (one
			// call: one firehose entry).
			call := b.firehoseEntries(id)
			evs, _, _ := progressEvents(t, b, id)
			if call[evs[1].Seq] != call[evs[2].Seq] {
				t.Fatalf("the ACK of burst was not written by its first report")
			}
			burst := details("burst")
			if len(burst) > allowed("burst") {
				t.Fatalf("burst: %d PROGRESS events, %d allowed: %v", len(burst), allowed("burst"), burst)
			}
			eqJSON("burst", []string{burst[0], burst[len(burst)-1]}, `{"progress":0.1,"message":"1/10"}`, `{"progress":1,"message":"10/10"}`)
			steady := details("steady")
			// 40 reports over 800 ms (unloaded): about 5, never more than the throttle allows.
			if n := len(steady); n < 3 || n > allowed("steady") {
				t.Fatalf("steady: %d PROGRESS events: %v", n, steady)
			}
			if steady[len(steady)-1] != `{"progress":1,"message":"40/40"}` {
				t.Fatalf("steady: the last report is not kept: %v", steady)
			}
			// Reports are progressInterval apart, but for the last: the
			// handler's end writes it at once, not waiting for the throttle.
			var at []time.Time
			for _, e := range prog {
				if e.Step == "steady" {
					at = append(at, e.At.Time)
				}
			}
			for i := 1; i < len(at)-1; i++ {
				if at[i].Sub(at[i-1]) < progressInterval-5*time.Millisecond {
					t.Fatalf("steady: reports %v apart", at[i].Sub(at[i-1]))
				}
			}
		}
		b.streamsEmpty()
	})
}

// TestProgressExec: an exec step reports on file descriptor 3; bad and
// overlong lines are ignored.
func TestProgressExec(t *testing.T) {
	be := redistest.Backends()[0]
	sh := script(t, `printf 'not json\n' >&3
head -c 5000 /dev/zero | tr '\0' x >&3; printf '\n' >&3
printf '{"progress":0.5,"message":"half"}\n' >&3
cat`)
	b := setup(t, be, fmt.Sprintf(`
name: prog
version: 1.0.0
steps:
  a: {handler: exec, with: {command: [%q]}}
`, sh))
	m := NewMux()
	RegisterBuiltins(m, 0)
	b.start(m, b.fast("s1"))
	id := b.submit(1, `{"n":1}`)[0]
	if st := b.wait([]string{id}, 10*time.Second)[0]; st.Status != dsat.StatusSucceeded || string(st.Result) != `{"n":1}` {
		t.Fatalf("state %+v", st)
	}
	_, names, prog := progressEvents(t, b, id)
	if strings.Join(names, " ") != "INIT: ACK:a PROGRESS:a END:a HAPPY_END:" || string(prog[0].Detail) != `{"progress":0.5,"message":"half"}` {
		t.Fatalf("events %v %v", names, prog)
	}
	if l := b.log.String(); !strings.Contains(l, "progress line ignored") || !strings.Contains(l, "longer than 4096 bytes") {
		t.Fatalf("bad lines not logged:\n%s", l)
	}
}

// TestProgressProcess: a process worker's {"id", "progress", "message"}
// lines become PROGRESS events.
func TestProgressProcess(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b := setup(t, redistest.Backends()[0], fmt.Sprintf(`
name: prog
version: 1.0.0
steps:
  a:
    handler: process
    with: {command: [%q], env: {%s: serve, GORACE: atexit_sleep_ms=0}}
`, exe, testWorkerEnv))
	m := NewMux()
	RegisterBuiltins(m, 0)
	b.start(m, b.fast("s1"))
	id := b.submit(1, `{"progress": true, "sleep_ms": 30}`)[0]
	if st := b.wait([]string{id}, 10*time.Second)[0]; st.Status != dsat.StatusSucceeded {
		t.Fatalf("state %+v", st)
	}
	_, names, prog := progressEvents(t, b, id)
	if strings.Join(names, " ") != "INIT: ACK:a PROGRESS:a END:a HAPPY_END:" {
		t.Fatalf("events %v", names)
	}
	var d struct {
		Progress float64
		Message  string
	}
	if err := json.Unmarshal(prog[0].Detail, &d); err != nil || d.Progress != 0.5 || d.Message != "half way" {
		t.Fatalf("detail %s", prog[0].Detail)
	}
}

// TestProgressOutsideAHandler: Progress with no token in the context does
// nothing; a handler that never reports allocates nothing for it.
func TestProgressOutsideAHandler(t *testing.T) {
	Progress(context.Background(), 0.5, "nobody listens")
	j := &job{}
	j.pc = progressCtx{Context: context.Background(), j: j}
	ctx, cancel := context.WithTimeout(&j.pc, time.Second)
	defer cancel()
	if got, _ := ctx.Value(progressKey{}).(*job); got != j {
		t.Fatal("the handler's context does not carry its job")
	}
	if n := testing.AllocsPerRun(100, func() { j.prog.closed = false; j.endProgress() }); n != 0 {
		t.Fatalf("endProgress of a job that never reported: %v allocations", n)
	}
}
