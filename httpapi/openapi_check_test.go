//go:build integration

package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
)

// The test suite's requests and responses are checked against openapi.json
// (newEnv wraps every API in an openAPICheck): every response against its
// operation's documented statuses, headers and schemas, each event of a
// stream against the schema its event name maps to (x-sse-data), and every
// request that got a 2xx against the documented parameters and body.

func init() {
	// Streams are text; their events are checked one by one (checkEvents).
	openapi3filter.RegisterBodyDecoder("text/event-stream", openapi3filter.PlainBodyDecoder)
}

var openAPI struct {
	once   sync.Once
	doc    *openapi3.T
	router routers.Router
	err    error
}

// loadOpenAPI loads openapi.json once, validated, for checking the test
// suite's traffic. Its object schemas are made strict (no properties
// beyond those documented): the published document leaves objects open
// to new fields, but every field the server sends today must be in it.
func loadOpenAPI(t *testing.T) (*openapi3.T, routers.Router) {
	t.Helper()
	openAPI.once.Do(func() {
		doc, err := parseOpenAPI()
		if err != nil {
			openAPI.err = err
			return
		}
		strictSchemas(doc)
		openAPI.doc = doc
		openAPI.router, openAPI.err = gorillamux.NewRouter(doc)
	})
	if openAPI.err != nil {
		t.Fatalf("httpapi/openapi.json: %v", openAPI.err)
	}
	return openAPI.doc, openAPI.router
}

// parseOpenAPI loads and validates the embedded document.
func parseOpenAPI() (*openapi3.T, error) {
	doc, err := openapi3.NewLoader().LoadFromData(openAPIDoc)
	if err != nil {
		return nil, err
	}
	return doc, doc.Validate(context.Background())
}

// strictSchemas sets additionalProperties: false on every object schema
// with properties that does not say otherwise.
func strictSchemas(doc *openapi3.T) {
	seen := map[*openapi3.Schema]bool{}
	var walk func(*openapi3.SchemaRef)
	walk = func(ref *openapi3.SchemaRef) {
		if ref == nil || ref.Value == nil || seen[ref.Value] {
			return
		}
		s := ref.Value
		seen[s] = true
		if len(s.Properties) > 0 && s.AdditionalProperties.Has == nil && s.AdditionalProperties.Schema == nil {
			no := false
			s.AdditionalProperties.Has = &no
		}
		for _, p := range s.Properties {
			walk(p)
		}
		walk(s.Items)
		walk(s.AdditionalProperties.Schema)
		for _, l := range []openapi3.SchemaRefs{s.AllOf, s.AnyOf, s.OneOf} {
			for _, x := range l {
				walk(x)
			}
		}
	}
	for _, s := range doc.Components.Schemas {
		walk(s)
	}
}

// openAPICheck serves next and checks each exchange against the document,
// failing t with what differs. checked records the operations and
// statuses it validated ("GET /v1/tasks/{id} 200").
type openAPICheck struct {
	t      *testing.T
	next   http.Handler
	doc    *openapi3.T
	router routers.Router

	mu      sync.Mutex
	checked map[string]bool
}

func newOpenAPICheck(t *testing.T, next http.Handler) *openAPICheck {
	doc, router := loadOpenAPI(t)
	return &openAPICheck{t: t, next: next, doc: doc, router: router, checked: map[string]bool{}}
}

// captureLimit bounds what is kept of a body for checking (a batch body
// may be 16 MiB); a larger body is passed on but not checked.
const captureLimit = 17 << 20

// capture keeps the first captureLimit bytes written to it.
type capture struct {
	buf       bytes.Buffer
	truncated bool
}

func (c *capture) Write(p []byte) (int, error) {
	if room := captureLimit - c.buf.Len(); len(p) > room {
		c.buf.Write(p[:room])
		c.truncated = true
		return len(p), nil
	}
	return c.buf.Write(p)
}

// teeBody copies what the handler reads of the request body.
type teeBody struct {
	io.ReadCloser
	c *capture
}

func (b teeBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	_, _ = b.c.Write(p[:n])
	return n, err
}

// recorder passes a response through (streaming and per-write deadlines
// keep working: Flush, Unwrap) and keeps a copy.
type recorder struct {
	http.ResponseWriter
	status int
	body   capture
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	_, _ = r.body.Write(p)
	return r.ResponseWriter.Write(p)
}

func (r *recorder) Flush() { _ = http.NewResponseController(r.ResponseWriter).Flush() }

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (c *openAPICheck) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	in := &capture{}
	if r.Body != nil {
		r.Body = teeBody{r.Body, in}
	}
	rec := &recorder{ResponseWriter: w}
	c.next.ServeHTTP(rec, r)
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	c.check(r, in, rec)
}

// check reports with t.Errorf (it runs on the server's goroutine).
func (c *openAPICheck) check(r *http.Request, in *capture, rec *recorder) {
	name := r.Method + " " + r.URL.Path
	route, params, err := c.router.FindRoute(r)
	if err != nil {
		// An undocumented path or method must be the API's own 404 or 405.
		if (rec.status == http.StatusNotFound || rec.status == http.StatusMethodNotAllowed) &&
			rec.Header().Get("Content-Type") == "application/problem+json" {
			return
		}
		c.t.Errorf("%s answered %d, but httpapi/openapi.json has no such operation (%v): document it under paths", name, rec.status, err)
		return
	}
	op := route.Method + " " + route.Path
	if route.Operation.Responses.Status(rec.status) == nil {
		c.t.Errorf("%s (%s) answered %d, a status httpapi/openapi.json does not list for it: add %q to its responses\nbody: %.600s",
			name, op, rec.status, fmt.Sprint(rec.status), rec.body.buf.String())
		return
	}
	opts := &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true,
		ExcludeResponseBody: rec.body.truncated || rec.Header().Get("Content-Encoding") != "",
		AuthenticationFunc:  openapi3filter.NoopAuthenticationFunc}
	reqIn := &openapi3filter.RequestValidationInput{Request: r, PathParams: params, Route: route, Options: opts}
	err = openapi3filter.ValidateResponse(context.Background(), &openapi3filter.ResponseValidationInput{
		RequestValidationInput: reqIn, Status: rec.status, Header: rec.Header(),
		Body: io.NopCloser(bytes.NewReader(rec.body.buf.Bytes())), Options: opts})
	if err != nil {
		c.t.Errorf("%s (%s) answered %d, which does not match httpapi/openapi.json: %v\nbody: %.600s", name, op, rec.status, err, rec.body.buf.String())
		return
	}
	if rec.status == http.StatusOK && strings.HasPrefix(rec.Header().Get("Content-Type"), "text/event-stream") && !rec.body.truncated {
		c.checkEvents(name, route, rec.body.buf.String())
	}
	if rec.status < 300 {
		c.checkRequest(name, op, r, params, route, in)
	}
	c.mu.Lock()
	c.checked[fmt.Sprintf("%s %d", op, rec.status)] = true
	c.mu.Unlock()
}

// checkRequest checks a request the API accepted: its parameters and body
// match the document, and it has no query parameter the document leaves
// out (a parameter the API reads must be documented).
func (c *openAPICheck) checkRequest(name, op string, r *http.Request, params map[string]string, route *routers.Route, in *capture) {
	documented := documentedQuery(c.doc, route)
	for k := range r.URL.Query() {
		if !documented[k] {
			c.t.Errorf("%s (%s) accepted the query parameter %q, which httpapi/openapi.json does not document for this operation: add {\"name\": %q, \"in\": \"query\", ...} to its parameters",
				name, op, k, k)
		}
	}
	if in.truncated {
		return
	}
	req := r.Clone(context.Background())
	req.Body = io.NopCloser(bytes.NewReader(in.buf.Bytes()))
	err := openapi3filter.ValidateRequest(context.Background(), &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
		Options: &openapi3filter.Options{MultiError: true, AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}})
	if err != nil {
		c.t.Errorf("%s (%s) was accepted, but httpapi/openapi.json does not allow the request: %v", name, op, err)
	}
}

// documentedQuery lists the operation's query parameters, with those of
// its security schemes (?access_token=).
func documentedQuery(doc *openapi3.T, route *routers.Route) map[string]bool {
	out := map[string]bool{}
	for _, l := range []openapi3.Parameters{route.PathItem.Parameters, route.Operation.Parameters} {
		for _, p := range l {
			if p.Value != nil && p.Value.In == openapi3.ParameterInQuery {
				out[p.Value.Name] = true
			}
		}
	}
	sec := doc.Security
	if route.Operation.Security != nil {
		sec = *route.Operation.Security
	}
	for _, req := range sec {
		for scheme := range req {
			if s := doc.Components.SecuritySchemes[scheme]; s != nil && s.Value != nil && s.Value.In == "query" {
				out[s.Value.Name] = true
			}
		}
	}
	return out
}

// checkEvents checks each complete event of a stream: its data against
// the schema that x-sse-data maps its event name to ("*" for any other).
func (c *openAPICheck) checkEvents(name string, route *routers.Route, stream string) {
	mt := route.Operation.Responses.Status(http.StatusOK).Value.Content.Get("text/event-stream")
	schemas, _ := mt.Extensions["x-sse-data"].(map[string]any)
	if len(schemas) == 0 {
		c.t.Errorf("%s: the text/event-stream response in httpapi/openapi.json has no x-sse-data naming the schema of each event's data", name)
		return
	}
	blocks := strings.Split(stream, "\n\n")
	for _, block := range blocks[:len(blocks)-1] { // the last is incomplete (or empty)
		var event, data string
		for _, line := range strings.Split(block, "\n") {
			if v, ok := strings.CutPrefix(line, "event: "); ok {
				event = v
			} else if v, ok := strings.CutPrefix(line, "data: "); ok {
				data = v
			}
		}
		if data == "" {
			continue // a comment
		}
		ref, ok := schemas[event].(map[string]any)
		if !ok {
			ref, _ = schemas["*"].(map[string]any)
		}
		refName, _ := ref["$ref"].(string)
		schema := c.doc.Components.Schemas[strings.TrimPrefix(refName, "#/components/schemas/")]
		if schema == nil {
			c.t.Errorf("%s: x-sse-data in httpapi/openapi.json names no schema for event %q (got %v)", name, event, ref)
			return
		}
		var v any
		if err := json.Unmarshal([]byte(data), &v); err != nil {
			c.t.Errorf("%s: event %s: data is not JSON: %v", name, event, err)
			continue
		}
		if err := schema.Value.VisitJSON(v, openapi3.EnableJSONSchema2020(), openapi3.MultiErrors()); err != nil {
			c.t.Errorf("%s: event %s does not match %s in httpapi/openapi.json: %v\ndata: %.600s", name, event, refName, err, data)
			return // one per stream is enough
		}
	}
}

// unchecked lists the documented operations that got no validated 2xx.
func (c *openAPICheck) unchecked() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, op := range documentedOperations(c.doc) {
		ok := false
		for k := range c.checked {
			if rest, found := strings.CutPrefix(k, op+" "); found && strings.HasPrefix(rest, "2") {
				ok = true
			}
		}
		if !ok {
			out = append(out, op)
		}
	}
	slices.Sort(out)
	return out
}

// documentedOperations lists "METHOD /path" for every operation in doc.
func documentedOperations(doc *openapi3.T) []string {
	var out []string
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			out = append(out, strings.ToUpper(method)+" "+path)
		}
	}
	slices.Sort(out)
	return out
}
