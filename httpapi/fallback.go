package httpapi

import (
	"net/http"
	"strings"

	"github.com/go-chi/chi/v5"
)

// allowedMethods are the methods the Allow header of a 405 may name.
var allowedMethods = []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}

// methodNotAllowed answers 405 with the Allow header RFC 9110 asks for:
// the methods router has a route for at this path.
func methodNotAllowed(router chi.Routes) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var allow []string
		for _, m := range allowedMethods {
			if router.Match(chi.NewRouteContext(), m, r.URL.Path) {
				allow = append(allow, m)
			}
		}
		w.Header().Set("Allow", strings.Join(allow, ", "))
		writeProblem(w, r, http.StatusMethodNotAllowed, "method-not-allowed",
			r.Method+" is not allowed on "+r.URL.Path+"; use "+strings.Join(allow, " or "))
	}
}

// notFound is the 404 of every path no route or file answers.
func notFound(w http.ResponseWriter, r *http.Request) {
	writeProblem(w, r, http.StatusNotFound, "not-found", "no route "+r.Method+" "+r.URL.Path+"; see the API table in the README")
}

// staticOrNotFound serves the dashboard's files; a path that names no
// file gets the API's problem+json 404 instead of the file server's
// plain-text one.
func staticOrNotFound(files http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		files.ServeHTTP(&notFoundCatcher{ResponseWriter: w, r: r}, r)
	})
}

// notFoundCatcher passes a response through unless its status is 404,
// which it replaces with notFound's answer.
type notFoundCatcher struct {
	http.ResponseWriter
	r      *http.Request
	caught bool
}

func (c *notFoundCatcher) WriteHeader(status int) {
	if status == http.StatusNotFound {
		c.caught = true
		h := c.ResponseWriter.Header()
		for _, k := range []string{"Content-Type", "Content-Length"} {
			h.Del(k)
		}
		notFound(c.ResponseWriter, c.r)
		return
	}
	c.ResponseWriter.WriteHeader(status)
}

func (c *notFoundCatcher) Write(p []byte) (int, error) {
	if c.caught {
		return len(p), nil // the file server's "404 page not found"
	}
	return c.ResponseWriter.Write(p)
}
