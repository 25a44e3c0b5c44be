package httpapi

import (
	"crypto/subtle"
	"net/http"
	"strings"
)

// auth checks the bearer token when tokens are configured (constant-time
// compare against each). allowQuery also accepts ?access_token= (for
// EventSource, which cannot set headers).
func (a *API) auth(allowQuery bool) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		if len(a.cfg.Tokens) == 0 {
			return next
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if !ok && allowQuery {
				got = r.URL.Query().Get("access_token")
			}
			if got != "" && a.tokenOK(got) {
				next.ServeHTTP(w, r)
				return
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="dsat"`)
			detail := "send the API token as Authorization: Bearer <token>"
			if allowQuery {
				detail += " (or ?access_token=<token> for event streams)"
			}
			writeProblem(w, r, http.StatusUnauthorized, "unauthorized", detail)
		})
	}
}

func (a *API) tokenOK(got string) bool {
	ok := 0
	for _, t := range a.cfg.Tokens {
		ok |= subtle.ConstantTimeCompare([]byte(got), []byte(t))
	}
	return ok == 1
}
