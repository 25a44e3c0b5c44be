package main

import "net/http"

// dashboard returns the handler of the web dashboard served at /, or nil.
func dashboard() http.Handler { return nil }
