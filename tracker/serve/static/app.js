// tracker's pages: the run list (/), one run (/run/NAME), a comparison (/compare?runs=a&runs=b), and a sweep
// (/sweep/NAME, drawn by sweep.js).
// Everything comes from this server's JSON API; live changes arrive as server-sent events from
// /api/events. The choices a reader makes (runs, metrics, sorting, filters, superseded epochs) live
// in the URL's query string, so that any view can be shared by copying its address.
"use strict";

const COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
const SUPERSEDED_COLOR = "#b0b0b0";
const MAX_POINTS = 2000;
// For the browser tests: when each epoch's point was drawn (Date.now(), the clock the database's committed_at uses).
window.trackerAppeared = {};

// -- small helpers ---------------------------------------------------------------------------

// Builds an element; strings become text nodes (never HTML: run names and configs are user data).
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) el.append(c instanceof Node ? c : String(c));
  return el;
}

// Every object the server sends is indexed by user-given names (config keys, metrics, runs): without a prototype,
// so that a name like "constructor", "toString" or "__proto__" is only ever what the data says (`in` and [] see
// own keys alone). Maps built here are Object.create(null) or Map for the same reason.
const bare = (_key, v) => (v && typeof v === "object" && !Array.isArray(v) ? Object.assign(Object.create(null), v) : v);
const parse = (text) => JSON.parse(text, bare);

// A page written by `tracker publish` carries its data (data.js) and routes by the URL's hash: it never fetches.
const PUBLISHED = window.TRACKER_DATA ? parse(window.TRACKER_DATA) : null;
const link = (path) => (PUBLISHED ? "#" + path : path);
const route = () => (PUBLISHED ? new URL(location.hash.slice(1) || "/", "file:///") : location);

function publishedAnswer(path) {
  const url = new URL(path, "file:///");
  const q = url.searchParams;
  const parts = url.pathname.split("/").map(decodeURIComponent);  // "", "api", "runs", NAME, "curves"
  if (url.pathname === "/api/runs") return PUBLISHED.runs;
  if (url.pathname === "/api/sweeps") return [];
  const name = parts[3];
  if (parts.length === 4 && name in PUBLISHED.details) return PUBLISHED.details[name];
  if (parts[4] === "curves" && name in PUBLISHED.curves) {
    const full = PUBLISHED.curves[name];
    const metrics = q.has("metrics") ? listOf(q.getAll("metrics"), (m) => m in full) : Object.keys(full).filter((k) => !["epoch", "resumed_at", "points", "superseded"].includes(k));
    const after = q.has("after") ? Number(q.get("after")) : -Infinity;
    const keep = full.epoch.map((e, i) => (e > after ? i : -1)).filter((i) => i >= 0);
    const answer = { epoch: keep.map((i) => full.epoch[i]), resumed_at: full.resumed_at, points: full.points, superseded: null };
    for (const m of metrics) answer[m] = keep.map((i) => full[m][i]);
    if (q.get("superseded") === "1" && full.superseded) {
      answer.superseded = { epoch: full.superseded.epoch };
      for (const m of metrics) answer.superseded[m] = full.superseded[m];
    }
    return answer;
  }
  throw new Error(`${path} is not in this published page: publish the run with tracker publish to see it.`);
}

async function api(path) {
  if (PUBLISHED) return publishedAnswer(path);
  const response = await fetch(path, { headers: { accept: "application/json" } });
  const body = parse(await response.text());
  if (!response.ok) throw new Error(body.error || `${response.status} ${response.statusText}`);
  return body;
}

const enc = encodeURIComponent;
const family = (m) => (m.startsWith("val_") ? m.slice(4) : m);
// Values as the API sends them: null for NaN, "Infinity"/"-Infinity" for ±inf; a chart draws both as gaps.
const plottable = (v) => (typeof v === "number" ? v : null);
const fmt = (v) => (v === null || v === undefined ? "–" : typeof v === "number" ? Number(v.toPrecision(4)).toString() : String(v));
const when = (iso) => (iso ? new Date(iso).toLocaleString() : "–");
const statusBadge = (s) => h("span", { class: `status ${s}`, "data-status": s }, s);
const params = () => new URLSearchParams(route().search);

// A list in the query string is one name per parameter (?runs=a&runs=b): a comma stays part of a name. A single
// value is a name if known(value) says so, else names between commas (the older form, ?runs=a,b).
function listOf(values, known) {
  if (values.length !== 1 || known(values[0])) return values.filter(Boolean);
  return values[0].split(",").filter(Boolean);
}

// values: {key: text, or a list (one parameter per name), or null to remove it}.
function setParams(values) {
  const p = params();
  for (const [k, v] of Object.entries(values)) {
    p.delete(k);
    if (Array.isArray(v)) for (const x of v) p.append(k, x);
    else if (v !== null && v !== "") p.set(k, v);
  }
  const q = p.toString().replace(/%2C/g, ",");
  const path = route().pathname + (q ? "?" + q : "");
  history.replaceState(null, "", PUBLISHED ? "#" + path : path);
}

// Metric families in the plot's order: loss first, then by name; val_ after its family's training metric.
function families(metrics) {
  const sorted = [...metrics].sort((a, b) => {
    const key = (m) => [family(m) !== "loss" ? 1 : 0, family(m), m.startsWith("val_") ? 1 : 0];
    const [x, y] = [key(a), key(b)];
    for (let i = 0; i < 3; i++) if (x[i] !== y[i]) return x[i] < y[i] ? -1 : 1;
    return 0;
  });
  const out = new Map();
  for (const m of sorted) out.set(family(m), [...(out.get(family(m)) || []), m]);
  return out;
}

function crumbs(...parts) {
  const nav = document.getElementById("crumbs");
  nav.replaceChildren(...parts.flatMap((p, i) => (i ? [" / ", p] : [p])));
}

function showError(e) {
  document.getElementById("main").replaceChildren(h("p", { class: "error", id: "error" }, e.message || String(e)));
}

// -- live updates ------------------------------------------------------------------------------

// Calls onHello when (re)connected, after the server's first poll: re-read everything then, and no
// change is missed. Calls onRuns with the summaries of the runs that changed.
function listen(onHello, onRuns) {
  const badge = document.getElementById("live");
  if (PUBLISHED) {  // a published page: what it shows is what was published
    badge.textContent = "published";
    return;
  }
  const source = new EventSource("/api/events");
  source.addEventListener("hello", () => {
    badge.textContent = "live";
    badge.classList.remove("off");
    onHello();
  });
  source.addEventListener("runs", (e) => onRuns(parse(e.data).runs));
  source.onerror = () => {
    badge.textContent = "reconnecting…";
    badge.classList.add("off");
  };
}

// Runs fn one at a time; a call made while one runs is merged into a single next run.
function serialized(fn) {
  let running = null;
  let again = false;
  const go = async () => {
    if (running) { again = true; return running; }
    running = (async () => {
      try {
        do { again = false; await fn(); } while (again);
      } catch (e) { console.error(e); } finally { running = null; }
    })();
    return running;
  };
  return go;
}

// -- charts ------------------------------------------------------------------------------------

// One uPlot chart. series: [{label, color, dash, width}]; data: [xs, ys...] aligned.
// marks(): {resumes: [{epoch, color, label}], stars: [{x, y, color}]}, read at each draw.
function chart(container, title, series, data, marks) {
  const box = h("div", { class: "chart", "data-family": title });
  container.append(box);
  const width = () => Math.max(300, box.clientWidth - 12);
  const opts = {
    title, width: width(), height: 280,
    // Wide enough for a resume mark past the last epoch drawn (a resumed attempt before its first commit).
    scales: { x: { time: false, range: (u, min, max) => {
      const right = Math.max(max, ...marks().resumes.map((r) => r.epoch));
      return right > min ? [min, right] : [min - 1, right + 1]; // one point alone still gets an axis
    } } },
    axes: [{ label: "epoch" }, { label: title, size: 60 }],
    legend: { live: true },
    series: [{ label: "epoch" }, ...series.map((s) => ({
      label: s.label, stroke: s.color, width: s.width || 1.5, dash: s.dash ? [6, 4] : undefined,
      points: { show: data[0].length < 60, size: 4 }, spanGaps: false,
    }))],
    hooks: { draw: [(u) => drawMarks(u, marks())] },
  };
  const plot = new uPlot(opts, data, box);
  new ResizeObserver(() => plot.setSize({ width: width(), height: 280 })).observe(box);
  return plot;
}

function drawMarks(u, { resumes, stars }) {
  const ctx = u.ctx;
  const dpr = devicePixelRatio || 1;
  const { left, top, width, height } = u.bbox;
  ctx.save();
  ctx.beginPath();
  ctx.rect(left, top, width, height);
  ctx.clip();
  for (const r of resumes) {
    // Between the last epoch kept and the first one the resumed attempt trained, as in tracker.plot.
    const x = u.valToPos(r.epoch - 0.5, "x", true);
    ctx.strokeStyle = r.color;
    ctx.lineWidth = 1.5 * dpr;
    ctx.setLineDash([3 * dpr, 3 * dpr]);
    ctx.beginPath();
    ctx.moveTo(x, top);
    ctx.lineTo(x, top + height);
    ctx.stroke();
    ctx.setLineDash([]);
    ctx.fillStyle = r.color;
    ctx.font = `${11 * dpr}px sans-serif`;
    // One label row per run, so that runs resumed at the same epoch stay readable.
    ctx.fillText(r.label, x + 4 * dpr, top + (12 + 13 * (r.row || 0)) * dpr);
  }
  ctx.restore();
  ctx.save(); // stars are not clipped: a best epoch at the edge stays visible
  for (const s of stars) {
    if (s.y === null) continue;
    const x = u.valToPos(s.x, "x", true);
    const y = u.valToPos(s.y, "y", true);
    ctx.font = `${20 * dpr}px sans-serif`;
    ctx.textAlign = "center";
    ctx.textBaseline = "middle";
    ctx.lineWidth = 2 * dpr;
    ctx.strokeStyle = "#000";
    ctx.strokeText("★", x, y);
    ctx.fillStyle = s.color;
    ctx.fillText("★", x, y);
  }
  ctx.restore();
}

function curveQuery(name, metrics, extra) {
  const q = new URLSearchParams({ max_points: MAX_POINTS, ...extra });
  for (const m of metrics || []) q.append("metrics", m);  // one parameter per name: a comma is part of a name
  return `/api/runs/${enc(name)}/curves?${q}`;
}

// The compare page of these runs: one runs= parameter per name, so that a name with a comma stays one run.
const compareLink = (names) => `/compare?${new URLSearchParams(names.map((n) => ["runs", n]))}`;

// -- run list ----------------------------------------------------------------------------------

const BASE_COLUMNS = [
  { key: "name", label: "run", value: (r) => r.name },
  // Shown only once some run is a sweep's trial.
  { key: "sweep", label: "sweep", sweep: true, value: (r) => r.sweep || "", text: (r) => (r.sweep ? `${r.sweep} #${r.trial}` : "") },
  { key: "status", label: "status", value: (r) => r.status },
  { key: "epochs", label: "epochs", value: (r) => r.epochs_done, text: (r) => `${r.epochs_done} / ${r.target_epochs ?? "?"}` },
  { key: "best", label: "best", value: (r) => plottable(r.best_value), text: (r) => (r.monitor && r.best_epoch !== null ? `${r.monitor} ${fmt(r.best_value)} @ ${r.best_epoch}` : "–") },
  { key: "updated", label: "updated", value: (r) => r.updated_at, text: (r) => when(r.updated_at) },
];

function configText(v) {
  return v === undefined ? "" : typeof v === "object" && v !== null ? JSON.stringify(v) : String(v);
}

// A filter is a substring, or a comparison on numbers: ">0.5", "<=10", "=3".
function matches(filter, value, text) {
  const f = filter.trim();
  if (!f) return true;
  const m = f.match(/^(<=|>=|<|>|=)\s*(-?[\d.eE+-]+)$/);
  if (m && typeof value === "number") {
    const n = Number(m[2]);
    return { "<": value < n, "<=": value <= n, ">": value > n, ">=": value >= n, "=": value === n }[m[1]];
  }
  return text.toLowerCase().includes(f.toLowerCase());
}

async function listPage() {
  crumbs("runs");
  document.title = "runs · tracker";
  let [runs, sweeps] = await Promise.all([api("/api/runs"), api("/api/sweeps")]);
  const main = document.getElementById("main");
  const selected = new Set();

  const render = () => {
    const configKeys = [...new Set(runs.flatMap((r) => Object.keys(r.config || {})))].sort();
    const inSweeps = runs.some((r) => r.sweep);
    const columns = [...BASE_COLUMNS.filter((c) => inSweeps || !c.sweep), ...configKeys.map((k) => ({
      key: `config.${k}`, label: k, config: true,
      value: (r) => (typeof r.config[k] === "number" ? r.config[k] : configText(r.config[k])),
      text: (r) => configText(r.config[k]),
    }))];
    const p = params();
    const sort = p.get("sort") || "";
    const desc = sort.startsWith("-");
    const sortKey = sort.replace(/^-/, "");
    const textOf = (c, r) => (c.text ? c.text(r) : String(c.value(r) ?? ""));
    let rows = runs.filter((r) => columns.every((c) => matches(p.get(`f.${c.key}`) || "", c.value(r), textOf(c, r))));
    const sortCol = columns.find((c) => c.key === sortKey);
    if (sortCol) {
      rows = [...rows].sort((a, b) => {
        const [x, y] = [sortCol.value(a), sortCol.value(b)];
        if (x === y) return 0;
        if (x === null || x === undefined || x === "") return 1; // empty cells last, either way
        if (y === null || y === undefined || y === "") return -1;
        return (x < y ? -1 : 1) * (desc ? -1 : 1);
      });
    }
    const head = h("tr", {}, h("th", {}, ""), columns.map((c) => h("th", {
      class: "sortable" + (c.config ? " config" : ""), "data-key": c.key, title: "sort",
      onclick: () => { setParams({ sort: sortKey === c.key && !desc ? `-${c.key}` : c.key }); render(); },
    }, c.label, sortKey === c.key ? (desc ? " ▼" : " ▲") : "")));
    const filters = h("tr", { class: "filters" }, h("th", {}, ""), columns.map((c) => h("th", {}, h("input", {
      type: "search", placeholder: c.config || c.key === "best" || c.key === "epochs" ? "filter, >0.1" : "filter",
      value: p.get(`f.${c.key}`) || "", "data-filter": c.key,
      onchange: (e) => { setParams({ [`f.${c.key}`]: e.target.value }); render(); },
    }))));
    const body = rows.map((r) => h("tr", { "data-run": r.name },
      h("td", {}, h("input", { type: "checkbox", checked: selected.has(r.name), onchange: (e) => {
        e.target.checked ? selected.add(r.name) : selected.delete(r.name);
        compare.disabled = selected.size < 2;
      } })),
      columns.map((c) => h("td", { class: typeof c.value(r) === "number" ? "num" : "", "data-col": c.key },
        c.key === "name" ? h("a", { href: link(`/run/${enc(r.name)}`) }, r.name)
          : c.key === "sweep" && r.sweep ? h("a", { href: link(`/sweep/${enc(r.sweep)}`) }, textOf(c, r))
            : c.key === "status" ? [statusBadge(r.status), r.behind ? h("span", { class: "muted" }, ` ${r.behind} behind`) : ""] : textOf(c, r)))));
    const compare = h("button", { id: "compare", disabled: selected.size < 2, onclick: () => {
      location.href = link(compareLink([...selected]));
    } }, "Compare selected");
    main.replaceChildren(
      ...(sweeps.length ? [h("h2", {}, "Sweeps"), sweepsTable(sweeps), h("h2", {}, "Runs")] : []),
      h("div", { class: "controls" }, h("span", { class: "muted" }, `${rows.length} of ${runs.length} runs`), compare),
      runs.length ? h("div", { class: "table-wrap" }, h("table", { id: "runs" }, h("thead", {}, head, filters), h("tbody", {}, body)))
        : h("p", { class: "muted" }, "No runs yet. Start one with tracker.track(...)."),
    );
  };

  render();
  const reload = serialized(async () => { [runs, sweeps] = await Promise.all([api("/api/runs"), api("/api/sweeps")]); render(); });
  // A change to a trial's run changes its sweep's counts and best trial.
  const reloadSweeps = serialized(async () => { sweeps = await api("/api/sweeps"); render(); });
  listen(reload, (changed) => {
    const byName = new Map(runs.map((r) => [r.name, r]));
    for (const r of changed) byName.set(r.name, r);
    runs = [...byName.values()];
    render();
    if (changed.some((r) => r.sweep)) reloadSweeps();
  });
}

// -- one run -----------------------------------------------------------------------------------

async function runPage(name) {
  crumbs(h("a", { href: link("/") }, "runs"), name);
  document.title = `${name} · tracker`;
  const main = document.getElementById("main");
  let detail = await api(`/api/runs/${enc(name)}`);
  const chosen = () => {
    const known = (x) => detail.metrics.includes(x);
    return params().has("metrics") ? listOf(params().getAll("metrics"), known).filter(known) : detail.metrics;
  };
  const showSuperseded = () => params().get("superseded") === "1";
  let curve = null;
  let plots = [];

  const header = h("div", {});
  const picker = h("div", { class: "controls", id: "metrics" });
  const chartsBox = h("div", { class: "charts", id: "charts" });
  const tables = h("div", {});
  main.replaceChildren(header, picker, chartsBox, tables);

  const renderHeader = () => {
    const d = detail;
    header.replaceChildren(
      h("h1", {}, d.name, h("span", { id: "status" }, statusBadge(d.status))),
      h("div", { class: "facts" },
        h("span", {}, "epochs ", h("b", { id: "epochs" }, `${d.epochs_done} / ${d.target_epochs ?? "?"}`)),
        h("span", {}, "best ", h("b", { id: "best" }, d.monitor && d.best_epoch !== null ? `${d.monitor} ${fmt(d.best_value)} at epoch ${d.best_epoch} ★` : "–")),
        h("span", {}, "resumed at ", h("b", { id: "resumes", "data-epochs": d.resumed_at.join(",") }, d.resumed_at.length ? d.resumed_at.map((e) => `epoch ${e}`).join(", ") : "never")),
        h("span", {}, "updated ", h("b", {}, when(d.updated_at))),
        d.sweep ? h("span", {}, "trial ", h("b", { id: "trial" }, `#${d.trial} of `, h("a", { href: link(`/sweep/${enc(d.sweep)}`) }, d.sweep))) : null,
        h("span", {}, "config ", h("code", { id: "config" }, JSON.stringify(d.config)))),
    );
  };

  const renderPicker = () => {
    const on = new Set(chosen());
    picker.replaceChildren(
      h("span", { class: "muted" }, "metrics:"),
      ...detail.metrics.map((m) => h("label", {}, h("input", { type: "checkbox", checked: on.has(m), "data-metric": m, onchange: (e) => {
        const next = detail.metrics.filter((x) => (x === m ? e.target.checked : on.has(x)));
        setParams({ metrics: next.length === detail.metrics.length ? null : next });
        loadCurves();
      } }), " ", m)),
      h("label", { title: "epochs replaced by a fallback or a rewind" }, h("input", { type: "checkbox", id: "superseded", checked: showSuperseded(), onchange: (e) => {
        setParams({ superseded: e.target.checked ? "1" : null });
        loadCurves();
      } }), " show superseded epochs"),
    );
  };

  const renderTables = () => {
    const d = detail;
    tables.replaceChildren(
      h("h2", {}, "Attempts"),
      h("div", { class: "table-wrap" }, h("table", { id: "attempts" },
        h("thead", {}, h("tr", {}, ["#", "started", "status", "from epoch", "host", "pid", "command", "error"].map((t) => h("th", {}, t)))),
        h("tbody", {}, d.attempts.map((a, i) => h("tr", {},
          h("td", { class: "num" }, i + 1), h("td", {}, when(a.started_at)), h("td", {}, statusBadge(a.status)),
          h("td", { class: "num" }, a.initial_epoch), h("td", {}, a.host, a.spool && a.spool.waiting ? h("span", { class: "muted" }, ` (spool: ${a.spool.waiting} commits not on the server yet${a.spool.newest ? `, newest ${a.spool.newest}` : ""})`) : ""), h("td", { class: "num" }, a.pid),
          h("td", { class: "cmd" }, a.command, h("br"), h("span", { class: "muted" }, `in ${a.cwd}`)),
          h("td", { class: "cmd" }, a.error || "")))))),
      h("h2", {}, "Kept checkpoints"),
      d.checkpoints.length ? h("table", { id: "checkpoints" },
        h("thead", {}, h("tr", {}, ["epoch", "size", "file"].map((t) => h("th", {}, t)))),
        h("tbody", {}, d.checkpoints.map((c) => h("tr", {},
          h("td", { class: "num" }, c.epoch + (c.batch == null ? "" : `, batch ${c.batch}`) + (c.superseded ? " (superseded)" : "")),
          h("td", { class: "num" }, `${(c.size / 1024).toFixed(1)} KiB`), h("td", { class: "cmd" }, c.path)))))
        : h("p", { class: "muted" }, "none"),
    );
  };

  const marks = (fam) => () => ({
    resumes: detail.resumed_at.map((e) => ({ epoch: e, color: "#444", label: `resumed at ${e}` })),
    stars: detail.monitor && family(detail.monitor) === fam && chosen().includes(detail.monitor) && detail.best_epoch !== null
      ? [{ x: detail.best_epoch, y: plottable(detail.best_value), color: COLORS[0] }] : [],
  });

  const drawCharts = () => {
    plots.forEach((p) => p.destroy());
    chartsBox.replaceChildren();
    plots = [];
    const sup = curve.superseded;
    for (const [fam, names] of families(chosen())) {
      const series = names.map((m) => ({ label: m, color: COLORS[0], dash: m.startsWith("val_") }));
      let data = [curve.epoch, ...names.map((m) => curve[m].map(plottable))];
      if (sup && sup.epoch.length) {
        series.push(...names.map((m) => ({ label: `${m} (superseded)`, color: SUPERSEDED_COLOR, dash: m.startsWith("val_"), width: 1 })));
        data = uPlot.join([data, [sup.epoch, ...names.map((m) => sup[m].map(plottable))]]);
      }
      const plot = chart(chartsBox, fam, series, data, marks(fam));
      plot.names = names;
      plots.push(plot);
    }
    if (!plots.length) chartsBox.append(h("p", { class: "muted" }, detail.metrics.length ? "No metric chosen." : "No epoch committed yet."));
  };

  const drawn = (epochs) => {
    // The next frame shows what setData drew: that is when a point has appeared.
    requestAnimationFrame(() => {
      const t = Date.now();
      for (const e of epochs) if (!(e in window.trackerAppeared)) window.trackerAppeared[e] = t;
    });
  };

  const loadCurves = async () => {
    renderPicker();
    const metrics = chosen();
    curve = metrics.length ? await api(curveQuery(name, metrics, showSuperseded() ? { superseded: 1 } : {})) : { epoch: [], superseded: null };
    drawCharts();
    drawn(curve.epoch);
  };

  // New epochs of the same history are appended; a new resume point or a rewind redraws from scratch.
  const refresh = serialized(async () => {
    const before = detail;
    const last = curve && curve.epoch.length ? curve.epoch[curve.epoch.length - 1] : null;
    const metrics = chosen();
    const appending = last !== null && metrics.length && !showSuperseded();
    // Both at once, to save a round trip; the new epochs are dropped below if the history changed.
    const [next, more] = await Promise.all([
      api(`/api/runs/${enc(name)}`), appending ? api(curveQuery(name, metrics, { after: last })) : null]);
    detail = next;
    renderHeader();
    renderTables();
    const sameHistory = appending && before.resumed_at.join() === detail.resumed_at.join()
      && more.resumed_at.join() === detail.resumed_at.join() && before.metrics.join() === detail.metrics.join()
      && detail.last_epoch >= last;
    if (!sameHistory) { await loadCurves(); return; }
    if (!more.epoch.length) { plots.forEach((p) => p.redraw()); return; }
    curve.epoch.push(...more.epoch);
    for (const m of metrics) curve[m].push(...more[m]);
    for (const p of plots) p.setData([curve.epoch, ...p.names.map((m) => curve[m].map(plottable))]);
    drawn(more.epoch);
  });

  renderHeader();
  renderTables();
  await loadCurves();
  listen(refresh, (changed) => { if (changed.some((r) => r.name === name)) refresh(); });
}

// -- compare -----------------------------------------------------------------------------------

async function comparePage() {
  const asked = params().getAll("runs");
  // A single value with commas: a run of that name (run names may hold commas), else the older list form.
  const runNames = asked.length === 1 && asked[0].includes(",") ? new Set((await api("/api/runs")).map((r) => r.name)) : new Set();
  const names = listOf(asked, (n) => runNames.has(n));
  crumbs(h("a", { href: link("/") }, "runs"), "compare");
  document.title = `compare ${names.join(", ")} · tracker`;
  if (!names.length) throw new Error("No runs to compare: add ?runs=a&runs=b to the address, or pick runs on the run list.");
  const main = document.getElementById("main");
  const details = Object.create(null);
  const curves = Object.create(null);
  let plots = [];
  const color = (n) => COLORS[names.indexOf(n) % COLORS.length];
  const available = () => [...new Set(names.flatMap((n) => details[n].metrics))].sort();
  const chosen = () => {
    const known = (x) => available().includes(x);
    return params().has("metrics") ? listOf(params().getAll("metrics"), known).filter(known) : available();
  };

  const picker = h("div", { class: "controls", id: "metrics" });
  const chartsBox = h("div", { class: "charts", id: "charts" });
  const summary = h("div", {});
  main.replaceChildren(h("h1", {}, `Comparing ${names.length} runs`), summary, picker, chartsBox);

  // Every run's detail first: the metrics to fetch depend on all of them.
  const loadAll = async () => {
    await Promise.all(names.map(async (n) => { details[n] = await api(`/api/runs/${enc(n)}`); }));
    await Promise.all(names.map(async (n) => {
      const metrics = chosen().filter((m) => details[n].metrics.includes(m));
      curves[n] = metrics.length ? await api(curveQuery(n, metrics)) : { epoch: [] };
    }));
  };

  const renderSummary = () => {
    const keys = [...new Set(names.flatMap((n) => Object.keys(details[n].config)))].sort();
    const differing = keys.filter((k) => new Set(names.map((n) => configText(details[n].config[k]) || "(unset)")).size > 1);
    const cell = (n, k) => (k in details[n].config ? configText(details[n].config[k]) : "(unset)");
    summary.replaceChildren(
      h("table", { id: "compare-runs" },
        h("thead", {}, h("tr", {}, h("th", {}, ""), names.map((n) => h("th", {}, h("span", { style: `color:${color(n)}` }, "━ "), h("a", { href: link(`/run/${enc(n)}`) }, n))))),
        h("tbody", {},
          h("tr", {}, h("td", {}, "status"), names.map((n) => h("td", {}, statusBadge(details[n].status)))),
          h("tr", {}, h("td", {}, "epochs"), names.map((n) => h("td", { class: "num", "data-epochs-of": n }, `${details[n].epochs_done} / ${details[n].target_epochs ?? "?"}`))),
          h("tr", {}, h("td", {}, "best"), names.map((n) => h("td", { class: "num" }, details[n].monitor && details[n].best_epoch !== null ? `${details[n].monitor} ${fmt(details[n].best_value)} @ ${details[n].best_epoch}` : "–"))))),
      h("h2", {}, "Config keys that differ"),
      differing.length ? h("table", { id: "config-diff" },
        h("thead", {}, h("tr", {}, h("th", {}, "key"), names.map((n) => h("th", {}, n)))),
        h("tbody", {}, differing.map((k) => h("tr", { "data-key": k }, h("td", {}, k), names.map((n) => h("td", {}, cell(n, k)))))))
        : h("p", { class: "muted", id: "config-diff" }, "The runs have the same config."),
    );
  };

  const renderPicker = () => {
    const on = new Set(chosen());
    picker.replaceChildren(h("span", { class: "muted" }, "metrics:"), ...available().map((m) => h("label", {}, h("input", {
      type: "checkbox", checked: on.has(m), "data-metric": m, onchange: async (e) => {
        const next = available().filter((x) => (x === m ? e.target.checked : on.has(x)));
        setParams({ metrics: next.length === available().length ? null : next });
        await loadAll();
        render();
      },
    }), " ", m)));
  };

  const render = () => {
    renderSummary();
    renderPicker();
    plots.forEach((p) => p.destroy());
    chartsBox.replaceChildren();
    plots = [];
    for (const [fam, metrics] of families(chosen())) {
      const series = [];
      const tables = [];
      for (const n of names) {
        const have = metrics.filter((m) => m in curves[n]);
        if (!have.length || !curves[n].epoch.length) continue;
        series.push(...have.map((m) => ({ label: `${n} ${m}`, color: color(n), dash: m.startsWith("val_") })));
        tables.push([curves[n].epoch, ...have.map((m) => curves[n][m].map(plottable))]);
      }
      if (!tables.length) continue;
      const marks = () => ({
        resumes: names.flatMap((n, row) => details[n].resumed_at.map((e) => ({ epoch: e, color: color(n), label: `${n} resumed`, row }))),
        stars: names.filter((n) => details[n].monitor && family(details[n].monitor) === fam && metrics.includes(details[n].monitor) && details[n].best_epoch !== null)
          .map((n) => ({ x: details[n].best_epoch, y: plottable(details[n].best_value), color: color(n) })),
      });
      plots.push(chart(chartsBox, fam, series, tables.length > 1 ? uPlot.join(tables) : tables[0], marks));
    }
  };

  // A changed run's new epochs are appended, as on the run page; a new resume point or metric reloads it.
  const refreshRun = async (n) => {
    const c = curves[n];
    const last = c.epoch.length ? c.epoch[c.epoch.length - 1] : null;
    const metrics = Object.keys(c).filter((k) => chosen().includes(k));
    const before = details[n];
    details[n] = await api(`/api/runs/${enc(n)}`);
    const same = last !== null && metrics.length && before.resumed_at.join() === details[n].resumed_at.join()
      && before.metrics.join() === details[n].metrics.join() && details[n].last_epoch >= last;
    if (!same) { await loadAll(); return; }
    const more = await api(curveQuery(n, metrics, { after: last }));
    if (more.resumed_at.join() !== details[n].resumed_at.join()) { await loadAll(); return; }
    c.epoch.push(...more.epoch);
    for (const m of metrics) c[m].push(...more[m]);
  };
  const pending = new Set();
  const refresh = serialized(async () => {
    const todo = [...pending];
    pending.clear();
    await Promise.all(todo.map(refreshRun));
    render();
  });

  await loadAll();
  render();
  const reloadAll = serialized(async () => { await loadAll(); render(); });
  listen(reloadAll, (changed) => {
    for (const r of changed) if (names.includes(r.name)) pending.add(r.name);
    if (pending.size) refresh();
  });
}

// -- routing -----------------------------------------------------------------------------------

(async () => {
  try {
    const path = route().pathname;
    if (PUBLISHED) window.addEventListener("hashchange", () => location.reload());
    if (path.startsWith("/run/")) await runPage(decodeURIComponent(path.slice("/run/".length)));
    else if (path.startsWith("/sweep/")) await sweepPage(decodeURIComponent(path.slice("/sweep/".length)));
    else if (path === "/compare") await comparePage();
    else await listPage();
    document.body.dataset.ready = "1";
  } catch (e) {
    showError(e);
    document.body.dataset.ready = "error";
  }
})();
