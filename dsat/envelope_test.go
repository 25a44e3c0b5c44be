package dsat

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
)

func sampleEnvelope() Envelope {
	return Envelope{
		Task: NewTaskID(Partition{Pipeline: "p", API: "1.2"}, time.Now()).String(), Step: "s", Token: "3",
		Attempt: 2, V: EnvelopeVersion, PV: MustParseVersion("1.2.a"), CT: DefaultContentType,
		Payload: []byte(`{"a":"\r\n"}`), TS: 1700000000123, Trace: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
	}
}

func fieldsMap(f []any) map[string]any {
	m := map[string]any{}
	for i := 0; i+1 < len(f); i += 2 {
		m[f[i].(string)] = f[i+1]
	}
	return m
}

// legacyFields is e as a version before 1.1 wrote it (format 1.0): one
// field per value.
func legacyFields(e Envelope) map[string]any {
	m := map[string]any{"task": e.Task, "step": e.Step, "token": e.Token, "attempt": strconv.Itoa(e.Attempt),
		"v": "1.0", "pv": e.PV.String(), "ct": e.CT, "payload": string(e.Payload), "ts": strconv.FormatInt(e.TS, 10)}
	if e.Trace != "" {
		m["trace"] = e.Trace
	}
	return m
}

func sameEnvelope(a, b Envelope) bool {
	return a.Task == b.Task && a.Step == b.Step && a.Token == b.Token && a.Attempt == b.Attempt &&
		a.PV == b.PV && a.CT == b.CT && string(a.Payload) == string(b.Payload) && a.TS == b.TS && a.Trace == b.Trace
}

func TestEnvelopeRoundTrip(t *testing.T) {
	t.Parallel()
	e := sampleEnvelope()
	f := fieldsMap(e.Fields())
	want := map[string]any{"h": "1.1|" + e.Task + "|s|3|2|1.2.a|1700000000123", "payload": `{"a":"\r\n"}`, "trace": e.Trace}
	if fmt.Sprint(f) != fmt.Sprint(want) {
		t.Fatalf("fields %v, want %v", f, want)
	}
	got, err := ParseEnvelope(f, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !sameEnvelope(got, e) || got.V != EnvelopeVersion {
		t.Fatalf("round trip:\n%+v\n%+v", got, e)
	}
	e.Trace = ""
	if f := fieldsMap(e.Fields()); len(f) != 2 {
		t.Fatalf("a token with the default content type and no trace has fields %v, want h and payload", f)
	}
	// A content type other than the default, and a later traceparent
	// version, may hold "|": they keep fields of their own.
	e.CT, e.Trace = `text/x|y; q="a|b"`, "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-x|y"
	f = fieldsMap(e.Fields())
	if f["ct"] != e.CT || f["trace"] != e.Trace || len(f) != 4 {
		t.Fatalf("fields %v", f)
	}
	if got, err = ParseEnvelope(f, 0); err != nil || !sameEnvelope(got, e) {
		t.Fatalf("round trip with ct and trace: %+v %v", got, err)
	}
}

// TestParseLegacyEnvelope: an entry of format 1.0, queued before an
// upgrade, is still a token.
func TestParseLegacyEnvelope(t *testing.T) {
	t.Parallel()
	e := sampleEnvelope()
	got, err := ParseEnvelope(legacyFields(e), 0)
	if err != nil {
		t.Fatal(err)
	}
	if !sameEnvelope(got, e) || got.V != LegacyEnvelopeVersion {
		t.Fatalf("legacy:\n%+v\n%+v", got, e)
	}
	e.Trace = ""
	if got, err = ParseEnvelope(legacyFields(e), 0); err != nil || !sameEnvelope(got, e) {
		t.Fatalf("legacy without trace: %+v %v", got, err)
	}
	// What a reader does with it: the same token, in today's format.
	if again, err := ParseEnvelope(fieldsMap(got.Fields()), 0); err != nil || !sameEnvelope(again, e) || again.V != EnvelopeVersion {
		t.Fatalf("re-encoded: %+v %v", again, err)
	}
}

// withPart returns the fields of a packed envelope with one part of its
// header h replaced.
func withPart(base map[string]any, part, v string) map[string]any {
	m := map[string]any{}
	for k, vv := range base {
		m[k] = vv
	}
	parts := strings.Split(base["h"].(string), "|")
	for i, name := range headerParts {
		if name == part {
			parts[i] = v
		}
	}
	m["h"] = strings.Join(parts, "|")
	return m
}

func with(base map[string]any, k string, v any) map[string]any {
	m := map[string]any{}
	for kk, vv := range base {
		m[kk] = vv
	}
	if v == nil {
		delete(m, k)
	} else {
		m[k] = v
	}
	return m
}

func TestParseEnvelopeRejects(t *testing.T) {
	t.Parallel()
	base := fieldsMap(sampleEnvelope().Fields())
	old := legacyFields(sampleEnvelope())
	h := base["h"].(string)
	for _, tc := range []struct {
		name   string
		values map[string]any
		field  string
		reason string
	}{
		{"empty (payload lost)", map[string]any{}, "", "payload lost"},
		{"no header", with(base, "h", nil), "h", "missing"},
		{"header not a string", with(base, "h", 5), "h", "not a string"},
		{"header with a part missing", with(base, "h", h[:strings.LastIndexByte(h, '|')]), "h", "want 7 parts v|task|step|token|attempt|pv|ts"},
		{"header with a part too many", with(base, "h", h+"|1"), "h", "got 8"},
		{"header with a part holding |", withPart(base, "step", "a|b"), "h", "got 8"},
		{"missing payload", with(base, "payload", nil), "payload", "missing"},
		{"unknown field", with(base, "extra", "1"), "extra", "unknown field"},
		{"a 1.0 field beside the header", with(base, "task", "x"), "task", "unknown field"},
		{"bad attempt", withPart(base, "attempt", "x"), "attempt", "from 1 to 1000"},
		{"zero attempt", withPart(base, "attempt", "0"), "attempt", ""},
		{"attempt with sign", withPart(base, "attempt", "+1"), "attempt", ""},
		{"bad token", withPart(base, "token", "01"), "token", "positive number"},
		{"unknown format version", withPart(base, "v", "2.0"), "v", "format 2.0 is not compatible with this reader's 1.1"},
		{"format 1.0 packed", withPart(base, "v", "1.0"), "v", "not compatible"},
		{"later format, other layout", map[string]any{"h": "2.0|x", "payload": "{}"}, "v", "format 2.0"},
		{"bad format version", withPart(base, "v", "x"), "v", ""},
		{"bad pipeline version", withPart(base, "pv", "1.2.10"), "pv", ""},
		{"bad task id", withPart(base, "task", "nope"), "task", ""},
		{"bad step", withPart(base, "step", "A B"), "step", "step name"},
		{"bad ts", withPart(base, "ts", "-5"), "ts", "milliseconds"},
		{"empty ct", with(base, "ct", ""), "ct", "content type"},
		{"non-string ct", with(base, "ct", 1), "ct", "content type"},
		{"bad trace", with(base, "trace", "00-abc"), "trace", "traceparent"},
		{"huge payload", with(base, "payload", strings.Repeat("x", DefaultMaxPayload+1)), "payload", "larger than the limit"},
		{"non-string payload", with(base, "payload", 5), "payload", "missing"},
		// Format 1.0, one field per value.
		{"1.0: missing task", with(old, "task", nil), "task", "missing"},
		{"1.0: missing payload", with(old, "payload", nil), "payload", "missing"},
		{"1.0: unknown field", with(old, "extra", "1"), "extra", "unknown field"},
		{"1.0: bad attempt", with(old, "attempt", "x"), "attempt", ""},
		{"1.0: version 1.1 in separate fields", with(old, "v", "1.1"), "v", "format 1.1 in separate fields"},
		{"1.0: unknown format version", with(old, "v", "2.0"), "v", "not compatible"},
		{"1.0: bad task id", with(old, "task", "nope"), "task", ""},
		{"1.0: empty ct", with(old, "ct", ""), "ct", ""},
		{"1.0: non-string value", with(old, "task", 5), "task", ""},
	} {
		_, err := ParseEnvelope(tc.values, 0)
		var ee *EnvelopeError
		if !errors.Is(err, ErrInvalidEnvelope) || !errors.As(err, &ee) || ee.Field != tc.field || !strings.Contains(ee.Reason, tc.reason) {
			t.Errorf("%s: %v (want an error on field %q saying %q)", tc.name, err, tc.field, tc.reason)
		}
	}
}

func TestEntryValues(t *testing.T) {
	t.Parallel()
	e := sampleEnvelope()
	for _, f := range []map[string]any{fieldsMap(e.Fields()), legacyFields(e)} {
		v := entryValues(f)
		if v["task"] != e.Task || v["token"] != "3" || v["attempt"] != "2" || v["payload"] != string(e.Payload) {
			t.Errorf("%v -> %v", f, v)
		}
	}
	// A damaged header still names what it can.
	if v := entryValues(map[string]any{"h": "1.1|" + e.Task + "|s"}); v["task"] != e.Task || v["token"] != "" {
		t.Errorf("damaged: %v", v)
	}
}

// FuzzParseEnvelope: the parser never panics, and what it accepts (in
// either format) encodes back to the same token.
func FuzzParseEnvelope(f *testing.F) {
	e := sampleEnvelope()
	f.Add(true, e.Task, e.Step, e.Token, "2", "1.1", "1.2.a", "", `{"a":1}`, "1700000000123", "")
	f.Add(false, e.Task, e.Step, e.Token, "2", "1.0", "1.2.a", e.CT, `{"a":1}`, "1700000000123", "")
	f.Add(true, e.Task, e.Step, e.Token, "1", "1.1.z", "0.0", "text/a|b", "|", "1", e.Trace)
	f.Add(true, "", "", "", "", "", "", "", "", "", "")
	f.Add(false, "", "", "", "", "", "", "", "", "", "")
	f.Add(false, e.Task, "s", "1", "1", "2.0", "1.0", "x", "", "1", "t")
	f.Add(true, e.Task, "s", "99999999999", "1000", "1.0.z", "0.0", "a/b", "\x00", "9223372036854775807", "")
	f.Fuzz(func(t *testing.T, packed bool, task, step, token, attempt, v, pv, ct, payload, ts, trace string) {
		var values map[string]any
		if packed {
			values = map[string]any{"h": strings.Join([]string{v, task, step, token, attempt, pv, ts}, "|"), "payload": payload}
			if ct != "" {
				values["ct"] = ct
			}
		} else {
			values = map[string]any{"task": task, "step": step, "token": token, "attempt": attempt,
				"v": v, "pv": pv, "ct": ct, "payload": payload, "ts": ts}
		}
		if trace != "" {
			values["trace"] = trace
		}
		got, err := ParseEnvelope(values, 0)
		if err != nil {
			if !errors.Is(err, ErrInvalidEnvelope) {
				t.Fatalf("error does not wrap ErrInvalidEnvelope: %v", err)
			}
			return
		}
		again, err := ParseEnvelope(fieldsMap(got.Fields()), 0)
		if err != nil {
			t.Fatalf("re-parse of accepted envelope: %v", err)
		}
		if !sameEnvelope(again, got) || again.V != EnvelopeVersion {
			t.Fatalf("not stable: %+v vs %+v", again, got)
		}
	})
}

func TestCheckTrace(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-future"} {
		if err := CheckTrace(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{strings.Repeat("f", 129), strings.Repeat("f", 55), "00-abc",
		"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
		"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
		"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
		"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x"} {
		if err := CheckTrace(bad); !errors.Is(err, ErrInvalidTrace) {
			t.Errorf("%q accepted (%v)", bad, err)
		}
		// The satellite refuses exactly what Submit refuses.
		var ee *EnvelopeError
		if _, err := ParseEnvelope(with(fieldsMap(sampleEnvelope().Fields()), "trace", bad), 0); !errors.As(err, &ee) || ee.Field != "trace" {
			t.Errorf("%q: envelope accepted (%v)", bad, err)
		}
	}
}

// TestEnvelopePriority (issue 16): a high or low token carries pr; a
// normal one has no such field; pr must be high or low.
func TestEnvelopePriority(t *testing.T) {
	t.Parallel()
	e := sampleEnvelope()
	for _, level := range []Priority{PriorityHigh, PriorityLow} {
		e.Priority = level
		f := fieldsMap(e.Fields())
		if f["pr"] != level.String() {
			t.Fatalf("fields %v, want pr=%s", f, level)
		}
		got, err := ParseEnvelope(f, 0)
		if err != nil || got.Priority != level || !sameEnvelope(got, e) {
			t.Fatalf("round trip of %s: %+v %v", level, got, err)
		}
	}
	e.Priority = PriorityNormal
	if _, ok := fieldsMap(e.Fields())["pr"]; ok {
		t.Fatal("a normal token has a field pr")
	}
	for _, bad := range []string{"normal", "", "urgent"} {
		f := fieldsMap(e.Fields())
		f["pr"] = bad
		if _, err := ParseEnvelope(f, 0); !errors.Is(err, ErrInvalidEnvelope) {
			t.Fatalf("pr=%q: %v, want ErrInvalidEnvelope", bad, err)
		}
	}
}

func TestParsePriority(t *testing.T) {
	t.Parallel()
	for s, want := range map[string]Priority{"high": PriorityHigh, "normal": PriorityNormal, "": PriorityNormal, "low": PriorityLow} {
		if got, err := ParsePriority(s); err != nil || got != want {
			t.Fatalf("%q: %v %v", s, got, err)
		}
	}
	for _, bad := range []string{"HIGH", "urgent", "1", strings.Repeat("x", 100)} {
		_, err := ParsePriority(bad)
		if !errors.Is(err, ErrInvalidPriority) || len(err.Error()) > 120 {
			t.Fatalf("%q: %v", bad, err)
		}
	}
	// The order of reads: 6 high, 3 normal, 1 low in every 10.
	n := map[Priority]int{}
	for _, level := range priorityOrder {
		n[level]++
	}
	for level, w := range PriorityWeights {
		if n[level] != w {
			t.Fatalf("priorityOrder has %d %s, want %d", n[level], level, w)
		}
	}
}
