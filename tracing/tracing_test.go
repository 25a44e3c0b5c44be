package tracing

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/encoding/protojson"
)

// setenv sets the OTEL_* variables of m for the test (and unsets the
// others).
func setenv(t *testing.T, m map[string]string) {
	for _, k := range []string{"OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT",
		"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
		"OTEL_EXPORTER_OTLP_TIMEOUT", "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_HEADERS",
		"OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_SERVICE_NAME", "OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG"} {
		t.Setenv(k, m[k])
	}
}

func TestFromEnvOff(t *testing.T) {
	for name, env := range map[string]map[string]string{
		"no endpoint":   {},
		"sdk disabled":  {"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"},
		"exporter none": {"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"},
	} {
		setenv(t, env)
		tp, err := FromEnv(context.Background(), "dsat")
		if tp != nil || err != nil {
			t.Errorf("%s: provider %v, error %v; want off", name, tp, err)
		}
	}
}

func TestFromEnvRefusesBadSettings(t *testing.T) {
	base := "http://127.0.0.1:4318"
	for name, env := range map[string]map[string]string{
		"bad url":      {"OTEL_EXPORTER_OTLP_ENDPOINT": "127.0.0.1:4318"},
		"grpc":         {"OTEL_EXPORTER_OTLP_ENDPOINT": base, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
		"bad timeout":  {"OTEL_EXPORTER_OTLP_ENDPOINT": base, "OTEL_EXPORTER_OTLP_TIMEOUT": "10s"},
		"bad headers":  {"OTEL_EXPORTER_OTLP_ENDPOINT": base, "OTEL_EXPORTER_OTLP_HEADERS": "novalue"},
		"bad exporter": {"OTEL_EXPORTER_OTLP_ENDPOINT": base, "OTEL_TRACES_EXPORTER": "zipkin"},
		"bad sampler":  {"OTEL_EXPORTER_OTLP_ENDPOINT": base, "OTEL_TRACES_SAMPLER": "bogus"},
		"bad ratio":    {"OTEL_EXPORTER_OTLP_ENDPOINT": base, "OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "2"},
	} {
		setenv(t, env)
		tp, err := FromEnv(context.Background(), "dsat")
		if tp != nil || !errors.Is(err, ErrConfig) {
			t.Errorf("%s: provider %v, error %v; want ErrConfig", name, tp, err)
		}
	}
}

// receiver is an OTLP/HTTP receiver: it keeps each request's path,
// headers and body.
type receiver struct {
	mu     sync.Mutex
	paths  []string
	heads  []http.Header
	bodies [][]byte
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	b, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	r.paths, r.heads, r.bodies = append(r.paths, req.URL.Path), append(r.heads, req.Header.Clone()), append(r.bodies, b)
	r.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

// hexIDsToBase64 rewrites OTLP/JSON's hex ids into the base64 of the
// protobuf JSON mapping, so protojson can check the rest of the document.
func hexIDsToBase64(v any) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if s, ok := e.(string); ok && (k == "traceId" || k == "spanId" || k == "parentSpanId") {
				b, _ := hex.DecodeString(s)
				x[k] = base64.StdEncoding.EncodeToString(b)
				continue
			}
			hexIDsToBase64(e)
		}
	case []any:
		for _, e := range x {
			hexIDsToBase64(e)
		}
	}
}

// TestExportToOTLPReceiver: spans reach an OTLP/HTTP receiver started by
// the test as a document the official protobuf schema accepts, with the
// headers, resource, parent, link, attributes and error status given.
func TestExportToOTLPReceiver(t *testing.T) {
	rec := &receiver{}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	env := map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": srv.URL, "OTEL_EXPORTER_OTLP_HEADERS": "x-api-key=s%20ecret",
		"OTEL_SERVICE_NAME": "dsat-test", "OTEL_TRACES_SAMPLER": "always_on"}
	setenv(t, env)
	tp, err := FromEnv(context.Background(), "dsat")
	if err != nil || tp == nil {
		t.Fatalf("provider %v, error %v", tp, err)
	}
	tr := tp.Tracer("test")
	ctx, root := tr.Start(context.Background(), "submit p")
	linked := trace.NewSpanContext(trace.SpanContextConfig{TraceID: root.SpanContext().TraceID(),
		SpanID: StepSpanID("task1", "2", 1), TraceFlags: trace.FlagsSampled})
	_, child := tr.Start(WithSpanID(ctx, StepSpanID("task1", "3", 2)), "p/join",
		trace.WithLinks(trace.Link{SpanContext: linked}), trace.WithAttributes(attribute.Int("dsat.attempt", 2),
			attribute.String("dsat.step", "join"), attribute.Bool("b", true), attribute.Float64("f", 1.5),
			attribute.StringSlice("ss", []string{"a", "b"})))
	child.SetStatus(codes.Error, "boom")
	child.AddEvent("retrying")
	child.End()
	root.End()
	if err := tp.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.bodies) != 1 || rec.paths[0] != "/v1/traces" || rec.heads[0].Get("Content-Type") != "application/json" ||
		rec.heads[0].Get("X-Api-Key") != "s ecret" {
		t.Fatalf("requests %v %v", rec.paths, rec.heads)
	}
	var doc any
	if err := json.Unmarshal(rec.bodies[0], &doc); err != nil {
		t.Fatal(err)
	}
	hexIDsToBase64(doc)
	b, _ := json.Marshal(doc)
	var td tracepb.TracesData
	if err := protojson.Unmarshal(b, &td); err != nil {
		t.Fatalf("the official schema refuses the export: %v\n%s", err, rec.bodies[0])
	}
	rs := td.ResourceSpans[0]
	service := ""
	for _, kv := range rs.Resource.Attributes {
		if kv.Key == "service.name" {
			service = kv.Value.GetStringValue()
		}
	}
	spans := rs.ScopeSpans[0].Spans
	if service != "dsat-test" || len(spans) != 2 {
		t.Fatalf("service %q, %d spans", service, len(spans))
	}
	c, r := spans[0], spans[1]
	want := StepSpanID("task1", "3", 2)
	if c.Name != "p/join" || hex.EncodeToString(c.SpanId) != want.String() || string(c.ParentSpanId) != string(r.SpanId) ||
		string(c.TraceId) != string(r.TraceId) || c.Status.Code != tracepb.Status_STATUS_CODE_ERROR || c.Status.Message != "boom" {
		t.Fatalf("child span %v (root %v)", c, r)
	}
	if len(c.Links) != 1 || hex.EncodeToString(c.Links[0].SpanId) != StepSpanID("task1", "2", 1).String() {
		t.Fatalf("links %v", c.Links)
	}
	attrs := map[string]string{}
	for _, kv := range c.Attributes {
		attrs[kv.Key] = kv.Value.String()
	}
	if !strings.Contains(attrs["dsat.attempt"], "int_value:2") || !strings.Contains(attrs["ss"], `string_value:"b"`) ||
		len(c.Events) != 1 || c.StartTimeUnixNano == 0 || c.EndTimeUnixNano < c.StartTimeUnixNano {
		t.Fatalf("attributes %v, events %v", attrs, c.Events)
	}
}

func TestTraceparentRoundTrip(t *testing.T) {
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	sc := trace.SpanContextFromContext(Parent(context.Background(), tp))
	if !sc.IsValid() || !sc.IsRemote() || Traceparent(sc) != tp {
		t.Fatalf("span context %v, traceparent %q", sc, Traceparent(sc))
	}
	if sc := trace.SpanContextFromContext(Parent(context.Background(), "garbage")); sc.IsValid() {
		t.Fatalf("a malformed traceparent gave %v", sc)
	}
	if a, b := StepSpanID("t", "1", 1), StepSpanID("t", "1", 1); a != b || a == StepSpanID("t", "1", 2) || !a.IsValid() {
		t.Fatal("step span ids are not a function of task, token and attempt")
	}
}
