package workers

import (
	"time"

	"github.com/rs/zerolog"
)

// logEvery is how often one repeated log line may be written.
const logEvery = 5 * time.Second

// logLimited writes ev at most once per logEvery for key, so a loop that
// fails the same way (Redis down) does not flood the log.
func (s *Satellite) logLimited(key string, ev *zerolog.Event, msg string) {
	k := s.cfg.ID + "/" + key
	now := time.Now()
	if last, ok := s.logTimes.Load(k); ok && now.Sub(last.(time.Time)) < logEvery {
		ev.Discard()
		return
	}
	s.logTimes.Store(k, now)
	ev.Msg(msg)
}
