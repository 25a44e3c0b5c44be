package lua

import (
	"context"
	"regexp"
	"strings"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// TestHeaders: every script opens with a header that names its KEYS, its
// ARGV and its return values, and never builds a key from a literal prefix.
func TestHeaders(t *testing.T) {
	for name := range All {
		src := mustRead(name + ".lua")
		var header []string
		for _, line := range strings.Split(src, "\n") {
			if !strings.HasPrefix(line, "--") {
				break
			}
			header = append(header, line)
		}
		h := strings.Join(header, "\n")
		if !strings.HasPrefix(h, "-- "+name+".lua:") || !strings.Contains(h, "KEYS[1]") || !strings.Contains(h, "ARGV[1]") || !strings.Contains(h, "Returns:") {
			t.Errorf("%s.lua: header lacks its name, KEYS, ARGV or Returns:\n%s", name, h)
		}
		used := regexp.MustCompile(`KEYS\[(\d+)\]`).FindAllStringSubmatch(src[len(h):], -1)
		for _, u := range used {
			if !strings.Contains(h, "KEYS["+u[1]+"]") && !strings.Contains(h, "KEYS["+u[1]+"..") {
				t.Errorf("%s.lua uses KEYS[%s] without naming it in the header", name, u[1])
			}
		}
		if strings.Contains(src, "'dsat:") || strings.Contains(src, `"dsat:`) {
			t.Errorf("%s.lua builds a key from a literal prefix", name)
		}
	}
}

// TestScriptsCompile loads every script (lib.lua included) into
// gopher-lua through miniredis; the contract tests in package dsat run
// them on real Redis too.
func TestScriptsCompile(t *testing.T) {
	m := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: m.Addr()})
	defer rdb.Close()
	for name, s := range All {
		if err := s.Load(context.Background(), rdb).Err(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}
