package dsat

import (
	"fmt"
	"strconv"
	"strings"
)

// EnvelopeVersion is the format version of the stream entries this
// version writes: 1.1, the packed header (see Envelope.Fields). A reader
// accepts entries whose version is compatible (same X.Y) and, so that
// tokens queued before an upgrade are not lost, entries of format 1.0
// (LegacyEnvelopeVersion: one field per value).
var EnvelopeVersion = MustParseVersion("1.1.0")

// LegacyEnvelopeVersion is the format of entries written before the packed
// header (format 1.1): ten fields, task, step, token, attempt,
// v, pv, ct, payload, ts and trace. ParseEnvelope still reads them.
var LegacyEnvelopeVersion = MustParseVersion("1.0.0")

// DefaultContentType is the content type of payloads unless told otherwise.
const DefaultContentType = "application/json"

// DefaultMaxPayload is the largest payload accepted (1 MiB).
const DefaultMaxPayload = 1 << 20

// Envelope is one token: one stream entry of a step stream.
type Envelope struct {
	Task    string  // task id
	Step    string  // the step the token is for
	Token   string  // token id, unique within the task
	Attempt int     // 1 for the first run
	V       Version // the format the entry was read in (Fields writes EnvelopeVersion's)
	PV      Version // pipeline version
	CT      string  // payload content type
	Payload []byte
	TS      int64  // when the token was emitted (Unix ms)
	Trace   string // optional W3C traceparent
	// Priority is the task's priority (field pr, only when not normal);
	// a token waits in the stream of its level (Keys.StepAt).
	Priority Priority
}

// Envelope field names. The Lua scripts write the same fields when they
// emit tokens (lua/lib.lua: token_fields, new_token); the contract tests
// parse those with ParseEnvelope.
//
// Format 1.1 (written): fH, the packed header
// "<v>|<task>|<step>|<token>|<attempt>|<pv>|<ts>", then fPayload; fCT
// only for a content type other than DefaultContentType, fTrace only when
// there is one. No value of the header can hold "|" (versions, a task id,
// a step name and numbers), while a content type and a traceparent's
// later versions can: they keep fields of their own, which a token has
// only in the rare case it needs them.
//
// Format 1.0 (read only): every value in a field of its own.
const (
	fH       = "h"
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
	fPr      = "pr" // 1.1 only, and only for high or low
)

// headerParts names the parts of a 1.1 header, in order.
var headerParts = [...]string{fV, fTask, fStep, fToken, fAttempt, fPV, fTS}

// Fields encodes e as XADD field/value pairs, in the current format
// (EnvelopeVersion, whatever e.V says): the packed header h, the payload,
// and ct and trace only when they are not the default and not empty.
func (e Envelope) Fields() []any {
	h := strings.Join([]string{EnvelopeVersion.API(), e.Task, e.Step, e.Token,
		strconv.Itoa(e.Attempt), e.PV.String(), strconv.FormatInt(e.TS, 10)}, "|")
	out := []any{fH, h, fPayload, string(e.Payload)}
	if e.CT != "" && e.CT != DefaultContentType {
		out = append(out, fCT, e.CT)
	}
	if e.Trace != "" {
		out = append(out, fTrace, e.Trace)
	}
	if e.Priority != PriorityNormal {
		out = append(out, fPr, e.Priority.String())
	}
	return out
}

// EnvelopeError says why a stream entry is not a valid token. It wraps
// ErrInvalidEnvelope. Field is the entry's field, or for a part of the
// packed header, the part's name (task, step, token, attempt, v, pv, ts).
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

// ParseEnvelope strictly parses a stream entry's values, of format 1.1 (a
// header field h) or 1.0 (no h: one field per value, written before the
// upgrade). Every value but trace (and in 1.1 ct) is required, no unknown
// field is allowed, the format version must be compatible with
// EnvelopeVersion (or be 1.0 in its own layout) and the payload at most
// maxPayload bytes (0 means DefaultMaxPayload).
func ParseEnvelope(values map[string]any, maxPayload int) (Envelope, error) {
	if maxPayload <= 0 {
		maxPayload = DefaultMaxPayload
	}
	if len(values) == 0 {
		return badEnvelope("", "entry has no fields (payload lost)")
	}
	if _, ok := values[fH]; ok {
		return parsePacked(values, maxPayload)
	}
	if _, ok := values[fV]; ok {
		return parseLegacy(values, maxPayload)
	}
	return badEnvelope(fH, "missing")
}

func badEnvelope(f, why string) (Envelope, error) {
	return Envelope{}, &EnvelopeError{Field: f, Reason: why}
}

func unknownField(k string) (Envelope, error) {
	if len(k) > 40 {
		k = k[:40] + "..."
	}
	return badEnvelope(k, "unknown field")
}

// parsePacked parses format 1.1.
func parsePacked(values map[string]any, maxPayload int) (Envelope, error) {
	str := func(k string) (string, bool) {
		s, ok := values[k].(string)
		return s, ok
	}
	for k := range values {
		switch k {
		case fH, fPayload, fCT, fTrace, fPr:
		default:
			return unknownField(k)
		}
	}
	h, ok := str(fH)
	if !ok {
		return badEnvelope(fH, "not a string")
	}
	// The version first: a later format may pack other parts.
	vs, rest, _ := strings.Cut(h, "|")
	v, err := ParseVersion(vs)
	if err != nil {
		return badEnvelope(fV, err.Error())
	}
	if !v.Compatible(EnvelopeVersion) {
		return badEnvelope(fV, fmt.Sprintf("format %s is not compatible with this reader's %s", v.API(), EnvelopeVersion.API()))
	}
	var parts [len(headerParts) - 1]string
	if cutAll(rest, '|', parts[:]) != len(parts) {
		return badEnvelope(fH, fmt.Sprintf("want %d parts %s separated by |, got %d",
			len(headerParts), strings.Join(headerParts[:], "|"), strings.Count(rest, "|")+2))
	}
	// parts follow headerParts[1:]: task, step, token, attempt, pv, ts.
	r := rawEnvelope{task: parts[0], step: parts[1], token: parts[2], attempt: parts[3], pv: parts[4], ts: parts[5],
		ct: DefaultContentType}
	if _, ok := values[fCT]; ok {
		if r.ct, ok = str(fCT); !ok {
			return badEnvelope(fCT, "must be a content type")
		}
	}
	if r.payload, ok = str(fPayload); !ok {
		return badEnvelope(fPayload, "missing")
	}
	e, err := checkEnvelope(r, values, maxPayload)
	if err != nil {
		return Envelope{}, err
	}
	e.V = v
	if pr, ok := values[fPr]; ok {
		s, _ := pr.(string)
		if e.Priority, err = ParsePriority(s); err != nil || e.Priority == PriorityNormal {
			return badEnvelope(fPr, "must be high or low")
		}
	}
	return e, nil
}

// parseLegacy parses format 1.0.
func parseLegacy(values map[string]any, maxPayload int) (Envelope, error) {
	for k := range values {
		switch k {
		case fTask, fStep, fToken, fAttempt, fV, fPV, fCT, fPayload, fTS, fTrace:
		default:
			return unknownField(k)
		}
	}
	p := map[string]string{}
	for _, k := range []string{fV, fTask, fStep, fToken, fAttempt, fPV, fCT, fPayload, fTS} {
		s, ok := values[k].(string)
		if !ok {
			return badEnvelope(k, "missing")
		}
		p[k] = s
	}
	v, err := ParseVersion(p[fV])
	if err != nil {
		return badEnvelope(fV, err.Error())
	}
	if !v.Compatible(LegacyEnvelopeVersion) {
		return badEnvelope(fV, fmt.Sprintf("format %s in separate fields is not compatible with this reader's %s (nor its %s, packed)",
			v.API(), LegacyEnvelopeVersion.API(), EnvelopeVersion.API()))
	}
	r := rawEnvelope{task: p[fTask], step: p[fStep], token: p[fToken], attempt: p[fAttempt], pv: p[fPV], ct: p[fCT],
		payload: p[fPayload], ts: p[fTS]}
	e, err := checkEnvelope(r, values, maxPayload)
	if err != nil {
		return Envelope{}, err
	}
	e.V = v
	return e, nil
}

// rawEnvelope holds an entry's values as read, before checkEnvelope.
type rawEnvelope struct{ task, step, token, attempt, pv, ct, payload, ts string }

// cutAll splits s at sep into out without allocating, and returns how
// many parts s has (len(out)+1 when it has more than out holds).
func cutAll(s string, sep byte, out []string) int {
	for n := 0; ; n++ {
		if n == len(out) {
			return n + 1
		}
		i := strings.IndexByte(s, sep)
		if i < 0 {
			out[n] = s
			return n + 1
		}
		out[n], s = s[:i], s[i+1:]
	}
}

// checkEnvelope checks the values of either format (trace read from
// values) but the format version.
func checkEnvelope(p rawEnvelope, values map[string]any, maxPayload int) (Envelope, error) {
	var e Envelope
	var err error
	e.Task = p.task
	if _, err := ParseTaskID(e.Task); err != nil {
		return badEnvelope(fTask, err.Error())
	}
	e.Step = p.step
	if !ValidName(e.Step) {
		return badEnvelope(fStep, "not a valid step name")
	}
	e.Token = p.token
	if !validTokenID(e.Token) {
		return badEnvelope(fToken, "must be a positive number")
	}
	as := p.attempt
	if n, err := strconv.Atoi(as); err != nil || n < 1 || n > 1000 || strconv.Itoa(n) != as {
		return badEnvelope(fAttempt, "must be a number from 1 to 1000")
	} else {
		e.Attempt = n
	}
	if e.PV, err = ParseVersion(p.pv); err != nil {
		return badEnvelope(fPV, err.Error())
	}
	if e.CT = p.ct; e.CT == "" || len(e.CT) > 200 {
		return badEnvelope(fCT, "must be a content type")
	}
	payload := p.payload
	if len(payload) > maxPayload {
		return badEnvelope(fPayload, fmt.Sprintf("%d bytes is larger than the limit of %d", len(payload), maxPayload))
	}
	e.Payload = []byte(payload)
	if e.TS, err = strconv.ParseInt(p.ts, 10, 64); err != nil || e.TS <= 0 {
		return badEnvelope(fTS, "must be a positive number of milliseconds")
	}
	if tr, ok := values[fTrace]; ok {
		s, isStr := tr.(string)
		if !isStr || CheckTrace(s) != nil {
			return badEnvelope(fTrace, "must be a W3C traceparent")
		}
		e.Trace = s
	}
	return e, nil
}

// entryValues returns what a stream entry of either format says, by the
// 1.0 field names, without checking anything: what the dead-letter path
// needs of an entry that did not parse.
func entryValues(values map[string]any) map[string]string {
	out := map[string]string{}
	for k, v := range values {
		if s, ok := v.(string); ok {
			out[k] = s
		}
	}
	if h, ok := out[fH]; ok {
		delete(out, fH)
		for i, part := range strings.SplitN(h, "|", len(headerParts)) {
			out[headerParts[i]] = part
		}
	}
	return out
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
