package main

import (
	"net/http"

	"github.com/dsat-dev/dsat/web"
)

// dashboard returns the handler of the web dashboard served at /.
func dashboard() http.Handler { return web.Handler() }
