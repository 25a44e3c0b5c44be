package web_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

// TestLinksOpenAPIDocument: the dashboard's header links the API's OpenAPI
// document, and the link, resolved against the page as a browser does,
// reaches it on the API that serves the dashboard.
func TestLinksOpenAPIDocument(t *testing.T) {
	e := newDashboardEnv(t, "name: demo\nversion: 1.0.0\nsteps:\n  a: {handler: echo}\n")
	page := get(t, e.srv.URL+"/")
	m := regexp.MustCompile(`<a href="([^"]+)" data-role="openapi"`).FindStringSubmatch(page)
	if m == nil {
		t.Fatal(`index.html has no <a href="..." data-role="openapi"> link to the OpenAPI document`)
	}
	base, _ := url.Parse(e.srv.URL + "/")
	link, err := base.Parse(m[1])
	if err != nil {
		t.Fatal(err)
	}
	var doc struct{ OpenAPI string }
	if err := json.Unmarshal([]byte(get(t, link.String())), &doc); err != nil || !strings.HasPrefix(doc.OpenAPI, "3.1.") {
		t.Fatalf("the dashboard's link %s does not lead to an OpenAPI 3.1 document: %q %v", link, doc.OpenAPI, err)
	}
}

func get(t *testing.T, u string) string {
	t.Helper()
	res, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", u, res.StatusCode, b)
	}
	return string(b)
}
