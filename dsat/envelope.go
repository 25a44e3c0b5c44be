package dsat

import (
	"fmt"
	"strconv"
	"strings"
)

// EnvelopeVersion is the format version of stream entries. A reader accepts
// entries whose version is compatible (same X.Y).
var EnvelopeVersion = MustParseVersion("1.0.0")

// DefaultContentType is the content type of payloads unless told otherwise.
const DefaultContentType = "application/json"

// DefaultMaxPayload is the largest payload accepted (1 MiB).
const DefaultMaxPayload = 1 << 20

// Envelope is one token: one stream entry of a step stream.
type Envelope struct {
	Task    string // task id
	Step    string // the step the token is for
	Token   string // token id, unique within the task
	Attempt int    // 1 for the first run
	V       Version
	PV      Version // pipeline version
	CT      string  // payload content type
	Payload []byte
	TS      int64  // when the token was emitted (Unix ms)
	Trace   string // optional W3C traceparent
}

// Envelope field names. The Lua scripts write the same fields when they
// emit tokens (lua/lib.lua: emit_token); a contract test parses those with
// ParseEnvelope.
const (
	fTask    = "task"
	fStep    = "step"
	fToken   = "token"
	fAttempt = "attempt"
	fV       = "v"
	fPV      = "pv"
	fCT      = "ct"
	fPayload = "payload"
	fTS      = "ts"
	fTrace   = "trace"
)

// Fields encodes e as XADD field/value pairs.
func (e Envelope) Fields() []any {
	out := []any{
		fTask, e.Task, fStep, e.Step, fToken, e.Token,
		fAttempt, strconv.Itoa(e.Attempt), fV, e.V.API(), fPV, e.PV.String(),
		fCT, e.CT, fPayload, string(e.Payload), fTS, strconv.FormatInt(e.TS, 10),
	}
	if e.Trace != "" {
		out = append(out, fTrace, e.Trace)
	}
	return out
}

// EnvelopeError says why a stream entry is not a valid token. It wraps
// ErrInvalidEnvelope.
type EnvelopeError struct {
	Field  string
	Reason string
}

func (e *EnvelopeError) Error() string {
	if e.Field == "" {
		return "invalid envelope: " + e.Reason
	}
	return "invalid envelope: field " + strconv.Quote(e.Field) + ": " + e.Reason
}

// Unwrap returns ErrInvalidEnvelope.
func (e *EnvelopeError) Unwrap() error { return ErrInvalidEnvelope }

// ParseEnvelope strictly parses a stream entry's values. Every field but
// trace is required, no unknown field is allowed, the format version must be
// compatible with EnvelopeVersion and the payload at most maxPayload bytes
// (0 means DefaultMaxPayload).
func ParseEnvelope(values map[string]any, maxPayload int) (Envelope, error) {
	if maxPayload <= 0 {
		maxPayload = DefaultMaxPayload
	}
	var e Envelope
	get := func(k string) (string, bool) {
		v, ok := values[k]
		if !ok {
			return "", false
		}
		s, isStr := v.(string)
		return s, isStr
	}
	bad := func(f, why string) (Envelope, error) { return Envelope{}, &EnvelopeError{Field: f, Reason: why} }
	if len(values) == 0 {
		return bad("", "entry has no fields (payload lost)")
	}
	for k := range values {
		switch k {
		case fTask, fStep, fToken, fAttempt, fV, fPV, fCT, fPayload, fTS, fTrace:
		default:
			if len(k) > 40 {
				k = k[:40] + "..."
			}
			return bad(k, "unknown field")
		}
	}
	for _, k := range []string{fV, fTask, fStep, fToken, fAttempt, fPV, fCT, fPayload, fTS} {
		if _, ok := get(k); !ok {
			return bad(k, "missing")
		}
	}
	vs, _ := get(fV)
	v, err := ParseVersion(vs)
	if err != nil {
		return bad(fV, err.Error())
	}
	if !v.Compatible(EnvelopeVersion) {
		return bad(fV, fmt.Sprintf("format %s is not compatible with this reader's %s", v.API(), EnvelopeVersion.API()))
	}
	e.V = v
	e.Task, _ = get(fTask)
	if _, err := ParseTaskID(e.Task); err != nil {
		return bad(fTask, err.Error())
	}
	e.Step, _ = get(fStep)
	if !ValidName(e.Step) {
		return bad(fStep, "not a valid step name")
	}
	e.Token, _ = get(fToken)
	if !validTokenID(e.Token) {
		return bad(fToken, "must be a positive number")
	}
	as, _ := get(fAttempt)
	if n, err := strconv.Atoi(as); err != nil || n < 1 || n > 1000 || strconv.Itoa(n) != as {
		return bad(fAttempt, "must be a number from 1 to 1000")
	} else {
		e.Attempt = n
	}
	pvs, _ := get(fPV)
	if e.PV, err = ParseVersion(pvs); err != nil {
		return bad(fPV, err.Error())
	}
	if e.CT, _ = get(fCT); e.CT == "" || len(e.CT) > 200 {
		return bad(fCT, "must be a content type")
	}
	payload, _ := get(fPayload)
	if len(payload) > maxPayload {
		return bad(fPayload, fmt.Sprintf("%d bytes is larger than the limit of %d", len(payload), maxPayload))
	}
	e.Payload = []byte(payload)
	ts, _ := get(fTS)
	if e.TS, err = strconv.ParseInt(ts, 10, 64); err != nil || e.TS <= 0 {
		return bad(fTS, "must be a positive number of milliseconds")
	}
	if tr, ok := values[fTrace]; ok {
		s, isStr := tr.(string)
		if !isStr || CheckTrace(s) != nil {
			return bad(fTrace, "must be a W3C traceparent")
		}
		e.Trace = s
	}
	return e, nil
}

// validTokenID reports whether s is a token id: a positive number without
// leading zeros.
func validTokenID(s string) bool {
	n, err := strconv.ParseUint(s, 10, 32)
	return err == nil && n != 0 && strconv.FormatUint(n, 10) == s
}

// CheckTrace checks a W3C traceparent (https://www.w3.org/TR/trace-context/):
// "<version>-<trace id>-<parent id>-<flags>", lower-case hex of 2, 32, 16
// and 2 digits, neither id all zeros, version not ff; a later version may
// append fields ("-..."), up to 128 bytes in all. "" is no trace. Submit
// and the satellites apply the same check, so a task is never accepted
// with a trace its tokens would be refused for.
func CheckTrace(s string) error {
	if s == "" {
		return nil
	}
	bad := func(why string) error { return fmt.Errorf("%w: %s", ErrInvalidTrace, why) }
	if len(s) > 128 {
		return bad(fmt.Sprintf("%d bytes, at most 128", len(s)))
	}
	if len(s) < 55 || s[2] != '-' || s[35] != '-' || s[52] != '-' || (len(s) > 55 && s[55] != '-') {
		return bad(`want "00-<32 hex digits>-<16 hex digits>-<2 hex digits>"`)
	}
	hex := func(x string) bool {
		for i := 0; i < len(x); i++ {
			if c := x[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
				return false
			}
		}
		return true
	}
	version, trace, parent, flags := s[0:2], s[3:35], s[36:52], s[53:55]
	switch {
	case !hex(version) || !hex(trace) || !hex(parent) || !hex(flags):
		return bad("fields must be lower-case hex digits")
	case version == "ff":
		return bad("version ff is invalid")
	case version == "00" && len(s) != 55:
		return bad("version 00 has exactly four fields")
	case strings.Trim(trace, "0") == "" || strings.Trim(parent, "0") == "":
		return bad("trace id and parent id must not be all zeros")
	}
	return nil
}
