package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// apiClient talks to the dsat HTTP API.
type apiClient struct {
	base, token string
	hc          *http.Client
}

func newAPIClient(o *apiOpts) (*apiClient, error) {
	base := strings.TrimRight(*o.api, "/")
	if !strings.HasPrefix(base, "http://") && !strings.HasPrefix(base, "https://") {
		return nil, usagef("--api %q must be an http:// or https:// URL, e.g. http://127.0.0.1:8080", base)
	}
	return &apiClient{base: base, token: *o.token, hc: &http.Client{Timeout: *o.timeout}}, nil
}

// do sends a request and decodes a JSON answer into out. A problem answer
// becomes an error with its detail.
func (c *apiClient) do(ctx context.Context, method, path string, body []byte, hdr map[string]string, out any) (int, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	res, err := c.hc.Do(req)
	if err != nil {
		return 0, fmt.Errorf("cannot reach the dsat API at %s: %v; is dsat serve (or dsat dev) running? set --api or DSAT_API", c.base, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(res.Body, 64<<20))
	if res.StatusCode >= 400 {
		var p struct{ Detail string }
		if json.Unmarshal(b, &p) == nil && p.Detail != "" {
			return res.StatusCode, fmt.Errorf("%s (HTTP %d)", p.Detail, res.StatusCode)
		}
		return res.StatusCode, fmt.Errorf("HTTP %d from %s: %s", res.StatusCode, path, strings.TrimSpace(string(b)))
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return res.StatusCode, fmt.Errorf("unexpected answer from %s: %v", path, err)
		}
	}
	return res.StatusCode, nil
}
