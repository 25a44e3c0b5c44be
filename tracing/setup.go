package tracing

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
)

// ErrConfig wraps every error of a bad OTEL_* setting.
var ErrConfig = errors.New("tracing: bad OpenTelemetry setting")

// FromEnv returns a tracer provider configured by the standard
// OpenTelemetry environment variables, or nil when tracing is off:
// OTEL_SDK_DISABLED=true, OTEL_TRACES_EXPORTER=none, or neither
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT nor OTEL_EXPORTER_OTLP_ENDPOINT set.
//
// Read: OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT, _HEADERS, _TIMEOUT (ms) and
// _PROTOCOL (http/json; http/protobuf is sent as http/json, which every
// OTLP/HTTP receiver accepts; grpc is refused), OTEL_SERVICE_NAME and
// OTEL_RESOURCE_ATTRIBUTES (service defaults to service),
// OTEL_TRACES_SAMPLER[_ARG] and OTEL_BSP_* (by the SDK), all from the
// process environment. Shut the provider down to flush its spans.
func FromEnv(ctx context.Context, service string) (*sdktrace.TracerProvider, error) {
	getenv := os.Getenv
	if strings.EqualFold(getenv("OTEL_SDK_DISABLED"), "true") {
		return nil, nil
	}
	switch x := getenv("OTEL_TRACES_EXPORTER"); x {
	case "", "otlp":
	case "none":
		return nil, nil
	default:
		return nil, fmt.Errorf("%w: OTEL_TRACES_EXPORTER=%q: dsat exports otlp (or none)", ErrConfig, x)
	}
	endpoint, err := tracesURL(getenv)
	if err != nil || endpoint == "" {
		return nil, err
	}
	switch p := first(getenv, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"); p {
	case "", "http/json", "http/protobuf":
	default:
		return nil, fmt.Errorf("%w: OTLP protocol %q: dsat sends OTLP/HTTP with JSON (set http/json and a receiver's HTTP endpoint, usually port 4318)", ErrConfig, p)
	}
	if err := checkSampler(getenv); err != nil {
		return nil, err
	}
	headers, err := parseHeaders(first(getenv, "OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS"))
	if err != nil {
		return nil, err
	}
	timeout := 10 * time.Second
	if v := first(getenv, "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("%w: OTLP timeout %q: want milliseconds, e.g. 10000", ErrConfig, v)
		}
		timeout = time.Duration(n) * time.Millisecond
	}
	res, err := resource.New(ctx, resource.WithAttributes(semconv.ServiceName(service)),
		resource.WithTelemetrySDK(), resource.WithFromEnv())
	if err != nil {
		return nil, fmt.Errorf("%w: resource: %w", ErrConfig, err)
	}
	exp := &Exporter{URL: endpoint, Headers: headers, Timeout: timeout}
	return sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res),
		sdktrace.WithIDGenerator(IDGenerator{})), nil
}

// checkSampler refuses an OTEL_TRACES_SAMPLER the SDK does not know, or a
// ratio that is not a number in [0, 1]: the SDK would only log it and
// sample everything, which is not what the operator asked for.
func checkSampler(getenv func(string) string) error {
	name, arg := getenv("OTEL_TRACES_SAMPLER"), getenv("OTEL_TRACES_SAMPLER_ARG")
	switch name {
	case "", "always_on", "always_off", "parentbased_always_on", "parentbased_always_off":
		return nil
	case "traceidratio", "parentbased_traceidratio":
		if arg == "" {
			return nil // the SDK's default ratio, 1
		}
		if r, err := strconv.ParseFloat(arg, 64); err != nil || r < 0 || r > 1 {
			return fmt.Errorf("%w: OTEL_TRACES_SAMPLER_ARG=%q: want a ratio from 0 to 1, e.g. 0.1", ErrConfig, arg)
		}
		return nil
	}
	return fmt.Errorf("%w: OTEL_TRACES_SAMPLER=%q: use always_on, always_off, traceidratio or parentbased_always_on, parentbased_always_off, parentbased_traceidratio", ErrConfig, name)
}

// tracesURL is the traces endpoint: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT as
// it is, or OTEL_EXPORTER_OTLP_ENDPOINT + /v1/traces; "" for none.
func tracesURL(getenv func(string) string) (string, error) {
	raw, suffix := getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"), ""
	name := "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
	if raw == "" {
		raw, suffix, name = getenv("OTEL_EXPORTER_OTLP_ENDPOINT"), "/v1/traces", "OTEL_EXPORTER_OTLP_ENDPOINT"
	}
	if raw == "" {
		return "", nil
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("%w: %s=%q: want an http:// or https:// URL such as http://127.0.0.1:4318", ErrConfig, name, raw)
	}
	if suffix != "" {
		u.Path = strings.TrimSuffix(u.Path, "/") + suffix
	}
	return u.String(), nil
}

// parseHeaders reads "k1=v1,k2=v2" (values URL-encoded).
func parseHeaders(s string) (map[string]string, error) {
	out := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		if strings.TrimSpace(kv) == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		k = strings.TrimSpace(k)
		dv, err := url.QueryUnescape(strings.TrimSpace(v))
		if !ok || k == "" || err != nil {
			return nil, fmt.Errorf("%w: OTLP headers: %q is not key=value", ErrConfig, kv)
		}
		out[k] = dv
	}
	return out, nil
}

func first(getenv func(string) string, names ...string) string {
	for _, n := range names {
		if v := getenv(n); v != "" {
			return v
		}
	}
	return ""
}
