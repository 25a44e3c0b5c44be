package httpapi

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net"
	"net/http"
	"strings"
)

// auth checks the bearer token when tokens are configured. allowQuery also
// accepts ?access_token= (for EventSource, which cannot set headers).
func (a *API) auth(allowQuery bool) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		if len(a.tokens) == 0 {
			return next
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			got, ok := bearer(r.Header.Get("Authorization"))
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

// bearer returns the token of an "Authorization: Bearer <token>" header;
// the scheme is case-insensitive (RFC 7235).
func bearer(h string) (string, bool) {
	scheme, token, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	return strings.TrimSpace(token), true
}

// tokenDigests hashes the configured tokens once.
func tokenDigests(tokens []string) [][sha256.Size]byte {
	var out [][sha256.Size]byte
	for _, t := range tokens {
		if t != "" {
			out = append(out, sha256.Sum256([]byte(t)))
		}
	}
	return out
}

// tokenOK compares digests, in constant time and against every token, so
// neither the tokens' contents nor their lengths show in the time taken.
func (a *API) tokenOK(got string) bool {
	d := sha256.Sum256([]byte(got))
	ok := 0
	for _, t := range a.tokens {
		ok |= subtle.ConstantTimeCompare(d[:], t[:])
	}
	return ok == 1
}

// sameOrigin refuses state-changing requests that a browser sends from
// another site (Sec-Fetch-Site, else Origin against Host): without it, any
// web page could POST to an API that runs with auth off. Requests from
// programs (no such headers) pass.
func (a *API) sameOrigin(next http.Handler) http.Handler {
	cop := http.NewCrossOriginProtection()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := cop.Check(r); err != nil {
			writeProblem(w, r, http.StatusForbidden, "cross-origin",
				fmt.Sprintf("%s from another site is refused (%v); use the dashboard served by this API, or call it from a program, not a web page of another origin", r.Method, err))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// loopbackHost refuses requests whose Host is not a loopback name or
// address. It guards an API that listens on loopback with auth off against
// DNS rebinding: a web page whose name an attacker points at 127.0.0.1
// would otherwise read and drive the API.
func (a *API) loopbackHost(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !isLoopbackHost(r.Host) {
			writeProblem(w, r, http.StatusForbidden, "forbidden-host",
				fmt.Sprintf("Host %q is not a loopback name: this API listens on loopback with auth off, so it answers only Host localhost, 127.0.0.1 or [::1] (against DNS rebinding); use one of those, or serve with --token", trimID(r.Host)))
			return
		}
		next.ServeHTTP(w, r)
	})
}

func isLoopbackHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}
