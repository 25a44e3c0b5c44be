package httpapi

import (
	"context"
	"errors"
	"net"
	"net/http"
	"runtime/debug"
	"time"
)

func stack() []byte { return debug.Stack() }

// NewServer returns the http.Server settings dsat serve uses: a header read
// timeout against slowloris, an idle timeout, and no whole-response write
// timeout (it would cut event streams; the API sets a deadline per write).
func NewServer(addr string, h http.Handler) *http.Server {
	return &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
}

// Serve runs srv on l until ctx ends, then shuts down gracefully: open
// event streams are ended first (api.Close), then in-flight requests get
// up to grace to finish.
func Serve(ctx context.Context, srv *http.Server, l net.Listener, api *API, grace time.Duration) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	if api != nil {
		api.Close()
	}
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	err := srv.Shutdown(sctx)
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		return serr
	}
	return err
}
