// polyroute dashboard charts: plain SVG and HTML, no library, no network.
// Three shapes cover the page: a time chart (stacked bars and lines over time buckets),
// horizontal share bars (model mix, feedback quality), and a labelled scatter plot
// (benchmark quality against cost). Every value is written with textContent, never as HTML.
"use strict";

(function () {
  const SVG = "http://www.w3.org/2000/svg";

  function svg(tag, attrs, parent) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (parent) parent.appendChild(node);
    return node;
  }

  function text(parent, x, y, content, attrs) {
    const t = svg("text", Object.assign({ x, y }, attrs || {}), parent);
    t.textContent = content;
    return t;
  }

  function title(parent, content) {
    svg("title", {}, parent).textContent = content;
  }

  // Round tick values covering [lo, hi]: steps of 1, 2 or 5 times a power of ten, and at
  // least minStep (1 for counts, so that no two ticks read the same).
  function niceTicks(lo, hi, count, minStep) {
    if (!(hi > lo)) hi = lo + 1;
    const raw = Math.max((hi - lo) / Math.max(1, count), minStep || 0);
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => raw <= s) || 10 * mag;
    const ticks = [];
    for (let v = Math.floor(lo / step) * step; v <= hi + step * 1e-9; v += step) {
      ticks.push(Math.round(v / step) * step);
    }
    if (ticks[ticks.length - 1] < hi) ticks.push(ticks[ticks.length - 1] + step);
    return ticks;
  }

  function pad2(n) {
    return String(n).padStart(2, "0");
  }

  // Label spacings for time axes, in seconds; the chart takes the first that leaves room.
  const SPACINGS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800,
    21600, 43200, 86400, 172800, 604800];

  function timeLabel(seconds, every, span) {
    const d = new Date(seconds * 1000);
    const hm = pad2(d.getHours()) + ":" + pad2(d.getMinutes());
    const md = d.toLocaleDateString(undefined, { month: "short", day: "numeric" });
    if (every >= 86400) return md;
    if (every < 60) return hm + ":" + pad2(d.getSeconds());
    return span > 86400 && d.getHours() === 0 && d.getMinutes() === 0 ? md : hm;
  }

  function emptyNote(root, width, height, message) {
    text(root, width / 2, height / 2, message, { class: "empty", "text-anchor": "middle" });
  }

  function legend(host, series) {
    const box = document.createElement("div");
    box.className = "legend";
    for (const s of series) {
      const item = document.createElement("span");
      const swatch = document.createElement("i");
      swatch.style.background = s.color;
      if (s.type === "line") swatch.className = "line";
      item.append(swatch, s.name);
      box.appendChild(item);
    }
    host.appendChild(box);
  }

  // series: [{name, color, type: "bar" | "line", values: [number | null per bucket]}]
  function time(host, opts) {
    const { ts, step, series } = opts;
    const fmt = opts.format || ((v) => String(v));
    host.replaceChildren();
    const width = Math.max(240, host.clientWidth || 400);
    const height = opts.height || 170;
    const m = { l: 52, r: 10, t: 8, b: 22 };
    const root = svg("svg", { width, height, class: "chart", role: "img" }, host);
    if (opts.label) root.setAttribute("aria-label", opts.label);
    const n = ts.length;
    const bars = series.filter((s) => s.type === "bar");
    const lines = series.filter((s) => s.type !== "bar");
    let top = 0;
    for (let i = 0; i < n; i++) {
      let stack = 0;
      for (const s of bars) stack += s.values[i] || 0;
      top = Math.max(top, stack);
      for (const s of lines) if (s.values[i] != null) top = Math.max(top, s.values[i]);
    }
    const ticks = niceTicks(0, top || 1, 4, opts.integer ? 1 : 0);
    const ymax = ticks[ticks.length - 1];
    const t0 = ts[0];
    const t1 = ts[n - 1] + step;
    const X = (t) => m.l + ((t - t0) / (t1 - t0)) * (width - m.l - m.r);
    const Y = (v) => height - m.b - (v / ymax) * (height - m.t - m.b);
    const axis = svg("g", { class: "axis" }, root);
    for (const v of ticks) {
      svg("line", { x1: m.l, x2: width - m.r, y1: Y(v), y2: Y(v), class: "grid" }, axis);
      if (top) text(axis, m.l - 6, Y(v) + 4, fmt(v), { "text-anchor": "end" });
    }
    // Labels at round local times (every 10 s, 5 min, 1 h, ...), at least ~70 px apart.
    const span = t1 - t0;
    const perSecond = (width - m.l - m.r) / span;
    const every = SPACINGS.find((s) => s >= step && s * perSecond >= 70) || SPACINGS[SPACINGS.length - 1];
    const tzo = new Date(t0 * 1000).getTimezoneOffset() * 60;
    for (let t = Math.ceil((t0 - tzo) / every) * every + tzo; t <= t1; t += every) {
      const x = X(t);
      if (x < m.l + 12 || x > width - m.r - 12) continue;
      svg("line", { x1: x, x2: x, y1: height - m.b, y2: height - m.b + 4, class: "tick" }, axis);
      text(axis, x, height - 6, timeLabel(t, every, span), { "text-anchor": "middle" });
    }
    if (!top) {
      emptyNote(root, width, height - m.b, opts.empty || "nothing in this window");
    }
    const bw = (X(t0 + step) - X(t0)) * 0.82;
    const barLayer = svg("g", { class: "bars" }, root);
    for (let i = 0; i < n; i++) {
      let base = 0;
      for (const s of bars) {
        const v = s.values[i] || 0;
        if (v > 0) {
          svg("rect", {
            x: X(ts[i]) + bw * 0.09, y: Y(base + v), width: Math.max(1, bw),
            height: Math.max(0.5, Y(base) - Y(base + v)), fill: s.color,
          }, barLayer);
        }
        base += v;
      }
    }
    for (const s of lines) {
      let d = "";
      let pen = false;
      let drawn = 0;
      for (let i = 0; i < n; i++) {
        const v = s.values[i];
        if (v == null) { pen = false; continue; }
        d += (pen ? "L" : "M") + X(ts[i] + step / 2).toFixed(1) + "," + Y(v).toFixed(1);
        pen = true;
        drawn++;
      }
      if (!drawn) continue;
      svg("path", { d, fill: "none", stroke: s.color, "stroke-width": 2, class: "series" }, root);
      if (drawn < 40) {
        for (let i = 0; i < n; i++) {
          if (s.values[i] == null) continue;
          svg("circle", { cx: X(ts[i] + step / 2), cy: Y(s.values[i]), r: 2.5, fill: s.color }, root);
        }
      }
    }
    // One invisible column per bucket carries the hover text with every series' value.
    const hover = svg("g", { class: "hover" }, root);
    for (let i = 0; i < n; i++) {
      const col = svg("rect", {
        x: X(ts[i]), y: m.t, width: X(t0 + step) - X(t0), height: height - m.t - m.b,
      }, hover);
      const when = new Date(ts[i] * 1000).toLocaleString();
      const rows = series.map((s) => s.name + ": " + (s.values[i] == null ? "–" : fmt(s.values[i])));
      title(col, [when].concat(rows).join("\n"));
    }
    if (series.length > 1 || opts.legend) legend(host, series);
  }

  // rows: [{label, total, note, parts: [{name, value, color}]}]; each bar fills the width.
  function shares(host, rows, opts) {
    host.replaceChildren();
    const fmt = (opts && opts.format) || ((v, total) => Math.round((100 * v) / total) + "%");
    if (!rows.length) {
      const p = document.createElement("p");
      p.className = "empty";
      p.textContent = (opts && opts.empty) || "nothing in this window";
      host.appendChild(p);
      return;
    }
    for (const row of rows) {
      const line = document.createElement("div");
      line.className = "share";
      const label = document.createElement("span");
      label.className = "share-label";
      label.textContent = row.label;
      label.title = row.label;
      const bar = document.createElement("span");
      bar.className = "share-bar";
      for (const part of row.parts) {
        if (!(part.value > 0)) continue;
        const seg = document.createElement("span");
        seg.className = "seg";
        const pct = (100 * part.value) / row.total;
        seg.style.width = pct + "%";
        seg.style.background = part.color;
        seg.title = part.name + ": " + part.value + " (" + pct.toFixed(1) + "%)";
        if (pct >= 12) seg.textContent = fmt(part.value, row.total);
        bar.appendChild(seg);
      }
      const total = document.createElement("span");
      total.className = "share-total";
      total.textContent = row.note != null ? row.note : String(row.total);
      line.append(label, bar, total);
      host.appendChild(line);
    }
  }

  // points: [{x, y, label, color}]; opts: {xLabel, yLabel, xFormat, yFormat, hline: {y, label}}
  function scatter(host, points, opts) {
    host.replaceChildren();
    const width = Math.max(260, host.clientWidth || 420);
    const height = opts.height || 260;
    const m = { l: 48, r: 16, t: 12, b: 40 };
    const root = svg("svg", { width, height, class: "chart scatter", role: "img" }, host);
    if (!points.length) {
      emptyNote(root, width, height, "no model has a cost or a latency to plot");
      return;
    }
    const xs = points.map((p) => p.x);
    const positive = xs.every((x) => x > 0);
    const log = positive && Math.max(...xs) / Math.min(...xs) > 20;
    const fx = log ? Math.log10 : (v) => v;
    let lo = Math.min(...xs.map(fx));
    let hi = Math.max(...xs.map(fx));
    const padX = (hi - lo || Math.abs(hi) || 1) * 0.12;
    lo = log ? lo - padX : Math.max(0, lo - padX);
    hi += padX;
    const X = (v) => m.l + ((fx(v) - lo) / (hi - lo)) * (width - m.l - m.r);
    const Y = (v) => height - m.b - v * (height - m.t - m.b);
    const axis = svg("g", { class: "axis" }, root);
    for (const v of [0, 0.25, 0.5, 0.75, 1]) {  // quality is a share: fixed quarters
      svg("line", { x1: m.l, x2: width - m.r, y1: Y(v), y2: Y(v), class: "grid" }, axis);
      text(axis, m.l - 6, Y(v) + 4, opts.yFormat(v), { "text-anchor": "end" });
    }
    const xticks = log
      ? niceTicks(Math.floor(lo), Math.ceil(hi), 4).map((e) => Math.pow(10, e))
      : niceTicks(lo, hi, 4);
    for (const v of xticks) {
      const x = X(v);
      if (x < m.l - 1 || x > width - m.r + 1) continue;
      text(axis, x, height - m.b + 16, opts.xFormat(v), { "text-anchor": "middle" });
    }
    text(axis, (m.l + width - m.r) / 2, height - 6, opts.xLabel, { "text-anchor": "middle", class: "axis-title" });
    if (opts.hline) {
      const y = Y(opts.hline.y);
      svg("line", { x1: m.l, x2: width - m.r, y1: y, y2: y, class: "oracle" }, root);
      text(root, width - m.r - 4, y - 5, opts.hline.label, { "text-anchor": "end", class: "oracle-label" });
    }
    // The Pareto front: the models no other beats on both cost and quality.
    const front = [];
    for (const p of points.slice().sort((a, b) => a.x - b.x || b.y - a.y)) {
      if (!front.length || p.y > front[front.length - 1].y) front.push(p);
    }
    if (front.length > 1) {
      const d = front.map((p, i) => (i ? "L" : "M") + X(p.x).toFixed(1) + "," + Y(p.y).toFixed(1)).join("");
      svg("path", { d, class: "front" }, root);
    }
    const right = Math.max(...xs);
    for (const p of points) {
      const dot = svg("circle", { cx: X(p.x), cy: Y(p.y), r: 6, fill: p.color, class: "point" }, root);
      title(dot, p.label + "\n" + opts.yFormat(p.y) + " at " + opts.xFormat(p.x));
      const atRight = p.x === right && points.length > 1;
      text(root, X(p.x) + (atRight ? -10 : 10), Y(p.y) + (p.y > 0.9 ? 16 : -8), p.label, {
        "text-anchor": atRight ? "end" : "start", class: "point-label",
      });
    }
  }

  window.Charts = { time, shares, scatter, niceTicks };
})();
