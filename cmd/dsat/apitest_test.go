package main

import (
	"net/http/httptest"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/dsat-dev/dsat/dsat"
	"github.com/dsat-dev/dsat/httpapi"
)

// apiOnMiniredis serves the HTTP API for the given pipelines on a fresh
// miniredis, for the commands that are its clients; it returns the client
// behind the API, its Redis and the API's base URL.
func apiOnMiniredis(t *testing.T, pipelineYAMLs ...string) (*dsat.Client, *redis.Client, string) {
	t.Helper()
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { rdb.Close() })
	c := clientOf(t, rdb, pipelineYAMLs...)
	api := httpapi.NewRouter(httpapi.Config{Client: c, Logger: zerolog.Nop()})
	srv := httptest.NewServer(api)
	t.Cleanup(func() { api.Close(); srv.Close() })
	return c, rdb, srv.URL
}
