package workers

import (
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// logEvery is how often one repeated log line may be written.
const logEvery = 5 * time.Second

// logLimiter writes a repeated log line at most once per logEvery per key,
// so a loop that fails the same way (Redis down) does not flood the log.
type logLimiter struct {
	times sync.Map // key -> time.Time of the last line
}

func (l *logLimiter) write(key string, ev *zerolog.Event, msg string) {
	now := time.Now()
	if last, ok := l.times.Load(key); ok && now.Sub(last.(time.Time)) < logEvery {
		ev.Discard()
		return
	}
	l.times.Store(key, now)
	ev.Msg(msg)
}

// logLimited writes ev at most once per logEvery for key.
func (s *Satellite) logLimited(key string, ev *zerolog.Event, msg string) {
	s.logs.write(s.cfg.ID+"/"+key, ev, msg)
}
