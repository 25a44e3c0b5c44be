package httpapi

import (
	"strings"
	"testing"

	"github.com/dsat-dev/dsat/internal/redistest"
)

// TestAuthSchemeIsCaseInsensitive: RFC 7235 schemes are case-insensitive;
// only the exact token passes (no prefix or extension of it).
func TestAuthSchemeIsCaseInsensitive(t *testing.T) {
	t.Parallel()
	e := newEnv(t, redistest.Backends()[0], func(c *Config) { c.Tokens = []string{"s3cret"} })
	for _, h := range []string{"Bearer s3cret", "bearer s3cret", "BEARER s3cret", "bEaReR  s3cret "} {
		if r := e.do("GET", "/v1/pipelines", "", "", "Authorization", h); r.status != 200 {
			t.Errorf("%q: %d %s", h, r.status, r.raw)
		}
	}
	for _, h := range []string{"Bearer s3cre", "Bearer s3cret2", "Basic s3cret", "Bearers3cret", "s3cret", "Bearer "} {
		if r := e.do("GET", "/v1/pipelines", "", "", "Authorization", h); r.status != 401 {
			t.Errorf("%q: %d", h, r.status)
		}
	}
}

// TestCrossSitePostsRefused: a browser's cross-site POST is a 403 (with
// auth off any page could otherwise drive the API); same-origin requests
// and programs pass.
func TestCrossSitePostsRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, redistest.Backends()[0])
	before := len(e.mini.Keys())
	for _, hdr := range [][]string{
		{"Sec-Fetch-Site", "cross-site"},
		{"Sec-Fetch-Site", "same-site"},
		{"Origin", "http://evil.example"},
	} {
		for _, path := range []string{"/v1/pipelines/demo/tasks", "/v1/pipelines/demo/batch"} {
			r := e.do("POST", path, "application/json", `[{}]`, hdr...)
			if r.status != 403 || r.header.Get("Content-Type") != "application/problem+json" || !strings.Contains(r.raw, "from another site is refused") {
				t.Errorf("%s with %v: %d %s", path, hdr, r.status, r.raw)
			}
		}
	}
	if len(e.mini.Keys()) != before {
		t.Fatal("a cross-site POST stored keys")
	}
	host := strings.TrimPrefix(e.srv.URL, "http://")
	for _, hdr := range [][]string{nil, {"Sec-Fetch-Site", "same-origin"}, {"Sec-Fetch-Site", "none"}, {"Origin", "http://" + host}} {
		if r := e.do("POST", "/v1/pipelines/demo/tasks", "application/json", `{}`, hdr...); r.status != 202 {
			t.Errorf("%v: %d %s", hdr, r.status, r.raw)
		}
	}
	if r := e.do("GET", "/v1/pipelines", "", "", "Sec-Fetch-Site", "cross-site"); r.status != 200 {
		t.Errorf("a cross-site GET: %d", r.status)
	}
}

// TestLoopbackHostCheck: on a loopback bind with auth off, a Host that is
// not a loopback name is refused (DNS rebinding); with tokens it is not.
func TestLoopbackHostCheck(t *testing.T) {
	t.Parallel()
	e := newEnv(t, redistest.Backends()[0], func(c *Config) { c.Loopback = true })
	port := e.srv.URL[strings.LastIndex(e.srv.URL, ":"):]
	for _, h := range []string{"evil.example" + port, "evil.example", "127.0.0.1.evil.example" + port, "10.0.0.1" + port} {
		r := e.doHost(h, "/v1/pipelines")
		if r.status != 403 || !strings.Contains(r.raw, "not a loopback name") {
			t.Errorf("Host %q: %d %s", h, r.status, r.raw)
		}
	}
	for _, h := range []string{"localhost" + port, "LOCALHOST" + port, "127.0.0.1" + port, "[::1]" + port, "127.0.0.2" + port} {
		if r := e.doHost(h, "/v1/pipelines"); r.status != 200 {
			t.Errorf("Host %q: %d %s", h, r.status, r.raw)
		}
	}
	a := newEnv(t, redistest.Backends()[0], func(c *Config) { c.Loopback, c.Tokens = true, []string{"t"} })
	if r := a.doHost("api.example", "/v1/pipelines", "Authorization", "Bearer t"); r.status != 200 {
		t.Errorf("with auth on: %d %s", r.status, r.raw)
	}
}
