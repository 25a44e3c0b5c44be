package dsat

import (
	"errors"
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

func TestEnvelopeRoundTrip(t *testing.T) {
	e := sampleEnvelope()
	got, err := ParseEnvelope(fieldsMap(e.Fields()), 0)
	if err != nil {
		t.Fatal(err)
	}
	if got.Task != e.Task || got.Step != e.Step || got.Token != e.Token || got.Attempt != e.Attempt ||
		got.PV != e.PV || got.CT != e.CT || string(got.Payload) != string(e.Payload) || got.TS != e.TS || got.Trace != e.Trace {
		t.Fatalf("round trip:\n%+v\n%+v", got, e)
	}
	e.Trace = ""
	if _, ok := fieldsMap(e.Fields())["trace"]; ok {
		t.Fatal("empty trace encoded")
	}
}

func TestParseEnvelopeRejects(t *testing.T) {
	base := fieldsMap(sampleEnvelope().Fields())
	with := func(k string, v any) map[string]any {
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
	for _, tc := range []struct {
		name   string
		values map[string]any
		field  string
	}{
		{"empty (payload lost)", map[string]any{}, ""},
		{"missing task", with("task", nil), "task"},
		{"missing payload", with("payload", nil), "payload"},
		{"unknown field", with("extra", "1"), "extra"},
		{"bad attempt", with("attempt", "x"), "attempt"},
		{"zero attempt", with("attempt", "0"), "attempt"},
		{"attempt with sign", with("attempt", "+1"), "attempt"},
		{"bad token", with("token", "01"), "token"},
		{"unknown format version", with("v", "2.0"), "v"},
		{"bad format version", with("v", "x"), "v"},
		{"bad pipeline version", with("pv", "1.2.10"), "pv"},
		{"bad task id", with("task", "nope"), "task"},
		{"bad step", with("step", "A B"), "step"},
		{"bad ts", with("ts", "-5"), "ts"},
		{"empty ct", with("ct", ""), "ct"},
		{"huge payload", with("payload", strings.Repeat("x", DefaultMaxPayload+1)), "payload"},
		{"non-string value", with("task", 5), "task"},
	} {
		_, err := ParseEnvelope(tc.values, 0)
		var ee *EnvelopeError
		if !errors.Is(err, ErrInvalidEnvelope) || !errors.As(err, &ee) || ee.Field != tc.field {
			t.Errorf("%s: %v (want an error on field %q)", tc.name, err, tc.field)
		}
	}
}

// FuzzParseEnvelope: the parser never panics, and what it accepts encodes
// back to the same fields.
func FuzzParseEnvelope(f *testing.F) {
	e := sampleEnvelope()
	f.Add(e.Task, e.Step, e.Token, "2", "1.0", "1.2.a", e.CT, `{"a":1}`, "1700000000123", "")
	f.Add("", "", "", "", "", "", "", "", "", "")
	f.Add(e.Task, "s", "1", "1", "2.0", "1.0", "x", "", "1", "t")
	f.Add(e.Task, "s", "99999999999", "1000", "1.0.z", "0.0", "a/b", "\x00", "9223372036854775807", "")
	f.Fuzz(func(t *testing.T, task, step, token, attempt, v, pv, ct, payload, ts, trace string) {
		values := map[string]any{"task": task, "step": step, "token": token, "attempt": attempt,
			"v": v, "pv": pv, "ct": ct, "payload": payload, "ts": ts}
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
		if again.Task != got.Task || again.Attempt != got.Attempt || string(again.Payload) != string(got.Payload) || again.PV != got.PV {
			t.Fatalf("not stable: %+v vs %+v", again, got)
		}
	})
}

func TestCheckTrace(t *testing.T) {
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
		if _, err := ParseEnvelope(map[string]any{"task": "x", "trace": bad}, 0); err == nil {
			t.Errorf("%q: envelope accepted", bad)
		}
	}
}
