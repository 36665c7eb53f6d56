// tracker's sweep views: the sweep page (/sweep/NAME) and the table of sweeps on the run list.
// Loaded before app.js, whose helpers (h, api, listen, serialized, setParams, ...) these functions call
// once app.js has run. Every param value and name is user data: it goes into text nodes and attributes,
// never into HTML.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const SCATTER = { width: 320, height: 210, left: 52, right: 12, top: 10, bottom: 34 };
// A trial's run is gone from `running` once its status is one of these; the trial row that records its
// outcome is written just after, and the event stream watches runs only: the page reads once more then.
const ENDED = new Set(["completed", "failed", "interrupted", "preempted"]);

function svg(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v !== undefined && v !== null) el.setAttribute(k, v);
  for (const c of children.flat()) if (c !== null && c !== undefined) el.append(c instanceof Node ? c : String(c));
  return el;
}

// A param value as a cell shows it: strings as they are, anything else as JSON.
const paramText = (v) => (v === undefined ? "–" : typeof v === "string" ? v : typeof v === "number" ? fmt(v) : JSON.stringify(v));
const countsText = (counts) => Object.entries(counts).map(([s, n]) => `${n} ${s}`).join(", ") || "no trials";
const valueText = (t) => (t.value === null ? "–" : `${t.source || "value"} ${fmt(t.value)}`);

// -- the table of sweeps, on the run list ---------------------------------------------------------

function sweepsTable(sweeps) {
  return h("div", { class: "table-wrap" }, h("table", { id: "sweeps" },
    h("thead", {}, h("tr", {}, ["sweep", "kind", "trials", "status", "best"].map((t) => h("th", {}, t)))),
    h("tbody", {}, sweeps.map((s) => h("tr", { "data-sweep": s.name },
      h("td", {}, h("a", { href: `/sweep/${enc(s.name)}` }, s.name)),
      h("td", {}, s.description),
      h("td", { class: "num" }, s.total),
      h("td", {}, countsText(s.counts)),
      h("td", {}, s.best ? [h("a", { href: `/run/${enc(s.best.name)}` }, s.best.name), ` ${valueText(s.best)}`] : "–"))))));
}

// -- one parameter against the value: a small SVG scatter -------------------------------------------

// About `count` round ticks between lo and hi.
function ticks(lo, hi, count) {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const step = [1, 2, 5, 10].map((m) => m * 10 ** Math.floor(Math.log10(raw))).find((s) => s >= raw);
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

// A scale from a param's values to [a, b]: linear, log, or evenly spaced categories. Returns {at, ticks: [[v, label]]}.
function scaleFor(param, values, a, b) {
  if (param.axis === "category") {
    const keys = param.categories.map((c) => JSON.stringify(c));
    const step = (b - a) / keys.length;
    return {
      at: (v) => a + step * (keys.indexOf(JSON.stringify(v)) + 0.5),
      ticks: param.categories.map((c) => [c, paramText(c)]),
    };
  }
  const log = param.axis === "log";
  const f = log ? Math.log10 : (x) => x;
  let lo = Math.min(...values.map(f));
  let hi = Math.max(...values.map(f));
  if (lo === hi) { lo -= 1; hi += 1; } // one value alone still gets an axis
  const pad = (hi - lo) * 0.06;
  [lo, hi] = [lo - pad, hi + pad];
  const at = (v) => a + ((f(v) - lo) / (hi - lo)) * (b - a);
  // A grid's few values are the ticks; otherwise round numbers (powers of ten on a log axis).
  const marks = param.values ? param.values
    : log ? ticks(Math.ceil(lo), Math.floor(hi), 4).filter(Number.isInteger).map((e) => 10 ** e) : ticks(lo, hi, 4);
  return { at, ticks: marks.map((v) => [v, fmt(v)]) };
}

function scatter(param, trials, best) {
  const { width, height, left, right, top, bottom } = SCATTER;
  const points = trials.filter((t) => param.name in t.params && typeof t.value === "number"
    && (param.axis === "category" || typeof t.params[param.name] === "number"));
  const box = h("div", { class: "scatter", "data-param": param.name });
  box.append(h("div", { class: "scatter-title" }, param.name, h("span", { class: "muted" }, param.axis === "linear" ? "" : ` (${param.axis})`)));
  if (!points.length) {
    box.append(h("p", { class: "muted" }, "No trial has a value yet."));
    return box;
  }
  const sources = new Set(points.map((t) => t.source)); // the y axis is named by what the values are, when they agree
  const x = scaleFor(param, points.map((t) => t.params[param.name]), left, width - right);
  const y = scaleFor({ axis: "linear" }, points.map((t) => t.value), height - bottom, top);
  const plot = svg("svg", { viewBox: `0 0 ${width} ${height}`, width, height, role: "img", "aria-label": `${param.name} against the value` });
  plot.append(svg("rect", { x: left, y: top, width: width - left - right, height: height - top - bottom, class: "frame" }));
  for (const [v, label] of x.ticks) {
    const px = x.at(v);
    plot.append(svg("line", { x1: px, x2: px, y1: height - bottom, y2: height - bottom + 4, class: "tick" }));
    const text = label.length > 12 ? label.slice(0, 11) + "…" : label;
    plot.append(svg("text", { x: px, y: height - bottom + 16, "text-anchor": "middle", class: "tick-label" }, text, svg("title", {}, label)));
  }
  plot.append(svg("text", { x: 12, y: (top + height - bottom) / 2, "text-anchor": "middle", class: "axis-label",
    transform: `rotate(-90 12 ${(top + height - bottom) / 2})` }, sources.size === 1 ? [...sources][0] : "value"));
  for (const [v, label] of y.ticks) {
    const py = y.at(v);
    plot.append(svg("line", { x1: left - 4, x2: left, y1: py, y2: py, class: "tick" }));
    plot.append(svg("text", { x: left - 6, y: py + 4, "text-anchor": "end", class: "tick-label" }, label));
  }
  for (const t of points) {
    const label = `${t.name}: ${param.name}=${paramText(t.params[param.name])}, ${valueText(t)} (${t.status})`;
    plot.append(svg("a", { href: `/run/${enc(t.name)}` }, svg("circle", {
      cx: x.at(t.params[param.name]), cy: y.at(t.value), r: t.name === best ? 6 : 4,
      class: `point ${t.status}${t.name === best ? " best" : ""}`, "data-trial": t.name,
    }, svg("title", {}, label))));
  }
  box.append(plot);
  return box;
}

// -- the sweep page ---------------------------------------------------------------------------------

function sweepColumns(detail) {
  return [
    { key: "trial", label: "#", value: (t) => t.trial },
    { key: "name", label: "run", value: (t) => t.name,
      cell: (t) => (t.run ? h("a", { href: `/run/${enc(t.name)}` }, t.name) : t.name) },
    ...detail.params.map((p) => ({
      key: `param.${p.name}`, label: p.name, param: true,
      value: (t) => (typeof t.params[p.name] === "number" ? t.params[p.name] : p.name in t.params ? paramText(t.params[p.name]) : null),
      cell: (t) => paramText(t.params[p.name]),
    })),
    { key: "status", label: "status", value: (t) => t.status, cell: (t) => statusBadge(t.status) },
    { key: "epochs", label: "epochs", value: (t) => t.epochs_done, cell: (t) => `${t.epochs_done} / ${t.target_epochs ?? "?"}` },
    { key: "value", label: "value", value: (t) => plottable(t.value), cell: (t) => fmt(t.value) },
    { key: "source", label: "monitor", value: (t) => t.source || "", cell: (t) => t.source || "–" },
    { key: "best_epoch", label: "best epoch", value: (t) => t.best_epoch },
    { key: "error", label: "error", value: (t) => t.error || "", cell: (t) => t.error || "" },
  ];
}

async function sweepPage(name) {
  crumbs(h("a", { href: "/" }, "runs"), `sweep ${name}`);
  document.title = `sweep ${name} · tracker`;
  const main = document.getElementById("main");
  let detail = await api(`/api/sweeps/${enc(name)}`);
  const header = h("div", {});
  const charts = h("div", { class: "scatters", id: "scatters" });
  const table = h("div", { class: "table-wrap" });

  const renderHeader = () => {
    const d = detail;
    const started = d.trials.filter((t) => t.run).map((t) => t.name);
    const searched = d.searches ? d.searches.map(([k, v]) => `${k} ${v}`).join("; ") : d.spec_text;
    header.replaceChildren(
      h("h1", {}, d.name, h("span", { class: "status" }, d.kind)),
      h("div", { class: "facts" },
        h("span", {}, "kind ", h("b", {}, d.description)),
        h("span", {}, "searches ", h("code", { id: "searches" }, searched)),
        h("span", {}, "trials ", h("b", { id: "counts" }, `${d.trials.length}: ${countsText(d.counts)}`)),
        h("span", {}, "best ", h("b", { id: "best" }, d.best
          ? [h("a", { href: `/run/${enc(d.best.name)}` }, d.best.name), ` ${valueText(d.best)}`] : "none yet"))),
      h("div", { class: "controls" }, started.length
        ? h("a", { id: "compare-trials", href: compareLink(started) }, `Compare these trials (${started.length}) ›`)
        : h("span", { class: "muted" }, "No trial has started yet.")),
    );
  };

  const renderCharts = () => {
    const best = detail.best ? detail.best.name : null;
    charts.replaceChildren(...detail.params.map((p) => scatter(p, detail.trials, best)));
    if (!detail.params.length) charts.append(h("p", { class: "muted" }, "This sweep has no parameters."));
  };
  const legend = h("p", { class: "muted" }, "Each point is a trial: blue if completed, grey if running, crashed or failed "
    + "(its best value so far), red for the best trial. Click a point to open its run.");

  const renderTable = () => {
    const columns = sweepColumns(detail);
    const sort = params().get("sort") || "";
    const desc = sort.startsWith("-");
    const sortKey = sort.replace(/^-/, "");
    let rows = detail.trials; // best first, as tracker.sweep returns them, until a header is clicked
    const sortCol = columns.find((c) => c.key === sortKey);
    if (sortCol) {
      rows = [...rows].sort((a, b) => {
        const [x, y] = [sortCol.value(a), sortCol.value(b)];
        if (x === y) return 0;
        if (x === null || x === undefined || x === "") return 1; // empty cells last, either way
        if (y === null || y === undefined || y === "") return -1;
        if (typeof x !== typeof y) return (typeof x === "number" ? -1 : 1) * (desc ? -1 : 1);
        return (x < y ? -1 : 1) * (desc ? -1 : 1);
      });
    }
    table.replaceChildren(h("table", { id: "trials" },
      h("thead", {}, h("tr", {}, columns.map((c) => h("th", {
        class: "sortable" + (c.param ? " param" : ""), "data-key": c.key, title: "sort",
        onclick: () => { setParams({ sort: sortKey === c.key && !desc ? `-${c.key}` : c.key }); renderTable(); },
      }, c.label, sortKey === c.key ? (desc ? " ▼" : " ▲") : "")))),
      h("tbody", {}, rows.map((t) => h("tr", { "data-trial": t.name },
        columns.map((c) => h("td", { class: typeof c.value(t) === "number" ? "num" : c.key === "error" ? "cmd" : "", "data-col": c.key },
          c.cell ? c.cell(t) : fmt(c.value(t)))))))));
  };

  main.replaceChildren(header, h("h2", {}, "Each parameter against the value"), charts, legend, h("h2", {}, "Trials, best first"), table);
  const render = () => { renderHeader(); renderCharts(); renderTable(); };
  const reload = serialized(async () => { detail = await api(`/api/sweeps/${enc(name)}`); render(); });
  render();
  listen(reload, (changed) => {
    const ours = changed.filter((r) => r.sweep === name);
    if (!ours.length) return;
    reload();
    if (ours.some((r) => ENDED.has(r.status))) setTimeout(reload, 1000);
  });
}
