// polyroute dashboard: fetches /ui/api/* and draws the page. Plain JS, no build step.
// Data from the store (prompts, answers, model names) is only ever set as text.
"use strict";

// Models get these in name order; red is left out, it means errors on this page.
const PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#76b7b2", "#edc948",
  "#9c755f", "#ff9da7", "#86bcb6", "#8cd17d", "#d37295", "#bab0ac"];
const colors = new Map();
const state = { offset: 0, limit: 25, timer: null, busy: false };

function $(sel) { return document.querySelector(sel); }

// h("td", {class: "num"}, "text", childNode, ...): an element; strings become text nodes.
function h(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k === "style") node.style.cssText = v;
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c == null) continue;
    node.append(c instanceof Node ? c : String(c));
  }
  return node;
}

function colorFor(name) {
  if (!colors.has(name)) colors.set(name, PALETTE[colors.size % PALETTE.length]);
  return colors.get(name);
}

const fmt = {
  int: (v) => (v == null ? "–" : Math.round(v).toLocaleString()),
  pct(v) {
    if (v == null) return "–";
    const p = 100 * v;
    return (Math.abs(p - Math.round(p)) < 0.05 ? Math.round(p) : p.toFixed(1)) + "%";
  },
  ms(v) {
    if (v == null) return "–";
    if (v >= 1000) return (v / 1000).toFixed(v >= 10000 ? 1 : 2) + " s";
    return (v > 0 && v < 10 ? v.toFixed(1) : Math.round(v)) + " ms";
  },
  usd(v) {
    if (v == null) return "–";
    if (v === 0) return "$0";
    const a = Math.abs(v);
    if (a >= 100) return "$" + v.toFixed(0);
    if (a >= 1) return "$" + v.toFixed(2);
    // Two significant digits; 0.99998 rounds to "1.0", shown as "$1" (not "$1.").
    return "$" + v.toPrecision(2).replace(/\.?0+$/, "");
  },
  time(iso) {
    const d = new Date(iso);
    const clock = d.toLocaleTimeString(undefined, { hourCycle: "h23" });
    if (new Date().toDateString() === d.toDateString()) return clock;
    return d.toLocaleDateString(undefined, { month: "short", day: "numeric" }) + " " + clock;
  },
  seconds: (v) => (v == null ? "–" : v.toFixed(2) + " s"),
};

async function api(path, params) {
  const url = new URL("/ui/api/" + path, location.origin);
  for (const [k, v] of Object.entries(params || {})) if (v != null && v !== "") url.searchParams.set(k, v);
  const res = await fetch(url);
  const body = await res.json();
  if (!res.ok) {
    const err = new Error((body.error && body.error.message) || "HTTP " + res.status);
    err.status = res.status;
    throw err;
  }
  return body;
}

// A key with the dashboard permission but not the admin's sees its own traces only: the
// totals over everyone's traffic answer 403, and their panels stay empty.
function allowed(promise) {
  return promise.catch((err) => (err.status === 403 ? null : Promise.reject(err)));
}

function windowParams() {
  const until = new Date();
  const since = new Date(until.getTime() - Number($("#range").value) * 1000);
  return { since: since.toISOString(), until: until.toISOString() };
}

function showError(err) {
  const box = $("#error");
  box.hidden = !err;
  box.textContent = err ? "Could not load: " + err.message : "";
}

// ---- totals ---------------------------------------------------------------------------

function card(label, value, note) {
  return h("div", { class: "card" }, h("div", { class: "label" }, label),
    h("div", { class: "value" }, value), note ? h("div", { class: "note" }, note) : null);
}

function renderCards(s) {
  const rate = s.requests ? s.errors / s.requests : 0;
  $("#cards").replaceChildren(
    card("requests", fmt.int(s.requests), s.models.length + " models, " + s.routers.length + " routers"),
    card("errors", fmt.int(s.errors), s.requests ? fmt.pct(rate) + " of requests" : null),
    card("cost", fmt.usd(s.cost_usd), s.unknown_cost ? "+ " + s.unknown_cost + " with unknown price" : "all prices known"),
    card("tokens", fmt.int(s.input_tokens + s.output_tokens), fmt.int(s.input_tokens) + " in · " + fmt.int(s.output_tokens) + " out"),
    card("mean latency", fmt.ms(s.latency_ms_avg), "TTFT " + fmt.ms(s.ttft_ms_avg)),
    card("feedback", fmt.int(s.feedback.count), s.feedback.count ? "mean score " + fmt.pct(s.feedback.mean_score) : "none yet"),
  );
}

// ---- charts over time -----------------------------------------------------------------

function renderTimeseries(ts) {
  const p = ts.points;
  const t = p.map((x) => x.t);
  Charts.time($("#chart-requests"), {
    ts: t, step: ts.bucket_s, format: fmt.int, integer: true, empty: "no requests in this window", label: "requests over time",
    series: [
      { name: "ok", color: "#4e79a7", type: "bar", values: p.map((x) => x.requests - x.errors) },
      { name: "errors", color: "#e15759", type: "bar", values: p.map((x) => x.errors) },
    ],
  });
  Charts.time($("#chart-cost"), {
    ts: t, step: ts.bucket_s, format: fmt.usd, empty: "no known cost in this window", label: "cost over time",
    series: [{ name: "USD", color: "#59a14f", type: "bar", values: p.map((x) => x.cost_usd) }],
  });
  Charts.time($("#chart-latency"), {
    ts: t, step: ts.bucket_s, format: fmt.ms, empty: "no answers in this window", label: "latency over time",
    series: [
      { name: "mean", color: "#4e79a7", type: "line", values: p.map((x) => x.latency_ms_avg) },
      { name: "max", color: "#bab0ac", type: "line", values: p.map((x) => x.latency_ms_max) },
      { name: "TTFT", color: "#f28e2b", type: "line", values: p.map((x) => x.ttft_ms_avg) },
    ],
  });
}

// ---- model mix and learning -----------------------------------------------------------

function renderMix(mix) {
  Charts.shares($("#mix"), mix.routers.map((r) => ({
    label: r.router, total: r.total,
    parts: Object.entries(r.models).map(([name, value]) => ({ name, value, color: colorFor(name) })),
  })), { empty: "no requests in this window" });
  const pick = $("#mix-router");
  const chosen = pick.value;
  pick.replaceChildren(...mix.routers.map((r) => h("option", { value: r.router }, r.router)));
  if (mix.routers.some((r) => r.router === chosen)) pick.value = chosen;
  const router = mix.routers.find((r) => r.router === pick.value);
  const box = $("#chart-mix");
  $("#mix-over-time").hidden = !router;
  if (!router) { box.replaceChildren(); return; }
  const models = Object.keys(router.models);
  Charts.time(box, {
    ts: router.series.map((x) => x.t), step: mix.bucket_s, format: fmt.int, integer: true, legend: true,
    label: "model mix of " + router.router + " over time",
    series: models.map((m) => ({
      name: m, color: colorFor(m), type: "bar", values: router.series.map((x) => x.models[m] || 0),
    })),
  });
}

function renderQuality(fb) {
  Charts.shares($("#quality"), fb.models.map((m) => ({
    label: m.model, total: 1, note: "n=" + m.count,
    parts: [{ name: "mean score", value: m.mean_score, color: colorFor(m.model) }],
  })), { format: (v) => fmt.pct(v), empty: "no feedback in this window: POST /v1/feedback" });
}

function renderLearning(data) {
  const box = $("#learning");
  if (!data.routers.length) {
    box.replaceChildren(h("p", { class: "empty" }, "no learning router has saved its state yet"));
    return;
  }
  const rows = [];
  for (const r of data.routers) {
    const arms = r.arms.length ? r.arms : [{ model: "–", n: null }];
    arms.forEach((a, i) => rows.push(h("tr", {},
      i === 0 ? h("td", { rowspan: arms.length }, h("b", {}, r.router), h("div", { class: "muted" }, r.kind)) : null,
      h("td", {}, a.model !== "–" ? h("span", { class: "swatch", style: "background:" + colorFor(a.model) }) : null, a.model),
      h("td", { class: "num" }, a.n == null ? "–" : fmt.int(a.n)),
      h("td", { class: "num" }, a.mean == null ? "–" : fmt.pct(a.mean)),
      i === 0 ? h("td", { rowspan: arms.length, class: "muted" }, fmt.time(r.updated_at)) : null,
    )));
  }
  box.replaceChildren(h("table", { class: "table" },
    h("thead", {}, h("tr", {}, h("th", {}, "router"), h("th", {}, "model"), h("th", { class: "num" }, "observations"),
      h("th", { class: "num" }, "mean reward"), h("th", {}, "saved"))),
    h("tbody", {}, rows)));
}

// ---- leaderboard ----------------------------------------------------------------------

function renderLeaderboard(data) {
  const box = $("#leaderboard");
  if (!data.boards.length) {
    box.replaceChildren(h("p", { class: "empty" },
      "No results file configured: run `polyroute bench --out results.jsonl`, then set dashboard: {bench_results: [results.jsonl]}."));
    return;
  }
  box.replaceChildren(...data.boards.map((b) => {
    if (b.error) return h("p", { class: "error inline" }, b.error);
    const paid = b.models.some((m) => m.usd_per_prompt);
    const rows = b.models.map((m) => h("tr", {},
      h("td", {}, h("span", { class: "swatch", style: "background:" + colorFor(m.model) }), m.model),
      h("td", { class: "num" }, h("span", { class: "minibar", style: "width:" + Math.round(60 * m.quality) + "px" }), fmt.pct(m.quality)),
      h("td", { class: "num" }, m.answers + (m.errors ? " (" + m.errors + " refused)" : "")),
      h("td", { class: "num" }, m.usd_per_prompt == null ? "unknown" : fmt.usd(m.usd_per_prompt)),
      h("td", { class: "num" }, fmt.seconds(m.latency_s)),
      h("td", { class: "num" }, fmt.seconds(m.ttft_s)),
      h("td", { class: "num" }, m.output_tokens == null ? "–" : Math.round(m.output_tokens)),
    ));
    rows.push(h("tr", {}, h("td", {}, h("i", {}, "oracle router")), h("td", { class: "num" }, h("i", {}, fmt.pct(b.oracle))),
      h("td", { colspan: 5, class: "muted" }, "the best answer of any model, prompt by prompt")));
    const table = h("table", { class: "table" },
      h("thead", {}, h("tr", {}, ["model", "quality", "answers", "USD / prompt", "latency", "TTFT", "out tokens"]
        .map((c, i) => h("th", { class: i ? "num" : null }, c)))),
      h("tbody", {}, rows));
    const plot = h("div", { class: "chart-box leader-plot" });
    const file = b.path.split("/").pop();
    const wrap = h("div", {}, h("h3", { title: b.path }, file + " · " + b.prompts + " prompts"), h("div", { class: "leader" }, table, plot));
    requestAnimationFrame(() => Charts.scatter(plot, b.models
      .map((m) => ({ x: paid ? m.usd_per_prompt : m.latency_s, y: m.quality, label: m.model, color: colorFor(m.model) }))
      .filter((p) => p.x != null), {
      xLabel: paid ? "USD per prompt" : "mean latency per prompt (no model costs money)",
      xFormat: paid ? fmt.usd : (v) => v.toFixed(1) + " s", yFormat: fmt.pct,
      hline: { y: b.oracle, label: "oracle " + fmt.pct(b.oracle) },
    }));
    return wrap;
  }));
}

// ---- traces ---------------------------------------------------------------------------

function statusBadge(status) {
  return h("span", { class: status >= 400 ? "status bad" : "status" }, status);
}

function modelCell(name) {
  return name ? [h("span", { class: "swatch", style: "background:" + colorFor(name) }), name] : "–";
}

function tokens(a, b) {
  return (a == null ? "–" : a) + " / " + (b == null ? "–" : b);
}

function cost(row) {
  return row.cost_status === "unknown" ? "unknown" : fmt.usd(row.cost_usd);
}

function fillSelect(select, values) {
  const chosen = select.value;
  select.replaceChildren(h("option", { value: "" }, "any"), ...values.map((v) => h("option", { value: v }, v)));
  if (chosen && !values.includes(chosen)) select.append(h("option", { value: chosen }, chosen));
  select.value = chosen;
}

async function loadTraces() {
  const f = new FormData($("#filters"));
  const data = await api("traces", Object.assign(windowParams(), Object.fromEntries(f.entries()),
    { limit: state.limit, offset: state.offset }));
  const body = $("#traces tbody");
  if (!data.traces.length) {
    body.replaceChildren(h("tr", {}, h("td", { colspan: 10, class: "muted" }, "no traces match")));
  } else {
    body.replaceChildren(...data.traces.map((t) => {
      const tr = h("tr", { class: "clickable", "data-id": t.id, title: t.error || "open trace " + t.id },
        h("td", {}, fmt.time(t.created_at)), h("td", {}, t.router), h("td", {}, t.requested_model),
        h("td", {}, modelCell(t.model)), h("td", {}, statusBadge(t.status)),
        h("td", { class: "num" }, tokens(t.input_tokens, t.output_tokens)),
        h("td", { class: "num" }, fmt.ms(t.latency_ms)), h("td", { class: "num" }, fmt.ms(t.ttft_ms)),
        h("td", { class: "num" }, cost(t)),
        h("td", { class: "num" }, t.feedback.count ? fmt.pct(t.feedback.mean_score) + " (" + t.feedback.count + ")" : "–"));
      tr.addEventListener("click", () => openTrace(t.id).catch(showError));
      return tr;
    }));
  }
  $("#prev").disabled = state.offset === 0;
  $("#next").disabled = !data.has_more;
  $("#page").textContent = data.traces.length
    ? (state.offset + 1) + "–" + (state.offset + data.traces.length) : "";
}

function facts(pairs) {
  return h("div", { class: "facts" }, pairs.map(([k, v]) => h("div", {}, h("span", { class: "k" }, k), v == null ? "–" : v)));
}

function decisionView(d, chosen) {
  if (!d) return h("p", { class: "muted" }, "No routing decision: the client named the model.");
  if (typeof d !== "object") return h("pre", {}, String(d));
  const scores = d.scores || {};
  const costs = d.costs || {};
  const fallbacks = d.fallbacks || [];
  const names = Array.from(new Set([...Object.keys(scores), ...Object.keys(costs), ...fallbacks]));
  names.sort((a, b) => (scores[b] ?? -Infinity) - (scores[a] ?? -Infinity));
  const top = Math.max(1e-9, ...names.map((n) => Math.abs(scores[n] ?? 0)));
  const rows = names.map((n) => h("tr", {},
    h("td", {}, modelCell(n), n === d.model ? h("b", {}, "  ← chosen") : null, n === chosen && n !== d.model ? h("b", {}, "  ← answered") : null),
    h("td", { class: "num" }, scores[n] == null ? "–" : [h("span", { class: "minibar", style: "width:" + Math.round(50 * Math.abs(scores[n]) / top) + "px" }), scores[n].toFixed(4)]),
    h("td", { class: "num" }, costs[n] == null ? "unknown" : fmt.usd(Number(costs[n]))),
    h("td", { class: "num" }, fallbacks.indexOf(n) >= 0 ? fallbacks.indexOf(n) + 1 : "–")));
  return h("div", {},
    h("div", { class: "reason" }, h("b", {}, d.router || "router"), ": ", d.reason || "(no reason given)"),
    names.length ? h("table", { class: "table" },
      h("thead", {}, h("tr", {}, h("th", {}, "candidate"), h("th", { class: "num" }, "score"),
        h("th", { class: "num" }, "predicted cost"), h("th", { class: "num" }, "fallback order"))),
      h("tbody", {}, rows)) : null);
}

function messagesView(body) {
  if (body == null) return [h("p", { class: "muted" }, "Not stored (store.store_text is off).")];
  if (typeof body !== "object" || !Array.isArray(body.messages)) return [h("pre", {}, JSON.stringify(body, null, 2))];
  const out = body.messages.map((m) => h("div", { class: "message" }, h("b", {}, m.role || "?"),
    typeof m.content === "string" ? m.content : JSON.stringify(m.content, null, 2)));
  const rest = Object.fromEntries(Object.entries(body).filter(([k]) => k !== "messages"));
  if (Object.keys(rest).length) out.push(h("pre", { class: "mono" }, JSON.stringify(rest)));
  return out;
}

async function openTrace(id) {
  const t = await api("traces/" + encodeURIComponent(id));
  $("#trace-title").textContent = "Trace " + t.id;
  const attempts = t.attempts.length ? h("table", { class: "table" },
    h("thead", {}, h("tr", {}, ["#", "model", "provider", "status", "tokens in/out", "latency", "TTFT", "cost", "error"]
      .map((c, i) => h("th", { class: i >= 4 && i < 8 ? "num" : null }, c)))),
    h("tbody", {}, t.attempts.map((a) => h("tr", {},
      h("td", {}, a.n + 1), h("td", {}, modelCell(a.model)), h("td", {}, a.provider), h("td", {}, statusBadge(a.status)),
      h("td", { class: "num" }, tokens(a.input_tokens, a.output_tokens)), h("td", { class: "num" }, fmt.ms(a.latency_ms)),
      h("td", { class: "num" }, fmt.ms(a.ttft_ms)), h("td", { class: "num" }, cost(a)),
      h("td", {}, a.rescued ? [h("span", { class: "status rescued", title: "this stream broke after it started and the next attempt continued it" }, "rescued"), " "] : null, a.error || "")))))
    : h("p", { class: "muted" }, "No attempts recorded.");
  const feedback = t.feedback.length ? h("table", { class: "table" },
    h("thead", {}, h("tr", {}, ["time", "score", "given as", "source", "comment"].map((c) => h("th", {}, c)))),
    h("tbody", {}, t.feedback.map((f) => h("tr", {}, h("td", {}, fmt.time(f.created_at)), h("td", {}, fmt.pct(f.score)),
      h("td", {}, f.kind + (f.label ? ": " + f.label : "")), h("td", {}, f.source || "–"), h("td", {}, f.comment || "")))))
    : h("p", { class: "muted" }, "No feedback yet: POST /v1/feedback with this trace id.");
  $("#trace-body").replaceChildren(...[
    facts([["time", fmt.time(t.created_at)], ["status", statusBadge(t.status)], ["asked for", t.requested_model],
      ["answered by", t.model], ["router", t.router || "(direct)"], ["provider", t.provider], ["upstream model", t.upstream_model],
      ["stream", t.stream ? "yes" : "no"], ["tokens in/out", tokens(t.input_tokens, t.output_tokens)],
      ["latency", fmt.ms(t.latency_ms)], ["TTFT", fmt.ms(t.ttft_ms)], ["cost", cost(t)]]),
    t.error ? h("p", { class: "error inline" }, t.error) : null,
    h("h3", {}, "Decision"), decisionView(t.decision, t.model),
    h("h3", {}, "Attempts"), attempts,
    h("h3", {}, "Feedback"), feedback,
    h("h3", {}, "Request"), ...messagesView(t.request_body),
    h("h3", {}, "Answer"), t.response_text != null ? h("pre", { class: "answer" }, t.response_text)
      : h("p", { class: "muted" }, "Not stored."),
  ].filter((node) => node != null));
  const dialog = $("#trace");
  if (!dialog.open) dialog.showModal();
}

// ---- keys ------------------------------------------------------------------------------

function renderKeys(data) {
  const panel = $("#keys-panel");
  panel.hidden = !data || !data.keys.length;
  if (panel.hidden) return;
  const rows = data.keys.map((k) => h("tr", {},
    h("td", {}, k.alias || k.id),
    h("td", {}, k.team || "–"),
    h("td", { class: "num" }, k.budget_usd == null ? "none" : fmt.usd(k.budget_usd) + " / " + k.period),
    h("td", { class: "num" }, fmt.usd(k.spend.spent_usd)),
    h("td", { class: "num" }, k.remaining_usd == null ? "–" : fmt.usd(k.remaining_usd) + (k.alert ? " ⚠" : "")),
    h("td", { class: "num" }, fmt.int(Object.values(k.spend.by_model).reduce((n, m) => n + m.requests, 0))),
    h("td", {}, Object.entries(k.spend.by_model).map(([m, v]) => m + " " + fmt.usd(v.cost_usd)).join(", ") || "–"),
  ));
  const teams = Object.entries(data.teams).map(([t, usd]) => t + " " + fmt.usd(usd)).join(", ");
  $("#keys").replaceChildren(
    h("table", {},
      h("thead", {}, h("tr", {}, ...["key", "team", "budget", "spent", "left", "requests", "by model"].map((c) => h("th", {}, c)))),
      h("tbody", {}, ...rows)),
    h("p", { class: "empty" }, teams ? "Teams: " + teams : ""),
  );
}

// ---- refresh loop ---------------------------------------------------------------------

async function refresh() {
  if (state.busy) return;
  state.busy = true;
  try {
    const w = windowParams();
    const [summary, ts, mix, fb, learning, boards, keys] = await Promise.all([
      api("summary", w), api("timeseries", w), api("model-mix", w), api("feedback", w),
      api("routers"), api("leaderboard"), api("keys"),
    ].map(allowed));
    // A key with the dashboard permission may read its own traces, not everyone's totals
    // (403): its page shows the trace explorer alone.
    for (const el of document.querySelectorAll(".totals")) el.hidden = summary === null;
    if (summary) {
      for (const m of summary.models.slice().sort()) colorFor(m);
      renderCards(summary);
      fillSelect($("#filters [name=model]"), summary.models);
      fillSelect($("#filters [name=router]"), summary.routers);
    }
    if (ts) renderTimeseries(ts);
    if (mix) renderMix(mix);
    if (fb) renderQuality(fb);
    if (learning) renderLearning(learning);
    if (boards) renderLeaderboard(boards);
    renderKeys(keys);
    await loadTraces();
    $("#updated").textContent = "updated " + new Date().toLocaleTimeString(undefined, { hourCycle: "h23" });
    document.body.dataset.loaded = "1";
    showError(null);
  } catch (err) {
    showError(err);
  } finally {
    state.busy = false;
  }
}

function schedule() {
  clearInterval(state.timer);
  if ($("#auto").checked) {
    state.timer = setInterval(() => { if (!document.hidden && !$("#trace").open) refresh(); }, 10000);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  // /ui?window=SECONDS opens on that window (one of the choices offered).
  const asked = new URLSearchParams(location.search).get("window");
  if (asked && Array.from($("#range").options).some((o) => o.value === asked)) $("#range").value = asked;
  $("#range").addEventListener("change", () => { state.offset = 0; refresh(); });
  $("#reload").addEventListener("click", refresh);
  $("#auto").addEventListener("change", schedule);
  $("#mix-router").addEventListener("change", refresh);
  $("#filters").addEventListener("change", () => { state.offset = 0; loadTraces().catch(showError); });
  $("#prev").addEventListener("click", () => { state.offset = Math.max(0, state.offset - state.limit); loadTraces().catch(showError); });
  $("#next").addEventListener("click", () => { state.offset += state.limit; loadTraces().catch(showError); });
  $("#trace-close").addEventListener("click", () => $("#trace").close());
  let resize = null;
  window.addEventListener("resize", () => { clearTimeout(resize); resize = setTimeout(refresh, 250); });
  refresh();
  schedule();
});
