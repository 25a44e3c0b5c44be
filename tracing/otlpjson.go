package tracing

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// Exporter sends spans to an OTLP/HTTP receiver as JSON (POST to URL,
// usually <endpoint>/v1/traces). It implements sdktrace.SpanExporter.
type Exporter struct {
	URL     string
	Headers map[string]string
	Timeout time.Duration
	Client  *http.Client

	mu       sync.Mutex
	shutdown bool
}

// ExportSpans posts one batch of spans.
func (e *Exporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	e.mu.Lock()
	done := e.shutdown
	e.mu.Unlock()
	if done || len(spans) == 0 {
		return nil
	}
	body, err := json.Marshal(encodeSpans(spans))
	if err != nil {
		return fmt.Errorf("tracing: encode spans: %w", err)
	}
	if e.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, e.Timeout)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.URL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("tracing: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range e.Headers {
		req.Header.Set(k, v)
	}
	hc := e.Client
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("tracing: export to %s: %w", e.URL, err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("tracing: export to %s: %s: %s", e.URL, resp.Status, bytes.TrimSpace(msg))
	}
	return nil
}

// Shutdown makes later exports no-ops.
func (e *Exporter) Shutdown(context.Context) error {
	e.mu.Lock()
	e.shutdown = true
	e.mu.Unlock()
	return nil
}

// The OTLP/JSON shapes (opentelemetry-proto's JSON mapping: ids in hex,
// 64-bit integers as strings, enums as numbers).
type (
	otlpRequest struct {
		ResourceSpans []otlpResourceSpans `json:"resourceSpans"`
	}
	otlpResourceSpans struct {
		Resource   otlpResource     `json:"resource"`
		ScopeSpans []otlpScopeSpans `json:"scopeSpans"`
	}
	otlpResource struct {
		Attributes []otlpKV `json:"attributes"`
	}
	otlpScopeSpans struct {
		Scope otlpScope  `json:"scope"`
		Spans []otlpSpan `json:"spans"`
	}
	otlpScope struct {
		Name    string `json:"name"`
		Version string `json:"version,omitempty"`
	}
	otlpSpan struct {
		TraceID      string      `json:"traceId"`
		SpanID       string      `json:"spanId"`
		TraceState   string      `json:"traceState,omitempty"`
		ParentSpanID string      `json:"parentSpanId,omitempty"`
		Flags        uint32      `json:"flags"`
		Name         string      `json:"name"`
		Kind         int         `json:"kind"`
		Start        string      `json:"startTimeUnixNano"`
		End          string      `json:"endTimeUnixNano"`
		Attributes   []otlpKV    `json:"attributes,omitempty"`
		Events       []otlpEvent `json:"events,omitempty"`
		Links        []otlpLink  `json:"links,omitempty"`
		Status       otlpStatus  `json:"status"`
	}
	otlpEvent struct {
		Time       string   `json:"timeUnixNano"`
		Name       string   `json:"name"`
		Attributes []otlpKV `json:"attributes,omitempty"`
	}
	otlpLink struct {
		TraceID    string   `json:"traceId"`
		SpanID     string   `json:"spanId"`
		TraceState string   `json:"traceState,omitempty"`
		Attributes []otlpKV `json:"attributes,omitempty"`
	}
	otlpStatus struct {
		Code    int    `json:"code,omitempty"`
		Message string `json:"message,omitempty"`
	}
	otlpKV struct {
		Key   string    `json:"key"`
		Value otlpValue `json:"value"`
	}
	otlpValue struct {
		String *string    `json:"stringValue,omitempty"`
		Bool   *bool      `json:"boolValue,omitempty"`
		Int    *string    `json:"intValue,omitempty"`
		Double *float64   `json:"doubleValue,omitempty"`
		Array  *otlpArray `json:"arrayValue,omitempty"`
	}
	otlpArray struct {
		Values []otlpValue `json:"values"`
	}
)

// encodeSpans groups spans by resource and scope, in the order met.
func encodeSpans(spans []sdktrace.ReadOnlySpan) otlpRequest {
	var req otlpRequest
	type key struct{ res, scope string }
	rs := map[string]int{}
	ss := map[key]int{}
	for _, s := range spans {
		res := s.Resource()
		rk := ""
		if res != nil {
			rk = res.Encoded(attribute.DefaultEncoder())
		}
		ri, ok := rs[rk]
		if !ok {
			ri = len(req.ResourceSpans)
			rs[rk] = ri
			var attrs []otlpKV
			if res != nil {
				attrs = encodeAttrs(res.Attributes())
			}
			req.ResourceSpans = append(req.ResourceSpans, otlpResourceSpans{Resource: otlpResource{Attributes: attrs}})
		}
		sc := s.InstrumentationScope()
		k := key{rk, sc.Name + "\x00" + sc.Version}
		si, ok := ss[k]
		if !ok {
			si = len(req.ResourceSpans[ri].ScopeSpans)
			ss[k] = si
			req.ResourceSpans[ri].ScopeSpans = append(req.ResourceSpans[ri].ScopeSpans,
				otlpScopeSpans{Scope: otlpScope{Name: sc.Name, Version: sc.Version}})
		}
		req.ResourceSpans[ri].ScopeSpans[si].Spans = append(req.ResourceSpans[ri].ScopeSpans[si].Spans, encodeSpan(s))
	}
	return req
}

func encodeSpan(s sdktrace.ReadOnlySpan) otlpSpan {
	sc := s.SpanContext()
	out := otlpSpan{
		TraceID: sc.TraceID().String(), SpanID: sc.SpanID().String(),
		TraceState: sc.TraceState().String(), Flags: uint32(sc.TraceFlags()), Name: s.Name(), Kind: int(s.SpanKind()),
		Start: nanos(s.StartTime()), End: nanos(s.EndTime()), Attributes: encodeAttrs(s.Attributes()),
	}
	if p := s.Parent(); p.SpanID().IsValid() {
		out.ParentSpanID = p.SpanID().String()
		if p.IsRemote() {
			out.Flags |= 0x300 // SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK | IS_REMOTE
		} else {
			out.Flags |= 0x100
		}
	}
	for _, ev := range s.Events() {
		out.Events = append(out.Events, otlpEvent{Time: nanos(ev.Time), Name: ev.Name, Attributes: encodeAttrs(ev.Attributes)})
	}
	for _, l := range s.Links() {
		out.Links = append(out.Links, otlpLink{TraceID: l.SpanContext.TraceID().String(),
			SpanID: l.SpanContext.SpanID().String(), TraceState: l.SpanContext.TraceState().String(),
			Attributes: encodeAttrs(l.Attributes)})
	}
	// OTLP's status codes: 0 unset, 1 ok, 2 error (the Go API's Error is 1).
	switch st := s.Status(); st.Code {
	case codes.Error:
		out.Status = otlpStatus{Code: 2, Message: st.Description}
	case codes.Ok:
		out.Status = otlpStatus{Code: 1}
	}
	return out
}

func nanos(t time.Time) string {
	if t.IsZero() {
		return "0"
	}
	return strconv.FormatInt(t.UnixNano(), 10)
}

func encodeAttrs(kvs []attribute.KeyValue) []otlpKV {
	if len(kvs) == 0 {
		return nil
	}
	out := make([]otlpKV, 0, len(kvs))
	for _, kv := range kvs {
		out = append(out, otlpKV{Key: string(kv.Key), Value: encodeValue(kv.Value)})
	}
	return out
}

func encodeValue(v attribute.Value) otlpValue {
	switch v.Type() {
	case attribute.BOOL:
		b := v.AsBool()
		return otlpValue{Bool: &b}
	case attribute.INT64:
		s := strconv.FormatInt(v.AsInt64(), 10)
		return otlpValue{Int: &s}
	case attribute.FLOAT64:
		f := v.AsFloat64()
		if math.IsNaN(f) || math.IsInf(f, 0) {
			s := strconv.FormatFloat(f, 'g', -1, 64)
			return otlpValue{String: &s}
		}
		return otlpValue{Double: &f}
	case attribute.BOOLSLICE:
		var a otlpArray
		for _, b := range v.AsBoolSlice() {
			a.Values = append(a.Values, encodeValue(attribute.BoolValue(b)))
		}
		return otlpValue{Array: &a}
	case attribute.INT64SLICE:
		var a otlpArray
		for _, n := range v.AsInt64Slice() {
			a.Values = append(a.Values, encodeValue(attribute.Int64Value(n)))
		}
		return otlpValue{Array: &a}
	case attribute.FLOAT64SLICE:
		var a otlpArray
		for _, f := range v.AsFloat64Slice() {
			a.Values = append(a.Values, encodeValue(attribute.Float64Value(f)))
		}
		return otlpValue{Array: &a}
	case attribute.STRINGSLICE:
		var a otlpArray
		for _, s := range v.AsStringSlice() {
			a.Values = append(a.Values, encodeValue(attribute.StringValue(s)))
		}
		return otlpValue{Array: &a}
	}
	s := v.String()
	return otlpValue{String: &s}
}
