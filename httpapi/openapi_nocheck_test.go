//go:build !integration

package httpapi

import (
	"net/http"
	"testing"
)

// openAPICheck, in the fast suite, only serves next: checking each
// exchange against openapi.json needs kin-openapi, which only the full
// suite (-tags integration, as CI runs it) compiles; see
// openapi_check_test.go.
type openAPICheck struct {
	next http.Handler
}

func newOpenAPICheck(_ *testing.T, next http.Handler) *openAPICheck {
	return &openAPICheck{next: next}
}

func (c *openAPICheck) ServeHTTP(w http.ResponseWriter, r *http.Request) { c.next.ServeHTTP(w, r) }
