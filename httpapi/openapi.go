package httpapi

import (
	_ "embed"
	"net/http"
)

// openAPIDoc is the OpenAPI 3.1 description of every route the API serves,
// written by hand. openapi_test.go checks it against the router in both
// directions and validates the test suite's real responses against it.
//
//go:embed openapi.json
var openAPIDoc []byte

// openapi serves the document. It is open without a token, like /healthz:
// it describes the API, not its data.
func (a *API) openapi(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache")
	_, _ = w.Write(openAPIDoc)
}
