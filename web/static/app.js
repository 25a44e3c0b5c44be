// dsat dashboard: plain JavaScript on the public HTTP API. User data only
// ever reaches the page as text (textContent), never as HTML.
"use strict";

const state = { token: sessionStorage.getItem("dsat-token") || "", timers: [], source: null };

// h builds an element: h("div", {class: "x", onclick: f}, child, "text").
function h(tag, attrs, ...children) {
  const svg = ["svg", "g", "rect", "path", "text", "line", "polygon", "marker", "defs", "title", "circle"].includes(tag);
  const el = svg ? document.createElementNS("http://www.w3.org/2000/svg", tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) el.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function banner(msg) {
  const b = document.getElementById("banner");
  b.hidden = !msg;
  b.textContent = msg || "";
}

// api calls the dsat API; errors become exceptions with the problem detail.
async function api(method, path, body) {
  const headers = {};
  if (state.token) headers["Authorization"] = "Bearer " + state.token;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let res;
  try {
    res = await fetch(path, { method, headers, body });
  } catch (e) {
    banner("The dsat API does not answer: " + e.message);
    throw e;
  }
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (_) { data = null; }
  if (!res.ok) {
    const detail = (data && data.detail) || text || res.statusText;
    if (res.status === 503) banner("Redis is unavailable: " + detail);
    else if (res.status === 401) banner("The API needs a token: enter it at the top right.");
    const err = new Error(detail);
    err.status = res.status;
    throw err;
  }
  banner("");
  return data;
}

function every(ms, f) {
  f();
  state.timers.push(setInterval(f, ms));
}

function clearView() {
  state.timers.forEach(clearInterval);
  state.timers = [];
  if (state.source) { state.source.close(); state.source = null; }
  const v = document.getElementById("view");
  v.replaceChildren();
  return v;
}

// taskLink links to a task's page (a sub-pipeline's parent or child).
function taskLink(id, attr, value) { return h("a", { href: "#/task/" + encodeURIComponent(id), [attr]: value }, id); }

function statusEl(s) { return h("span", { class: "status " + s, "data-status": s }, s); }

function fmtTime(t) { return t ? new Date(t).toLocaleTimeString([], { hour12: false }) + "." + String(new Date(t).getMilliseconds()).padStart(3, "0") : ""; }

// ---- Pipelines -------------------------------------------------------

async function viewPipelines(v) {
  const list = await api("GET", "/v1/pipelines");
  if (!list.length) v.append(h("p", {}, "No pipeline is loaded."));
  for (const p of list) v.append(pipelineCard(p));
}

function pipelineCard(p) {
  const graph = h("div", { class: "graph" });
  const msg = h("div", { class: "error", "data-role": "submit-error" });
  const ta = h("textarea", { "data-role": "payload", "aria-label": "payload for " + p.name }, examplePayload(p.name));
  const form = h("form", { "data-pipeline": p.name, onsubmit: (e) => { e.preventDefault(); submitTask(p.name, ta, msg); } },
    h("h3", {}, "Submit a task"), ta,
    h("div", { class: "row" }, h("button", { class: "primary", type: "submit" }, "Submit"), msg));
  // Pause or resume the whole pipeline (POST /v1/pipelines/{name}/pause|resume).
  const pauseBtn = h("button", { "data-role": "pause", type: "button" });
  const showPaused = (on) => {
    pauseBtn.dataset.paused = String(on);
    pauseBtn.dataset.action = on ? "resume" : "pause";
    pauseBtn.textContent = on ? "Resume" : "Pause";
    pauseBtn.className = on ? "primary" : "";
    pauseBtn.title = on ? "Paused: no new token is begun. Resume it." : "Pause: running handlers finish, no new token is begun.";
  };
  pauseBtn.onclick = async () => {
    msg.textContent = "";
    try {
      const r = await api("POST", "/v1/pipelines/" + encodeURIComponent(p.name) + "/" + pauseBtn.dataset.action);
      showPaused(r.paused);
    } catch (e) { msg.textContent = e.message; }
  };
  showPaused(!!p.paused);
  const charts = h("div", { class: "charts", "data-role": "charts" });
  const flow = h("div", { class: "table-wrap", "data-role": "flow" });
  // A draining version (loaded from its record to finish its tasks) takes
  // no submission: no form.
  const card = h("section", { class: "card", "data-pipeline": p.name, "data-version": p.version },
    h("h2", {}, p.name, " ", h("span", { class: "muted" }, p.version + " · " + p.partitions + " partition" + (p.partitions > 1 ? "s" : "") +
      (p.draining ? " · draining: finishing its tasks, no new ones" : "")), " ", pauseBtn),
    graph, flow, charts, p.draining ? null : form);
  let drawn = null;
  every(1000, async () => {
    try {
      const d = await api("GET", "/v1/pipelines/" + encodeURIComponent(p.name) + "?version=" + encodeURIComponent(p.version));
      showPaused(!!d.pipeline.paused);
      if (!drawn) drawn = drawGraph(graph, d.pipeline);
      updateLoad(drawn, d.pipeline);
      drawFlow(flow, d.pipeline);
    } catch (_) { /* the banner says why */ }
  });
  // The stats move in 10-second buckets: one read per bucket is enough.
  every(10000, async () => {
    try {
      drawCharts(charts, await api("GET", "/v1/pipelines/" + encodeURIComponent(p.name) + "/stats?window=15m"), (p.steps || []).map((s) => s.name));
    } catch (_) { /* the banner says why */ }
  });
  return card;
}

// ---- Charts ----------------------------------------------------------

// drawCharts shows, per step, its throughput, failures and handler
// latency (p50, p95) over the stats window (GET /v1/pipelines/{name}/stats:
// one value per 10-second bucket, the last one still filling).
// Steps come in the pipeline's order, then any other (an older version's).
function drawCharts(container, st, order) {
  const n = st.times.length, secs = st.bucket_seconds || 10;
  const start = n ? fmtClock(st.times[0]) : "", end = n ? fmtClock(st.times[n - 1]) : "";
  const names = order.filter((n) => st.steps[n]).concat(Object.keys(st.steps).filter((n) => !order.includes(n)));
  const rows = names.map((name) => {
    const s = st.steps[name], t = s.totals;
    const rate = (v) => v.map((x) => x / secs);
    return h("tr", { "data-step": name }, h("td", {}, name),
      h("td", {}, chart(name, "throughput", "/s", [{ label: "done", cls: "ok", values: rate(s.ended) }], start, end),
        h("div", { class: "muted" }, `${t.ended} done`)),
      h("td", {}, chart(name, "failures", "", [{ label: "failed attempts", cls: "bad", values: s.failed }, { label: "dead", cls: "dead", values: s.dead }], start, end),
        h("div", { class: "muted" }, `${t.failed} failed attempts · ${t.dead} dead`)),
      h("td", {}, chart(name, "latency", " ms", [{ label: "p50", cls: "p50", values: s.run_p50_ms }, { label: "p95", cls: "p95", values: s.run_p95_ms }], start, end),
        h("div", { class: "muted" }, t.run_p50_ms === null ? "no run" : `p50 ${fmtMS(t.run_p50_ms)} · p95 ${fmtMS(t.run_p95_ms)} (wait p95 ${fmtMS(t.wait_p95_ms)})`)));
  });
  container.replaceChildren(h("h3", {}, "Last " + fmtWindow(st.window), " ", h("span", { class: "muted" }, "per 10-second bucket; handler run time")),
    h("div", { class: "table-wrap" }, h("table", { class: "charts" },
      h("thead", {}, h("tr", {}, ["step", "throughput", "failures", "latency p50 / p95"].map((c) => h("th", {}, c)))), h("tbody", {}, rows))));
}

function fmtClock(t) { return new Date(t).toLocaleTimeString([], { hour12: false, hour: "2-digit", minute: "2-digit" }); }
function fmtMS(v) { return v === null || v === undefined ? "—" : v < 10 ? v.toFixed(2) + " ms" : v < 10000 ? Math.round(v) + " ms" : (v / 1000).toFixed(1) + " s"; }
function fmtWindow(w) { const m = /^(\d+)m0s$/.exec(w); return m ? m[1] + " minutes" : w; }

// chart draws series (values per bucket, null for no value) as lines on
// one scale from 0, with the scale's top and the window's ends as labels.
// Each series' path carries data-points, how many values it drew.
function chart(step, kind, unit, series, start, end) {
  const W = 260, H = 64, L = 4, T = 12, B = 12, n = Math.max(...series.map((x) => x.values.length), 1);
  const top = Math.max(1e-9, ...series.flatMap((x) => x.values.filter((v) => v !== null)));
  const X = (i) => L + (n > 1 ? i * (W - 2 * L) / (n - 1) : 0), Y = (v) => T + (H - T - B) * (1 - v / top);
  const svg = h("svg", { class: "chart", width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: "img", "data-chart": kind, "data-step": step,
    "aria-label": `${kind} of ${step}` },
    h("line", { class: "axis", x1: L, y1: H - B, x2: W - L, y2: H - B }),
    h("text", { class: "tick", x: L, y: 9 }, top > 1e-6 ? fmtTop(top) + unit : "0"),
    h("text", { class: "tick", x: L, y: H - 1 }, start), h("text", { class: "tick", x: W - L, y: H - 1, "text-anchor": "end" }, end));
  const legend = [];
  for (const x of series) {
    let d = "", pen = false, points = 0;
    x.values.forEach((v, i) => {
      if (v === null || v === undefined) { pen = false; return; }
      d += (pen ? "L" : "M") + X(i).toFixed(1) + "," + Y(v).toFixed(1);
      pen = true;
      points++;
    });
    svg.append(h("path", { class: "series " + x.cls, d: d || "M0,0", "data-series": x.label, "data-points": points,
      "data-nonzero": x.values.filter((v) => v).length }, h("title", {}, x.label)));
    // A value with no neighbour draws no line: a dot shows it.
    const has = (i) => x.values[i] !== null && x.values[i] !== undefined;
    x.values.forEach((v, i) => {
      if (has(i) && !has(i - 1) && !has(i + 1)) svg.append(h("circle", { class: "dot " + x.cls, cx: X(i).toFixed(1), cy: Y(v).toFixed(1), r: 2 }));
    });
    legend.push(x.label);
  }
  if (series.length > 1) svg.append(h("text", { class: "tick", x: W / 2, y: H - 1, "text-anchor": "middle" }, legend.join(" / ")));
  return svg;
}

function fmtTop(v) { return v >= 100 ? Math.round(v) : v >= 1 ? +v.toFixed(1) : +v.toPrecision(2); }

function examplePayload(name) {
  return { textstats: '{"kind": "urgent", "text": "disk full"}', wordcount: '{"text": "the quick brown fox"}' }[name] || "{}";
}

async function submitTask(name, ta, msg) {
  msg.textContent = "";
  let body;
  try { body = JSON.stringify(JSON.parse(ta.value)); } catch (e) {
    msg.textContent = "Not valid JSON: " + e.message;
    return;
  }
  try {
    const r = await api("POST", "/v1/pipelines/" + encodeURIComponent(name) + "/tasks", body);
    location.hash = "#/task/" + encodeURIComponent(r.id);
  } catch (e) { msg.textContent = e.message; }
}

// drawGraph lays the steps out left to right by depth (longest path from
// the entry), orders each column by its predecessors' positions, and draws
// edges as curves with the switch cases as labels.
function drawGraph(container, p) {
  const steps = new Map(p.steps.map((s) => [s.name, s]));
  const preds = new Map(p.steps.map((s) => [s.name, []]));
  for (const e of p.edges) preds.get(e.to).push(e.from);
  const depth = new Map();
  const visit = (n) => {
    if (depth.has(n)) return depth.get(n);
    const d = preds.get(n).length ? Math.max(...preds.get(n).map(visit)) + 1 : 0;
    depth.set(n, d);
    return d;
  };
  p.steps.forEach((s) => visit(s.name));
  const cols = [];
  for (const s of p.steps) (cols[depth.get(s.name)] = cols[depth.get(s.name)] || []).push(s.name);
  // Each node sits at the mean height of its predecessors; a column's
  // nodes are then pushed apart, in that order, so edges do not cross the
  // examples' boxes.
  const row = new Map();
  cols.forEach((col, ci) => {
    const want = (n) => (ci === 0 ? col.indexOf(n) : preds.get(n).reduce((a, x) => a + row.get(x), 0) / preds.get(n).length);
    const order = col.map((n, i) => [n, want(n), i]).sort((a, b) => a[1] - b[1] || a[2] - b[2]);
    let next = -Infinity;
    for (const [n, y] of order) {
      const at = Math.max(y, next);
      row.set(n, at);
      next = at + 1;
    }
  });
  const minRow = Math.min(...row.values());
  for (const [n, y] of row) row.set(n, y - minRow);
  const maxRows = Math.max(...row.values()) + 1;
  const W = 172, H = 62, GX = 80, GY = 34;
  const width = cols.length * (W + GX) - GX + 40, height = maxRows * (H + GY) - GY + 40;
  const pos = (n) => ({ x: 20 + depth.get(n) * (W + GX), y: 20 + row.get(n) * (H + GY) });
  const svg = h("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": "graph of " + p.name },
    h("defs", {}, h("marker", { id: "arrow-" + p.name, viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto" },
      h("path", { d: "M0,0 L10,5 L0,10 z", fill: "#8c959f" }))));
  const fanout = new Map();
  for (const e of p.edges) if (!e.label) fanout.set(e.from, (fanout.get(e.from) || 0) + 1);
  for (const e of p.edges) {
    const a = pos(e.from), b = pos(e.to);
    // An edge that skips columns runs straight at its source's height to
    // the last gap, then curves in, so it does not cut through the boxes
    // of the columns in between.
    const x0 = a.x + W, y1 = a.y + H / 2, x2 = b.x - 2, y2 = b.y + H / 2;
    const x1 = depth.get(e.to) - depth.get(e.from) > 1 ? b.x - GX : x0, mx = (x1 + x2) / 2;
    svg.append(h("path", { class: "edge", d: `M${x0},${y1} L${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}`, "marker-end": `url(#arrow-${p.name})`, "data-edge": e.from + ">" + e.to }));
    const label = e.label || (fanout.get(e.from) > 1 ? "fan-out" : "");
    const lx = (x0 + b.x - GX / 2) / 2 > x0 + GX / 2 ? x0 + GX / 2 : mx;
    if (label) svg.append(h("text", { class: "edge-label", x: lx, y: (x1 === x0 ? (y1 + y2) / 2 : y1) - 4, "text-anchor": "middle" }, label));
  }
  const nodes = new Map();
  for (const s of p.steps) {
    const { x, y } = pos(s.name);
    const kind = s.join ? "join" : s.routes ? "switch" : s.mapped_by ? "mapped" : s.pipeline ? "sub" : s.name === p.on_failure ? "onfailure" : "";
    // A step that runs a map's items is drawn as a stack of cards with a
    // count: how many of one task's items may run at once.
    const stack = s.mapped_by ? [8, 4].map((d) => h("rect", { class: "stack", x: x + d, y: y - d, width: W, height: H, rx: 6 })) : [];
    const count = s.mapped_by ? h("text", { class: "count", x: x + W - 6, y: y + 18, "text-anchor": "end", "data-role": "items" },
      "×" + (s.max_parallel ? s.max_parallel + " at once" : "n")) : null;
    const tag = s.join ? " · join" + (s.join_policy && s.join_policy !== "all" ? " " + s.join_policy : "") : s.routes ? " · switch" : s.map ? " · map " + s.map :
      s.name === p.on_failure ? " · on_failure" : "";
    // A sub-pipeline step names its pipeline and scrolls to its card.
    const what = s.pipeline ? " → " + s.pipeline : " " + s.handler + tag;
    const load = h("text", { class: "load", x: x + 8, y: y + 38 }, "");
    const fail = h("text", { class: "load fail", x: x + 8, y: y + 53 }, "");
    const failTip = h("title", {}, FAIL_TIP);
    // A badge on the node's top edge while its circuit breaker is open or
    // half open (GET /v1/pipelines/{name}: steps[].breaker.state).
    const badgeText = h("text", { x: x + W - 44, y: y + 3, "text-anchor": "middle" }, "");
    const badgeTip = h("title", {}, "");
    const badge = h("g", { class: "breaker", "data-role": "breaker", display: "none" },
      h("rect", { x: x + W - 88, y: y - 8, width: 84, height: 15, rx: 7 }), badgeText, badgeTip);
    const g = h("g", { class: "node " + kind, "data-step": s.name },
      s.join ? h("rect", { class: "outer", x: x - 4, y: y - 4, width: W + 8, height: H + 8, rx: 9 }) : null,
      ...stack,
      h("rect", { x, y, width: W, height: H, rx: 6 }),
      h("text", { class: "name", x: x + 8, y: y + 18 }, s.name, h("tspan", { class: "muted" }, what)),
      count, load, h("g", { "data-role": "counts" }, failTip, fail), badge);
    if (s.pipeline) g.addEventListener("click", () => document.querySelector(`section.card[data-pipeline="${CSS.escape(s.pipeline)}"]`)?.scrollIntoView());
    svg.append(g);
    nodes.set(s.name, { g, load, fail, badge, badgeText, badgeTip });
  }
  container.replaceChildren(svg);
  return { nodes, last: new Map(), at: Date.now() };
}

// What a step's counters count: handler runs (attempts), not tasks, over
// the live satellites since each started.
const FAIL_TIP = "done: attempts that succeeded; failed attempts: attempts that failed (each retry of a task counts, and so does its final failure) — handler runs, not tasks, summed over the live satellites since each started";

function updateLoad(drawn, p) {
  const now = Date.now();
  for (const s of p.steps) {
    const n = drawn.nodes.get(s.name), l = s.load || {};
    if (!n) continue;
    const prev = drawn.last.get(s.name);
    const rate = prev !== undefined ? Math.max(0, (l.processed - prev) * 1000 / Math.max(1, now - drawn.at)) : 0;
    drawn.last.set(s.name, l.processed);
    n.load.textContent = `backlog ${l.backlog} · busy ${l.busy}/${l.concurrency} · ${rate.toFixed(1)}/s`;
    n.fail.textContent = `done ${l.processed} · failed attempts ${l.failed}`;
    n.g.classList.toggle("busy", l.busy > 0);
    n.g.classList.toggle("failing", l.failed > 0);
    const br = s.breaker && s.breaker.state;
    if (br) {
      n.badge.removeAttribute("display");
      n.badge.dataset.state = br.state;
      n.badgeText.textContent = br.state === "open" ? "breaker open" : "half open";
      n.badgeTip.textContent = br.state === "open" ? `circuit breaker open until ${fmtTime(br.until)}: no new token is begun` :
        `circuit breaker half open: one probe token runs (its lease ends ${fmtTime(br.until)})`;
    } else {
      n.badge.setAttribute("display", "none");
      n.badge.dataset.state = "closed";
    }
  }
  drawn.at = now;
}

// ---- Flow control ----------------------------------------------------

// drawFlow lists the steps with limits or a circuit breaker (GET
// /v1/pipelines/{name}: steps[].limits with their usage now, and
// steps[].breaker with its state): what each allows, what it uses now,
// the busiest fairness keys and the breaker's state. Nothing for a
// pipeline with neither.
function drawFlow(container, p) {
  const steps = p.steps.filter((s) => s.limits || s.breaker);
  if (!steps.length) {
    container.replaceChildren();
    return;
  }
  const rows = steps.map((s) => {
    const l = s.limits, u = (l && l.usage) || {};
    const set = [], use = [];
    if (l && l.rate) {
      set.push("rate " + l.rate);
      use.push(`rate ${u.rate_used || 0}/${l.rate.split("/")[0]} in the last ${{ s: "second", m: "minute", h: "hour" }[l.rate.split("/")[1]]}`);
    }
    if (l && l.running) {
      set.push("running " + l.running);
      use.push(`running ${u.running || 0}/${l.running}`);
    }
    if (l && l.key) {
      const per = [l.running_per_key ? "running " + l.running_per_key : "", l.rate_per_key ? "rate " + l.rate_per_key : ""].filter(Boolean);
      set.push(`per ${l.key}: ${per.join(", ")}`);
    }
    const keys = (u.keys || []).map((k) => `${k.key === "" ? "(none)" : k.key} ${k.running}` + (l.running_per_key ? "/" + l.running_per_key : ""));
    return h("tr", { "data-step": s.name },
      h("td", {}, s.name),
      h("td", { "data-role": "limits" }, set.join(" · ") || h("span", { class: "muted" }, "none")),
      h("td", { "data-role": "use" }, use.join(" · ")),
      h("td", { "data-role": "keys", title: "the fairness keys with the most tokens running now (at most 10)" }, keys.join(", ")),
      h("td", { "data-role": "breaker-state", "data-state": s.breaker ? (s.breaker.state ? s.breaker.state.state : "closed") : "" }, breakerText(s.breaker)));
  });
  container.replaceChildren(h("table", { class: "flow" },
    h("thead", {}, h("tr", {}, ["step", "limits", "in use now", "busiest keys", "circuit breaker"].map((c) => h("th", {}, c)))),
    h("tbody", {}, rows)));
}

// breakerText: a step's breaker settings and state.
function breakerText(b) {
  if (!b) return "";
  const set = `${b.failures} failures within ${b.within} open it for ${b.open_for}: `;
  const st = b.state;
  if (!st) return set + "closed";
  if (st.state === "half_open") return set + "half open, one probe token runs";
  return set + (new Date(st.until) > new Date() ? "open until " + fmtTime(st.until) : "open, a probe is due");
}

// ---- Task ------------------------------------------------------------

// itemsText: a mapped step's items by state ("items done 997, dead 3").
function itemsText(items) {
  if (!items) return "";
  return " · items " + Object.entries(items).sort().map(([k, n]) => k + " " + n).join(", ");
}

async function viewTask(v, id) {
  const head = h("div", {});
  const steps = h("div", { class: "table-wrap" });
  const result = h("pre", { "data-role": "result" });
  const tbody = h("tbody", {});
  const actions = h("div", { class: "row" });
  v.append(h("section", { class: "card" }, h("h2", {}, "Task ", h("code", {}, id)), head, actions,
    h("h3", {}, "Steps"), steps, h("h3", {}, "Result"), result,
    h("h3", {}, "Timeline ", h("span", { class: "muted" }, "(live)")),
    h("div", { class: "table-wrap" }, h("table", { class: "timeline", "data-role": "timeline" },
      h("thead", {}, h("tr", {}, ["time", "seq", "event", "step", "attempt", "worker", "detail"].map((c) => h("th", {}, c)))), tbody))));
  const refresh = async () => {
    try {
      const st = await api("GET", "/v1/tasks/" + encodeURIComponent(id));
      head.replaceChildren(h("p", {}, "Pipeline ", h("b", {}, st.pipeline + " " + st.version), " · status ", statusEl(st.status),
        " · created " + fmtTime(st.created_at) + " · updated " + fmtTime(st.updated_at),
        st.parent ? [" · child of ", taskLink(st.parent.task, "data-role", "parent"), " (step " + st.parent.step + ")"] : ""),
        st.error ? h("p", { class: "error" }, st.error) : "");
      steps.replaceChildren(h("table", {}, h("thead", {}, h("tr", {}, ["step", "state", "attempts", "worker", "progress", "error"].map((c) => h("th", {}, c)))),
        h("tbody", {}, Object.entries(st.steps || {}).map(([n, s]) => h("tr", { "data-step": n }, h("td", {}, n), h("td", {}, s.state + itemsText(s.items)), h("td", {}, s.attempts), h("td", {}, s.child ? ["child ", taskLink(s.child, "data-role", "child")] : s.worker),
          progressCell(s.progress), h("td", { class: "error" }, s.error))))));
      result.textContent = st.result === null || st.result === undefined ? "—" : JSON.stringify(st.result, null, 2);
      actions.replaceChildren(
        ["pending", "running"].includes(st.status) ? h("button", { class: "danger", "data-action": "cancel", onclick: () => control(id, "cancel", refresh) }, "Cancel") : "",
        st.status === "failed" ? h("button", { class: "primary", "data-action": "retry", onclick: () => control(id, "retry", refresh) }, "Retry") : "");
    } catch (_) { /* banner */ }
  };
  await refresh();
  let q = "";
  if (state.token) q = "?access_token=" + encodeURIComponent(state.token);
  const src = new EventSource("/v1/tasks/" + encodeURIComponent(id) + "/events" + q);
  state.source = src;
  // A final event does not end the timeline by itself: a task retried after
  // it died replays its old DEAD, then goes on. The API ends the stream
  // after the task's current final event; the page stops following then.
  let lastSeq = 0, lastFinal = false;
  const onEvent = (e) => {
    let d = {};
    try { d = JSON.parse(e.data); } catch (_) { return; }
    if (e.type === "reset") {
      // A resume at a finished task's end: its state, nothing more to follow.
      if (["succeeded", "failed", "cancelled"].includes(d.status) && tbody.children.length) { src.close(); refresh(); return; }
      tbody.replaceChildren(); refresh(); return;
    }
    const detail = fmtDetail(d);
    tbody.append(h("tr", { "data-event": d.event, "data-seq": d.seq }, h("td", {}, fmtTime(d.at)), h("td", {}, d.seq), h("td", { class: "ev-" + d.event }, d.event),
      h("td", {}, d.step), h("td", {}, d.attempt || ""), h("td", {}, d.worker), h("td", { class: "detail" }, detail)));
    lastSeq = d.seq;
    lastFinal = FINAL_EVENTS.includes(d.event);
    if (["END", "HAPPY_END", "DEAD", "CANCELLED", "ERROR", "RETRY"].includes(d.event)) refresh();
    if (d.event === "PROGRESS") {
      // Up to 5 a second: the step's bar is updated in place.
      const row = [...steps.querySelectorAll("tr[data-step]")].find((r) => r.dataset.step === d.step);
      const p = { value: d.detail.progress, message: d.detail.message, at: d.at };
      if (row) row.children[4].replaceWith(progressCell(p)); else refresh();
    }
  };
  for (const name of ["INIT", "ACK", "PROGRESS", "END", "ERROR", "TIMEOUT", "RETRY", "SEND", "HAPPY_END", "DEAD", "CANCELLED", "reset"]) src.addEventListener(name, onEvent);
  src.onerror = async () => {
    if (src.readyState === EventSource.CLOSED) { refresh(); return; }
    if (!lastFinal) return; // a dropped connection: EventSource resumes by itself
    // The stream ended after a final event: the task's end, unless it went
    // on since (a retry), which the reconnecting stream then shows.
    try {
      const st = await api("GET", "/v1/tasks/" + encodeURIComponent(id));
      if (st.seq <= lastSeq) src.close();
    } catch (_) { /* banner */ }
    refresh();
  };
}

const FINAL_EVENTS = ["HAPPY_END", "DEAD", "CANCELLED"];

// progressCell shows a step's progress report ({value, message, at}) as a
// bar, its percentage and message; an empty cell for none.
function progressCell(p) {
  if (!p) return h("td", { "data-role": "progress" });
  const pct = Math.round(p.value * 100) + "%";
  return h("td", { "data-role": "progress", title: "reported " + fmtTime(p.at) },
    h("progress", { max: "1", value: String(p.value) }), " " + pct + (p.message ? " " + p.message : ""));
}

// fmtDetail shows an event's detail as JSON, with a RETRY's due time (ms
// since the epoch) as a local time and how long after the event it is.
function fmtDetail(d) {
  if (!d.detail || !Object.keys(d.detail).length) return "";
  const det = { ...d.detail };
  const due = Number(det.due);
  if (d.event === "RETRY" && det.due !== undefined && Number.isFinite(due) && due > 0) {
    const after = d.at ? (due - new Date(d.at).getTime()) / 1000 : NaN;
    det.due = fmtTime(due) + (Number.isFinite(after) ? ` (in ${Math.max(0, after).toFixed(1)} s)` : "");
  }
  return JSON.stringify(det);
}

async function control(id, action, done) {
  try { await api("POST", "/v1/tasks/" + encodeURIComponent(id) + "/" + action, "{}"); } catch (e) { alert(e.message); }
  if (action === "retry") { location.hash = "#/task/" + encodeURIComponent(id) + "?r=" + Date.now(); return; }
  done();
}

// ---- Tasks -----------------------------------------------------------

const STATUSES = ["pending", "scheduled", "running", "succeeded", "failed", "cancelled"];

// toLocalInput and fromLocalInput convert between RFC 3339 and the value
// of an <input type="datetime-local"> (local time, no zone).
function toLocalInput(t) {
  if (!t) return "";
  const d = new Date(t);
  if (isNaN(d)) return "";
  return new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 19);
}
function fromLocalInput(v) { return v ? new Date(v).toISOString() : ""; }

// viewTasks is the task browser: the filters live in the hash
// (#/tasks?pipeline=&status=&since=&until=), pages follow GET /v1/tasks's
// cursor (the cursors of earlier pages are kept for "Previous"), and the
// bulk buttons call the pipeline's retry-failed and cancel until done.
async function viewTasks(v, params) {
  const pipelines = await api("GET", "/v1/pipelines");
  const f = { pipeline: params.get("pipeline") || "", status: params.get("status") || "", since: params.get("since") || "", until: params.get("until") || "" };
  const pipeSel = h("select", { "data-role": "filter-pipeline", "aria-label": "pipeline" }, h("option", { value: "" }, "every pipeline"),
    pipelines.map((p) => h("option", { value: p.name }, p.name)));
  const statusSel = h("select", { "data-role": "filter-status", "aria-label": "status" }, h("option", { value: "" }, "every status"),
    STATUSES.map((s) => h("option", { value: s }, s)));
  const since = h("input", { type: "datetime-local", step: "1", "data-role": "filter-since", "aria-label": "created since" });
  const until = h("input", { type: "datetime-local", step: "1", "data-role": "filter-until", "aria-label": "created until" });
  pipeSel.value = f.pipeline; statusSel.value = f.status; since.value = toLocalInput(f.since); until.value = toLocalInput(f.until);
  const apply = (e) => {
    e.preventDefault();
    const q = new URLSearchParams();
    if (pipeSel.value) q.set("pipeline", pipeSel.value);
    if (statusSel.value) q.set("status", statusSel.value);
    if (since.value) q.set("since", fromLocalInput(since.value));
    if (until.value) q.set("until", fromLocalInput(until.value));
    const next = "#/tasks" + (q.toString() ? "?" + q : "");
    if (location.hash === next) route(); else location.hash = next;
  };
  const msg = h("div", { "data-role": "bulk-result" });
  const body = h("tbody", {});
  const info = h("span", { class: "muted", "data-role": "page-info" });
  const prevBtn = h("button", { type: "button", "data-action": "prev-page" }, "Previous");
  const nextBtn = h("button", { type: "button", "data-action": "next-page" }, "Next");
  const bulk = h("div", { class: "row" });
  if (f.pipeline) {
    if (!f.status || f.status === "failed")
      bulk.append(armed(h("button", { type: "button", class: "primary", "data-action": "retry-failed" }, "Retry failed"),
        "Retry every failed task of " + f.pipeline + (f.since || f.until ? " in this time range" : "") + "? Click again", () => runBulk("retry-failed")));
    if (!f.status || ["pending", "scheduled", "running"].includes(f.status))
      bulk.append(armed(h("button", { type: "button", class: "danger", "data-action": "cancel-all" }, "Cancel " + (f.status || "unfinished")),
        "Cancel every " + (f.status || "pending, scheduled or running") + " task of " + f.pipeline + (f.since || f.until ? " in this time range" : "") + "? Click again", () => runBulk("cancel")));
  } else {
    bulk.append(h("span", { class: "muted" }, "Pick a pipeline for the bulk retry and cancel buttons."));
  }
  bulk.append(msg);
  v.append(h("section", { class: "card", "data-role": "tasks" }, h("h2", {}, "Tasks"),
    h("form", { class: "row", "data-role": "task-filters", onsubmit: apply }, pipeSel, statusSel,
      h("label", {}, "since ", since), h("label", {}, "until ", until), h("button", { type: "submit", class: "primary" }, "Search")),
    bulk,
    h("div", { class: "table-wrap" }, h("table", { "data-role": "task-list" },
      h("thead", {}, h("tr", {}, ["created", "task", "pipeline", "status", "updated", "error"].map((c) => h("th", {}, c)))), body)),
    h("div", { class: "row" }, prevBtn, nextBtn, info)));

  const base = new URLSearchParams();
  for (const k of ["pipeline", "status", "since", "until"]) if (f[k]) base.set(k, f[k]);
  base.set("limit", "50");
  const cursors = [""];
  let page = 0, next = null;
  const load = async () => {
    const q = new URLSearchParams(base);
    if (cursors[page]) q.set("cursor", cursors[page]);
    try {
      const d = await api("GET", "/v1/tasks?" + q);
      next = d.next;
      body.replaceChildren(...(d.items.length ? d.items.map((t) => h("tr", { "data-task": t.id, "data-status": t.status },
        h("td", {}, fmtDateTime(t.created_at)), h("td", {}, h("a", { href: "#/task/" + encodeURIComponent(t.id) }, t.id)),
        h("td", {}, t.pipeline + " " + t.version), h("td", {}, statusEl(t.status)), h("td", {}, fmtDateTime(t.updated_at)),
        h("td", { class: "error" }, t.error || ""))) :
        [h("tr", {}, h("td", { colspan: 6, class: "muted" }, "No task matches."))]));
      prevBtn.disabled = page === 0;
      nextBtn.disabled = !next;
      info.textContent = "page " + (page + 1) + " · " + d.items.length + " tasks, newest first";
      info.dataset.page = String(page + 1);
    } catch (e) { body.replaceChildren(h("tr", {}, h("td", { colspan: 6, class: "error" }, e.message))); }
  };
  prevBtn.onclick = () => { if (page > 0) { page--; load(); } };
  nextBtn.onclick = () => { if (next) { cursors[page + 1] = next; page++; load(); } };

  // runBulk calls the bulk action until its next is null (1,000 tasks a call).
  async function runBulk(action) {
    msg.textContent = "";
    const q = new URLSearchParams();
    for (const k of ["since", "until"]) if (f[k]) q.set(k, f[k]);
    if (action === "cancel" && f.status) q.set("status", f.status);
    let total = 0;
    try {
      for (let i = 0; i < 1000; i++) {
        const r = await api("POST", "/v1/pipelines/" + encodeURIComponent(f.pipeline) + "/" + action + (q.toString() ? "?" + q : ""));
        total += r.count;
        if (!r.next) break;
        q.set("cursor", r.next);
      }
      msg.textContent = (action === "cancel" ? "Cancelled " : "Retried ") + total + " task" + (total === 1 ? "" : "s") + ".";
      msg.className = "muted";
    } catch (e) { msg.textContent = e.message; msg.className = "error"; }
    msg.dataset.count = String(total);
    load();
  }
  await load();
}

// armed makes a button ask before it acts: the first click shows the
// question (data-armed="true"), a second within 5 s runs act.
function armed(btn, question, act) {
  const label = btn.textContent;
  let timer = null;
  btn.dataset.armed = "false";
  btn.onclick = async () => {
    if (btn.dataset.armed !== "true") {
      btn.dataset.armed = "true";
      btn.textContent = question;
      timer = setTimeout(() => { btn.dataset.armed = "false"; btn.textContent = label; }, 5000);
      return;
    }
    clearTimeout(timer);
    btn.dataset.armed = "false";
    btn.textContent = label;
    btn.disabled = true;
    try { await act(); } finally { btn.disabled = false; }
  };
  return btn;
}

// ---- Dead letters ----------------------------------------------------

async function viewDead(v) {
  const list = await api("GET", "/v1/pipelines");
  for (const p of list) {
    const body = h("tbody", {});
    const msg = h("span", { "data-role": "dead-retry-result" });
    // Retry the task of every dead letter of the pipeline (POST …/dead/retry, 1,000 letters a call).
    const all = armed(h("button", { type: "button", class: "primary", "data-action": "retry-all" }, "Retry all"),
      "Retry the tasks of every dead letter of " + p.name + "? Click again", async () => {
        let total = 0, before = "";
        try {
          for (let i = 0; i < 1000; i++) {
            const r = await api("POST", "/v1/pipelines/" + encodeURIComponent(p.name) + "/dead/retry" + (before ? "?before=" + encodeURIComponent(before) : ""));
            total += r.count;
            if (!r.next) break;
            before = r.next;
          }
          msg.textContent = "Retried " + total + " task" + (total === 1 ? "" : "s") + ".";
          msg.className = "muted";
        } catch (e) { msg.textContent = e.message; msg.className = "error"; }
        msg.dataset.count = String(total);
      });
    v.append(h("section", { class: "card", "data-dead": p.name }, h("h2", {}, "Dead letters of " + p.name, " ", all, " ", msg),
      h("div", { class: "table-wrap" }, h("table", {}, h("thead", {}, h("tr", {}, ["time", "task", "step", "attempts", "reason", ""].map((c) => h("th", {}, c)))), body))));
    every(2000, async () => {
      try {
        const d = await api("GET", "/v1/dead?pipeline=" + encodeURIComponent(p.name) + "&limit=50");
        body.replaceChildren(...(d.items.length ? d.items.map((x) => h("tr", { "data-task": x.task },
          h("td", {}, fmtTime(x.at)), h("td", {}, x.task ? h("a", { href: "#/task/" + encodeURIComponent(x.task) }, x.task) : "—"),
          h("td", {}, x.step), h("td", {}, x.attempts), h("td", { class: "error" }, x.reason),
          h("td", {}, x.task ? h("button", { "data-action": "retry", onclick: () => control(x.task, "retry", () => {}) }, "Retry") : ""))) :
          [h("tr", {}, h("td", { colspan: 6, class: "muted" }, "No dead letters."))]));
      } catch (_) { /* banner */ }
    });
  }
}

// ---- Satellites ------------------------------------------------------

async function viewSatellites(v) {
  const body = h("tbody", {});
  v.append(h("section", { class: "card" }, h("h2", {}, "Satellites"), h("div", { class: "table-wrap" },
    h("table", { "data-role": "satellites" }, h("thead", {}, h("tr", {}, ["id", "host", "pid", "step", "concurrency", "busy", "processed", "failed attempts", "last heartbeat"].map((c) => h("th", c === "failed attempts" ? { title: FAIL_TIP } : {}, c)))), body))));
  every(2000, async () => {
    try {
      const sats = await api("GET", "/v1/satellites");
      const rows = [];
      for (const s of sats) {
        for (const [name, l] of Object.entries(s.steps)) {
          rows.push(h("tr", {}, h("td", {}, s.id), h("td", {}, s.host), h("td", {}, s.pid), h("td", {}, name), h("td", {}, l.concurrency),
            h("td", {}, l.busy), h("td", {}, l.processed), h("td", {}, l.failed), h("td", {}, fmtTime(s.last_seen))));
        }
      }
      body.replaceChildren(...(rows.length ? rows : [h("tr", {}, h("td", { colspan: 9, class: "muted" }, "No live satellite."))]));
    } catch (_) { /* banner */ }
  });
}

// ---- Schedules -------------------------------------------------------

function fmtDateTime(t) { return t ? new Date(t).toLocaleString([], { hour12: false }) : "—"; }

// viewSchedules lists the schedules with their next and last run, and a
// button that pauses or resumes each (POST /v1/schedules/{id}/pause|resume).
async function viewSchedules(v) {
  const body = h("tbody", {});
  const msg = h("div", { class: "error", "data-role": "schedule-error" });
  v.append(h("section", { class: "card" }, h("h2", {}, "Schedules"),
    h("p", { class: "muted" }, "Each slot submits one task, whichever process fires it. Create them with dsat schedule set, PUT /v1/schedules/{id} or a pipeline file's schedules: section."),
    msg, h("div", { class: "table-wrap" }, h("table", { "data-role": "schedules" },
      h("thead", {}, h("tr", {}, ["id", "pipeline", "when", "catch-up", "next run", "last run", "last task", ""].map((c) => h("th", {}, c)))), body))));
  const load = async () => {
    try {
      const list = await api("GET", "/v1/schedules");
      body.replaceChildren(...(list.length ? list.map((s) => scheduleRow(s, msg, load)) :
        [h("tr", {}, h("td", { colspan: 8, class: "muted" }, "No schedule."))]));
    } catch (_) { /* banner */ }
  };
  every(2000, load);
}

function scheduleRow(s, msg, reload) {
  const when = s.cron ? `cron ${s.cron} (${s.timezone})` : `every ${s.every}`;
  const action = s.paused ? "resume" : "pause";
  const toggle = async () => {
    msg.textContent = "";
    try { await api("POST", "/v1/schedules/" + encodeURIComponent(s.id) + "/" + action); } catch (e) { msg.textContent = e.message; }
    reload();
  };
  return h("tr", { "data-schedule": s.id, "data-paused": String(s.paused) },
    h("td", {}, s.id), h("td", {}, s.pipeline), h("td", {}, when + (s.jitter ? ` ± ${s.jitter}` : "")), h("td", {}, s.catchup),
    h("td", { "data-role": "next-run" }, s.paused ? h("span", { class: "muted" }, "paused") : fmtDateTime(s.next_run_at)),
    h("td", {}, fmtDateTime(s.last_run_at), s.last_error ? h("div", { class: "error" }, s.last_error) : ""),
    h("td", {}, s.last_task ? h("a", { href: "#/task/" + encodeURIComponent(s.last_task) }, s.last_task) : "—"),
    h("td", {}, h("button", { "data-action": action, class: s.paused ? "primary" : "", onclick: toggle }, s.paused ? "Resume" : "Pause")));
}

// ---- Routing ---------------------------------------------------------

async function route() {
  const v = clearView();
  const hash = location.hash.replace(/^#/, "") || "/";
  try {
    if (hash.startsWith("/task/")) await viewTask(v, decodeURIComponent(hash.slice(6).split("?")[0]));
    else if (hash === "/tasks" || hash.startsWith("/tasks?")) await viewTasks(v, new URLSearchParams(hash.split("?")[1] || ""));
    else if (hash === "/dead") await viewDead(v);
    else if (hash === "/satellites") await viewSatellites(v);
    else if (hash === "/schedules") await viewSchedules(v);
    else await viewPipelines(v);
  } catch (e) {
    v.append(h("p", { class: "error" }, "Could not load this page: " + e.message));
  }
}

document.getElementById("token").value = state.token;
document.getElementById("auth").addEventListener("submit", (e) => {
  e.preventDefault();
  state.token = document.getElementById("token").value.trim();
  sessionStorage.setItem("dsat-token", state.token);
  route();
});
window.addEventListener("hashchange", route);
route();
