package web_test

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/dsat-dev/dsat/dsat"
	"github.com/dsat-dev/dsat/httpapi"
	"github.com/dsat-dev/dsat/web"
)

// dashboardEnv is an API with the dashboard on miniredis for one
// pipeline, for plain HTTP requests. The browser tests (browserEnv, in
// files with the integration build tag) add headless Chromium to it.
type dashboardEnv struct {
	ctx context.Context
	rdb *redis.Client
	c   *dsat.Client
	srv *httptest.Server
}

func newDashboardEnv(t *testing.T, pipelineYAML string, more ...string) *dashboardEnv {
	t.Helper()
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { rdb.Close() })
	p, err := dsat.ParsePipeline("demo.yaml", []byte(pipelineYAML))
	if err != nil {
		t.Fatal(err)
	}
	ps := []*dsat.Pipeline{p}
	for _, y := range more { // more pipelines (a sub-pipeline's child)
		q, err := dsat.ParsePipeline("more.yaml", []byte(y))
		if err != nil {
			t.Fatal(err)
		}
		// A file that begins "# draining" stands for a version loaded
		// from its record (dsat.Client.DrainingPipelines).
		q.Draining = strings.HasPrefix(y, "# draining\n")
		ps = append(ps, q)
	}
	c, err := dsat.NewClient(rdb, dsat.Config{}, ps...)
	if err != nil {
		t.Fatal(err)
	}
	api := httpapi.NewRouter(httpapi.Config{Client: c, Logger: zerolog.Nop(), Static: web.Handler()})
	srv := httptest.NewServer(api)
	t.Cleanup(func() { api.Close(); srv.Close() })
	return &dashboardEnv{ctx: context.Background(), rdb: rdb, c: c, srv: srv}
}
