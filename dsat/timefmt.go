package dsat

import (
	"strconv"
	"time"
)

// TimeFormat is RFC 3339 with milliseconds, the format of every time dsat
// shows.
const TimeFormat = "2006-01-02T15:04:05.000Z07:00"

// Time is a time that encodes to JSON as RFC 3339 with milliseconds, UTC.
type Time struct{ time.Time }

// MarshalJSON implements json.Marshaler.
func (t Time) MarshalJSON() ([]byte, error) {
	if t.IsZero() {
		return []byte("null"), nil
	}
	return []byte(`"` + t.UTC().Format(TimeFormat) + `"`), nil
}

// UnmarshalJSON implements json.Unmarshaler.
func (t *Time) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		t.Time = time.Time{}
		return nil
	}
	s, err := strconv.Unquote(string(b))
	if err != nil {
		return err
	}
	v, err := time.Parse(time.RFC3339Nano, s)
	t.Time = v
	return err
}

// msTime turns a string of Unix milliseconds into a Time (zero if empty).
func msTime(s string) Time {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return Time{}
	}
	return Time{time.UnixMilli(n).UTC()}
}
