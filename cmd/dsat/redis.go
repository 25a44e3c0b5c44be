package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"runtime"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dsat-dev/dsat/dsat"
	"github.com/dsat-dev/dsat/workers"
)

// connectRedis opens a client for a URL: redis:// or rediss:// (TLS), with
// user and password for ACLs; several comma-separated addresses (URLs or
// host:port) mean a Redis Cluster. It pings Redis before returning.
func connectRedis(ctx context.Context, raw string, readers int) (redis.UniversalClient, error) {
	if raw == "" {
		return nil, usagef("--redis is required, e.g. --redis redis://127.0.0.1:6379 (or set DSAT_REDIS_URL)")
	}
	pool := max(10*runtime.GOMAXPROCS(0), readers+20)
	parts := strings.Split(raw, ",")
	var rdb redis.UniversalClient
	if len(parts) == 1 {
		opt, err := redis.ParseURL(withScheme(parts[0]))
		if err != nil {
			return nil, fmt.Errorf("bad Redis URL %q: %v; write redis://host:port[/db] or rediss:// for TLS", raw, err)
		}
		opt.PoolSize = pool
		rdb = redis.NewClient(opt)
	} else {
		copt := &redis.ClusterOptions{PoolSize: pool}
		for i, p := range parts {
			opt, err := redis.ParseURL(withScheme(strings.TrimSpace(p)))
			if err != nil {
				return nil, fmt.Errorf("bad Redis Cluster address %q: %v; write host:port,host:port or redis://host:port,redis://host:port", p, err)
			}
			copt.Addrs = append(copt.Addrs, opt.Addr)
			if i == 0 {
				copt.Username, copt.Password = opt.Username, opt.Password
				if opt.TLSConfig != nil {
					copt.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
				}
			}
		}
		rdb = redis.NewClusterClient(copt)
	}
	if err := pingRedis(ctx, rdb); err != nil {
		_ = rdb.Close()
		return nil, fmt.Errorf("cannot reach Redis at %s: %v; is it running, and is the address right?", redactURL(raw), err)
	}
	return rdb, nil
}

// pingRedis checks that Redis answers. A refused connection fails at once
// (nothing listens there); a timeout (a busy or starting Redis, a short
// read_timeout) is retried with backoff for a few seconds.
func pingRedis(ctx context.Context, rdb redis.UniversalClient) error {
	backoff := 100 * time.Millisecond
	deadline := time.Now().Add(5 * time.Second)
	for {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := rdb.Ping(pctx).Err()
		cancel()
		var ne net.Error
		if err == nil || !errors.As(err, &ne) || !ne.Timeout() || time.Now().Add(backoff).After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}

func withScheme(s string) string {
	if strings.Contains(s, "://") {
		return s
	}
	return "redis://" + s
}

// redactURL hides a password in messages.
func redactURL(raw string) string {
	var out []string
	for _, p := range strings.Split(raw, ",") {
		if u, err := url.Parse(withScheme(p)); err == nil && u.User != nil {
			if _, has := u.User.Password(); has {
				u.User = url.UserPassword(u.User.Username(), "xxx")
			}
			p = u.String()
		}
		out = append(out, p)
	}
	return strings.Join(out, ",")
}

// checkEviction refuses a Redis that evicts keys: an evicted stream loses
// work. Managed Redis that forbids CONFIG only gets a warning.
func checkEviction(ctx context.Context, rdb redis.UniversalClient) (string, error) {
	res, err := rdb.ConfigGet(ctx, "maxmemory-policy").Result()
	if err != nil {
		return "cannot read maxmemory-policy (" + err.Error() + "); make sure it is noeviction", nil
	}
	policy := res["maxmemory-policy"]
	if strings.HasPrefix(policy, "allkeys-") || strings.HasPrefix(policy, "volatile-") {
		return "", fmt.Errorf("this Redis evicts keys (maxmemory-policy is %s): evicted stream keys lose work; set it to noeviction (CONFIG SET maxmemory-policy noeviction, or maxmemory-policy noeviction in redis.conf)", policy)
	}
	return "", nil
}

// loadPipelines reads the --pipelines folder, or the embedded examples
// (written to a temporary folder so exec steps find their scripts).
func loadPipelines(dir string, examplesDir func() (string, error)) ([]*dsat.Pipeline, error) {
	if dir == "" {
		if examplesDir == nil {
			return nil, usagef("--pipelines is required: a folder of pipeline YAML files (or set DSAT_PIPELINES)")
		}
		d, err := examplesDir()
		if err != nil {
			return nil, fmt.Errorf("write example pipelines: %w", err)
		}
		dir = d
	}
	ps, err := dsat.LoadPipelineDir(dir)
	var ve dsat.ValidationErrors
	switch {
	case errors.As(err, &ve):
		return nil, fmt.Errorf("invalid pipeline files in %s:\n%w", dir, err)
	case errors.Is(err, dsat.ErrNoPipelines):
		return nil, fmt.Errorf("pipelines folder %s holds no *.yaml or *.yml file; point --pipelines at a folder of pipeline definitions", dir)
	case err != nil:
		return nil, fmt.Errorf("pipelines folder %s: %w", dir, err)
	}
	workers.ResolveExecDirs(ps, "exec", "process")
	return ps, nil
}
