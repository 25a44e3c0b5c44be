package httpapi

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/dsat-dev/dsat/internal/redistest"
)

func TestScheduleRoutes(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, b redistest.Backend) {
		e := newEnv(t, b)
		const js = "application/json"
		r := e.do("PUT", "/v1/schedules/nightly", js, `{"pipeline": "demo", "cron": "0 3 * * *", "timezone": "Europe/Paris", "payload": {"kind": "report"}}`)
		if r.status != 201 || r.header.Get("Location") != "/v1/schedules/nightly" || r.body["id"] != "nightly" || r.body["catchup"] != "one" ||
			r.body["next_run_at"] == nil || r.body["last_run_at"] != nil || r.body["last_task"] != "" || r.body["paused"] != false {
			t.Fatalf("create: %d %v %s", r.status, r.header, r.raw)
		}
		if r.body["payload"].(map[string]any)["kind"] != "report" || !strings.HasSuffix(r.body["next_run_at"].(string), ":00:00.000Z") {
			t.Fatalf("create: %s", r.raw)
		}
		if r := e.do("PUT", "/v1/schedules/nightly", js, `{"id": "nightly", "pipeline": "demo", "cron": "0 4 * * *", "timezone": "Europe/Paris"}`); r.status != 200 || r.body["cron"] != "0 4 * * *" {
			t.Fatalf("update: %d %s", r.status, r.raw)
		}
		e.do("PUT", "/v1/schedules/tick", js, `{"pipeline": "demo", "every": "2s", "catchup": "all", "jitter": "500ms", "paused": true}`)
		l := e.do("GET", "/v1/schedules", "", "")
		var list []map[string]any
		if l.status != 200 || json.Unmarshal([]byte(l.raw), &list) != nil || len(list) != 2 || list[0]["id"] != "nightly" || list[1]["id"] != "tick" ||
			list[1]["next_run_at"] != nil || list[1]["paused"] != true {
			t.Fatalf("list: %d %s", l.status, l.raw)
		}
		if r := e.do("POST", "/v1/schedules/tick/resume", "", ""); r.status != 200 || r.body["paused"] != false || r.body["next_run_at"] == nil {
			t.Fatalf("resume: %d %s", r.status, r.raw)
		}
		if r := e.do("POST", "/v1/schedules/tick/pause", "", ""); r.status != 200 || r.body["paused"] != true || r.body["next_run_at"] != nil {
			t.Fatalf("pause: %d %s", r.status, r.raw)
		}
		if r := e.do("GET", "/v1/schedules/tick", "", ""); r.status != 200 || r.body["every"] != "2s" || r.body["jitter"] != "500ms" {
			t.Fatalf("get: %d %s", r.status, r.raw)
		}
		if r := e.do("DELETE", "/v1/schedules/tick", "", ""); r.status != 204 {
			t.Fatalf("delete: %d %s", r.status, r.raw)
		}
		for _, tc := range []struct {
			method, path, ctype, body string
			status                    int
			kind, detail              string
		}{
			{"DELETE", "/v1/schedules/tick", "", "", 404, "schedule-not-found", "GET /v1/schedules lists"},
			{"GET", "/v1/schedules/tick", "", "", 404, "schedule-not-found", "schedule not found"},
			{"POST", "/v1/schedules/tick/pause", "", "", 404, "schedule-not-found", "schedule not found"},
			{"GET", "/v1/schedules/Bad%21", "", "", 400, "invalid-schedule", "must be 1 to 64 characters"},
			{"PUT", "/v1/schedules/Bad", js, `{"pipeline": "demo", "every": "1s"}`, 400, "invalid-schedule", `field "id"`},
			{"PUT", "/v1/schedules/x", js, `{"pipeline": "demo", "every": "100ms"}`, 400, "invalid-schedule", `field "every": 100ms must be from 1s`},
			{"PUT", "/v1/schedules/x", js, `{"pipeline": "demo"}`, 400, "invalid-schedule", `give every`},
			{"PUT", "/v1/schedules/x", js, `{"pipeline": "demo", "cron": "61 * * * *"}`, 400, "invalid-schedule", `field "cron"`},
			{"PUT", "/v1/schedules/x", js, `{"pipeline": "demo", "cron": "@daily", "timezone": "Nowhere/Else"}`, 400, "invalid-schedule", `field "timezone"`},
			{"PUT", "/v1/schedules/x", js, `{"pipeline": "ghost", "every": "1s"}`, 404, "pipeline-not-found", `field "pipeline"`},
			{"PUT", "/v1/schedules/x", js, `{"pipeline": "demo", "every": 5}`, 400, "invalid-schedule", `field "every" must be a string`},
			{"PUT", "/v1/schedules/x", js, `{"pipeline": "demo", "every": "1s", "when": "now"}`, 400, "invalid-schedule", `unknown field "when"`},
			{"PUT", "/v1/schedules/x", js, `[1]`, 400, "invalid-schedule", `must be a JSON object`},
			{"PUT", "/v1/schedules/x", js, `{"id": "y", "pipeline": "demo", "every": "1s"}`, 400, "invalid-schedule", `leave id out`},
			{"PUT", "/v1/schedules/x", js, `{"pipeline": "demo", "every": "1s"`, 400, "invalid-json", `not one valid JSON value`},
			{"PUT", "/v1/schedules/x", "text/plain", `{}`, 415, "unsupported-media-type", `Content-Type`},
			{"PUT", "/v1/schedules/x", js, `{"pipeline": "demo", "every": "1s", "payload": "` + strings.Repeat("x", 1<<20) + `"}`, 400, "invalid-schedule", `larger than the limit`},
			{"PUT", "/v1/schedules/x", js, `{"pipeline": "demo", "every": "1s", "payload": "` + strings.Repeat("x", 2<<20) + `"}`, 413, "payload-too-large", `larger than the limit`},
		} {
			r := e.do(tc.method, tc.path, tc.ctype, tc.body)
			if r.status != tc.status || r.header.Get("Content-Type") != "application/problem+json" ||
				r.body["type"] != problemBase+tc.kind || !strings.Contains(r.body["detail"].(string), tc.detail) {
				t.Errorf("%s %s %.80s: %d %s", tc.method, tc.path, tc.body, r.status, r.raw)
			}
		}
		if r := e.do("PUT", "/v1/schedules/x", js, `{"pipeline": "demo", "every": "1s"}`, "Sec-Fetch-Site", "cross-site"); r.status != 403 {
			t.Fatalf("cross-site PUT: %d", r.status)
		}
		if r := e.do("GET", "/v1/schedules/x", "", ""); r.status != 404 {
			t.Fatalf("a refused PUT stored something: %d %s", r.status, r.raw)
		}
	})
}
