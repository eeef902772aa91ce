// The trainyard dashboard: a few views over the JSON API, refreshed every couple of
// seconds. Plain DOM building (never innerHTML with data: job names and messages come
// from users), uPlot for the curves. The token stays in this browser's localStorage.
"use strict";

const API = "/api/v1";
const TOKEN_KEY = "trainyard.token";
const REFRESH_MS = 2000;
// new points fetched per poll at most (the rest comes with the next poll)
const NEW_POINTS_PAGE = 10000;
// The server's job statuses, in the order of a job's life, and those that are final:
// both from /api/v1/meta (loadMeta), so a status the server adds shows up here unchanged.
const STATUSES = [];
const FINISHED = new Set();
const COLORS = ["#1f6feb", "#e8710a", "#12a150", "#b42318", "#7c3aed", "#0e7490"];

const app = { token: localStorage.getItem(TOKEN_KEY), user: null, meta: null, timer: null, cleanup: [], generation: 0,
              noStream: false };

class ApiError extends Error {
  constructor(status, problem) {
    const details = (problem.errors || []).map((e) => `${e.path || "body"}: ${e.message}`);
    super([`${problem.title || "Error"} (${status})${problem.detail ? ": " + problem.detail : ""}`, ...details].join("\n"));
    this.status = status;
    this.problem = problem;
  }
}

async function api(path, options = {}) {
  const headers = { Accept: "application/json", ...(options.headers || {}) };
  if (app.token) headers.Authorization = `Bearer ${app.token}`;
  let resp;
  try {
    resp = await fetch(API + path, { ...options, headers });
  } catch (err) {
    throw new ApiError(0, { title: "The API cannot be reached", detail: "is trainyard still running?" });
  }
  if (!resp.ok) {
    let problem;
    try { problem = await resp.json(); } catch { problem = { title: resp.statusText }; }
    if (resp.status === 401 && app.user) signOut("Your token is no longer accepted; sign in again.");
    throw new ApiError(resp.status, problem);
  }
  if (resp.status === 204) return null;
  return (resp.headers.get("Content-Type") || "").includes("json") ? resp.json() : resp.blob();
}

// -- small DOM and formatting helpers -----------------------------------------------------

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    // through the CSSOM: the page's CSP refuses style attributes
    else if (key === "style") el.style.cssText = value;
    else el.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

function ago(iso) {
  if (!iso) return "–";
  const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (s < 60) return `${Math.floor(s)} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

function when(iso) {
  return iso ? new Date(iso).toLocaleString() : "–";
}

function num(v) {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  if (Number.isInteger(v)) return v.toLocaleString();
  const a = Math.abs(v);
  return a !== 0 && (a < 1e-3 || a >= 1e5) ? v.toExponential(3) : v.toPrecision(4);
}

function bytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)} MiB`;
  return `${(n / 1024 ** 3).toFixed(1)} GiB`;
}

// what the user's datasets and checkpoints use of their quota (GET /me), beside their name
function showStorage(quota) {
  const el = document.getElementById("storage");
  const limit = quota.limit_bytes === null ? "no quota" : `of ${bytes(quota.limit_bytes)}`;
  el.textContent = `storage ${bytes(quota.used_bytes)} ${limit}`;
  el.title = `datasets ${bytes(quota.datasets_bytes)}, checkpoints ${bytes(quota.checkpoints_bytes)}, ` +
    `reserved by unfinished jobs ${bytes(quota.reserved_bytes)}`;
}

const badge = (text, kind = text) => h("span", { class: `badge ${kind}` }, text);

function progressBar(job, wide = false) {
  const p = job.progress || {};
  // a success is complete even when early stopping ended it before its last epoch
  const done = job.status === "succeeded" ? 1 : p.epochs ? p.epoch / p.epochs : 0;
  return h("span", {},
    h("span", { class: `bar${wide ? " wide" : ""}`, role: "progressbar", "aria-valuenow": Math.round(done * 100),
                "aria-valuemin": 0, "aria-valuemax": 100 },
      h("span", { style: `width:${(done * 100).toFixed(1)}%` })),
    wide ? null : h("span", { class: "progress-text" }, p.epochs ? `${p.epoch}/${p.epochs}` : ""));
}

// The figure a job is judged by: validation accuracy, else validation loss, else training loss.
function headline(job) {
  const r = job.result || {};
  const live = (job.progress || {}).metrics || {};
  const val = r.validation && Object.keys(r.validation).length ? r.validation
    : Object.fromEntries(Object.entries(live).filter(([k]) => k.startsWith("val_")).map(([k, v]) => [k.slice(4), v]));
  const train = r.train && Object.keys(r.train).length ? r.train : live;
  for (const [src, prefix] of [[val, "val "], [train, ""]]) {
    for (const key of ["accuracy", "r2", "loss"]) {
      if (src[key] !== undefined) return `${prefix}${key} ${num(src[key])}`;
    }
  }
  return "–";
}

// -- routing --------------------------------------------------------------------------------

const routes = [
  [/^#?\/?$/, jobsView, "jobs"],
  [/^#\/jobs\/(\d+)$/, jobView, "jobs"],
  [/^#\/workers$/, workersView, "workers"],
];

function stopView() {
  clearInterval(app.timer);
  app.timer = null;
  for (const fn of app.cleanup.splice(0)) {
    try { fn(); } catch (err) { console.warn("cleanup failed", err); }
  }
  app.generation += 1;
}

// Once per page load; the views below need the statuses to filter and label jobs.
async function loadMeta() {
  if (app.meta) return;
  const meta = await api("/meta");
  STATUSES.splice(0, STATUSES.length, ...meta.job_statuses);
  FINISHED.clear();
  for (const s of meta.job_statuses) if (s.finished) FINISHED.add(s.name);
  app.meta = meta;
}

async function render() {
  stopView();
  const main = document.getElementById("view");
  // who the token belongs to, asked beside /meta rather than after it
  const me = app.token && !app.user ? api("/me") : null;
  if (me) me.catch(() => {}); // handled below, once /meta is in
  try {
    await loadMeta();
  } catch (err) {
    main.replaceChildren(h("div", { class: "error-box" }, err.message),
      h("p", {}, h("button", { type: "button", onclick: () => render() }, "Try again")));
    return;
  }
  if (!app.token) {
    main.replaceChildren(loginView());
    return;
  }
  if (!app.user) {
    try {
      app.user = await (me || api("/me"));
    } catch (err) {
      if (err.status === 401) { signOut("That token was not accepted."); return; }
      main.replaceChildren(h("div", { class: "error-box" }, err.message));
      return;
    }
    document.getElementById("who").textContent = `${app.user.name}${app.user.is_admin ? " (admin)" : ""}`;
    showStorage(app.user.quota);
    document.getElementById("signout").hidden = false;
  }
  const hash = location.hash || "#/";
  const [pattern, view, nav] = routes.find(([re]) => re.test(hash)) || [];
  for (const a of document.querySelectorAll("nav a[data-nav]")) a.classList.toggle("active", a.dataset.nav === nav);
  if (!view) {
    main.replaceChildren(h("p", {}, "No such page. ", h("a", { href: "#/" }, "Back to the jobs")));
    return;
  }
  const generation = app.generation;
  const refresh = view(main, ...hash.match(pattern).slice(1));
  const tick = async () => {
    try {
      await refresh();
    } catch (err) {
      if (generation === app.generation && err.status !== 401) showError(main, err);
    }
  };
  await tick();
  if (generation === app.generation) app.timer = setInterval(tick, REFRESH_MS);
}

function showError(main, err) {
  let box = main.querySelector(":scope > .error-box");
  if (!box) {
    box = h("div", { class: "error-box" });
    main.prepend(box);
  }
  box.textContent = err.message;
}

function clearError(main) {
  const box = main.querySelector(":scope > .error-box");
  if (box) box.remove();
}

function signOut(message) {
  localStorage.removeItem(TOKEN_KEY);
  app.token = null;
  app.user = null;
  document.getElementById("who").textContent = "";
  document.getElementById("storage").textContent = "";
  document.getElementById("signout").hidden = true;
  stopView();
  document.getElementById("view").replaceChildren(loginView(message));
}

function loginView(message) {
  const input = h("input", { type: "password", name: "token", placeholder: "ty_…", autocomplete: "off",
                             required: true, "aria-label": "API token" });
  const error = message ? h("div", { class: "error-box" }, message) : null;
  const form = h("form", {
    onsubmit: (event) => {
      event.preventDefault();
      app.token = input.value.trim();
      localStorage.setItem(TOKEN_KEY, app.token);
      render();
    },
  }, input, h("button", { type: "submit", class: "primary" }, "Sign in"));
  return h("div", { class: "login panel" },
    h("h1", {}, "Sign in"),
    h("p", { class: "muted" }, "Paste an API token. ", h("code", {}, "trainyard up"), " prints an admin token; ",
      h("code", {}, "trainyard token create --name NAME"), " makes more."),
    error, form);
}

// -- jobs -----------------------------------------------------------------------------------

function jobsView(main) {
  const filter = h("select", { "aria-label": "Status", onchange: () => refresh() },
    h("option", { value: "all" }, "all"),
    STATUSES.map((s) => h("option", { value: s.name, title: s.description }, s.name)));
  const counts = h("span", { class: "muted" });
  const body = h("tbody");
  const table = h("table", { id: "jobs" },
    h("thead", {}, h("tr", {}, ["ID", "Name", "Status", "Progress", "Owner", "Age", "Metric"]
      .map((c) => h("th", { class: c === "ID" ? "num" : null }, c)))),
    body);
  main.replaceChildren(
    h("div", { class: "toolbar" }, h("h1", {}, "Jobs"), counts, h("span", { class: "spacer" }),
      h("label", {}, "Status ", filter)),
    h("div", { class: "panel flush" }, table));

  async function refresh() {
    const status = filter.value === "all" ? "" : `&status=${encodeURIComponent(filter.value)}`;
    const page = await api(`/jobs?limit=100${status}`);
    clearError(main);
    const running = page.items.filter((j) => j.status === "running").length;
    counts.textContent = `${page.items.length}${page.next_page_token ? "+" : ""} shown, ${running} running`;
    if (!page.items.length) {
      body.replaceChildren(h("tr", {}, h("td", { colspan: 7, class: "muted" },
        "No jobs yet. Submit one: ", h("code", {}, "trainyard submit examples/digits.json"))));
      return;
    }
    body.replaceChildren(...page.items.map((job) => h("tr", {
      class: "link", dataset: { id: job.id, status: job.status },
      onclick: (event) => { if (!event.target.closest("a")) location.hash = `#/jobs/${job.id}`; },
    },
    h("td", { class: "num" }, job.id),
    h("td", {}, h("a", { href: `#/jobs/${job.id}` }, job.name || `job ${job.id}`)),
    h("td", {}, badge(job.status), job.cancel_requested && !FINISHED.has(job.status) ? " cancelling" : ""),
    h("td", {}, progressBar(job)),
    h("td", {}, job.owner),
    h("td", { title: when(job.created_at) }, ago(job.created_at)),
    h("td", { class: "mono" }, headline(job)))));
  }
  return refresh;
}

// -- metric buckets -------------------------------------------------------------------------
// A series is a list of buckets in step order, as /metrics?max_points and the stream send
// them: {step (its first), last_step, epoch, count, value (mean), min, max, first, last,
// bucket_steps}, each the points of one aligned range of bucket_steps steps. A raw point
// (a /metrics page) is a bucket of one.

function asBucket(p) {
  if (p.count !== undefined && p.count !== null) return p;
  return { step: p.step, last_step: p.step, epoch: p.epoch, count: 1, value: p.value, min: p.value, max: p.value,
           first: p.value, last: p.value, bucket_steps: 1 };
}

// A bucket from the stream: one with the same first step is a fuller version of a bucket
// already shown and replaces it.
function putBucket(list, b) {
  let i = list.length;
  while (i > 0 && list[i - 1].step > b.step) i -= 1;
  if (i > 0 && list[i - 1].step === b.step) list[i - 1] = b;
  else list.splice(i, 0, b);
}

// The step width a series is followed at: its buckets', or 1 where every bucket holds one
// point (a short series comes as its points, whatever width its buckets were cut at).
function bucketWidth(list) {
  return list.length && list.some((b) => b.count > 1) ? list[list.length - 1].bucket_steps : 1;
}

// A raw point from a poll, into a series shown in buckets of `width` steps: the last
// bucket takes it while the point falls in its range, else it starts the next one.
function foldPoint(list, p, width) {
  const last = list[list.length - 1];
  if (last && p.step <= last.last_step) return;
  if (last && width > 1 && Math.floor(last.step / width) === Math.floor(p.step / width)) {
    const count = last.count + 1;
    list[list.length - 1] = { ...last, last_step: p.step, count, value: last.value + (p.value - last.value) / count,
                              min: Math.min(last.min, p.value), max: Math.max(last.max, p.value), last: p.value };
  } else {
    list.push({ ...asBucket(p), bucket_steps: width });
  }
}

// -- a job's live stream ---------------------------------------------------------------------

// GET /jobs/<id>/stream (Server-Sent Events) read through fetch, since EventSource cannot
// send the token. After a drop it reconnects with Last-Event-ID, after the server's
// `retry`; `refused(status)` when there is no stream for us (404: a server without it,
// 503: at capacity, 0: it keeps dropping), so the page polls instead.
class EventStream {
  constructor(path, { message, refused }) {
    this.path = path;
    this.message = message;
    this.refused = refused;
    this.controller = new AbortController();
    this.lastId = null;
    this.retryMs = 2000;
    this.closed = false;
    // whether the connection being read has brought a message
    this.got = false;
  }

  stop() {
    this.closed = true;
    this.controller.abort();
  }

  async run() {
    let failures = 0;
    while (!this.closed) {
      const headers = { Accept: "text/event-stream", Authorization: `Bearer ${app.token}` };
      if (this.lastId) headers["Last-Event-ID"] = this.lastId;
      let outcome = "dropped";
      this.got = false;
      try {
        const resp = await fetch(API + this.path, { headers, signal: this.controller.signal, cache: "no-store" });
        if (!resp.ok) {
          resp.body?.cancel();
          if (resp.status === 401 && app.user) signOut("Your token is no longer accepted; sign in again.");
          if (!this.closed) this.refused(resp.status);
          return;
        }
        outcome = await this.read(resp.body);
      } catch (err) {
        if (this.closed) return;
      }
      if (this.closed || outcome === "end") return;
      failures = this.got ? 0 : failures + 1;
      if (failures >= 3) { this.refused(0); return; }
      await new Promise((resolve) => setTimeout(resolve, this.retryMs));
    }
  }

  // "end" after the end message, else "closed" when the server closed the connection
  async read(body) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    let event = "";
    let data = [];
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return "closed";
      buffer += value;
      const lines = buffer.split("\n");
      buffer = lines.pop();
      for (const raw of lines) {
        const line = raw.endsWith("\r") ? raw.slice(0, -1) : raw;
        if (line === "") {
          if (data.length) {
            this.got = true;
            const type = event || "message";
            let payload = null;
            try { payload = JSON.parse(data.join("\n")); } catch { console.warn("stream: not JSON", type); }
            if (payload !== null && !this.closed) this.message(type, payload);
            if (type === "end") { reader.cancel(); return "end"; }
          }
          event = "";
          data = [];
          continue;
        }
        if (line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        let v = colon < 0 ? "" : line.slice(colon + 1);
        if (v.startsWith(" ")) v = v.slice(1);
        if (field === "event") event = v;
        else if (field === "data") data.push(v);
        else if (field === "id") this.lastId = v;
        else if (field === "retry" && /^\d+$/.test(v)) this.retryMs = Number(v);
      }
    }
  }
}

// -- one job --------------------------------------------------------------------------------

// The job page's charts, from the series catalog of /meta: a chart per group, drawn
// against the step when any of its series is a step series, else against the epoch.
function chartGroups() {
  const groups = new Map();
  for (const s of app.meta.series || []) {
    if (!groups.has(s.group)) groups.set(s.group, []);
    groups.get(s.group).push(s);
  }
  return [...groups].map(([id, entries]) => chartGroup(id, entries));
}

function chartGroup(id, entries) {
  // "loss (batch)", "loss (validation)" -> "Loss"; "MAE (…)", "RMSE (…)" -> "MAE / RMSE"
  const names = [...new Set(entries.map((s) => s.label.replace(/\s*\(.*\)$/, "")))];
  const title = names.join(" / ");
  return { id, entries, title: title.charAt(0).toUpperCase() + title.slice(1),
           x: entries.some((s) => s.per === "step") ? "step" : "epoch", log: entries.some((s) => s.log_scale) };
}

// A series the catalog does not list gets a chart of its own, against the step.
const uncataloged = (name) => chartGroup(name, [{ name, per: "step", group: name, label: name, log_scale: false }]);

// uPlot's own y range (10% padding), except that extremes equal but for rounding (a
// float32 step series beside its float64 epoch series: lr 0.0099999998 and 0.01) count
// as one value; uPlot would otherwise make a range of width 0 and draw nothing.
const SOFT = { mode: 3, pad: 0.1 };
function linearRange(u, min, max) {
  if (min !== null && max - min <= 1e-6 * Math.max(Math.abs(min), Math.abs(max))) min = max = (min + max) / 2;
  return uPlot.rangeNum(min, max, { min: SOFT, max: SOFT });
}

class Chart {
  // onZoom(from, to) after a drag over the plot, onReset() after a double-click
  constructor(group, container, { onZoom, onReset }) {
    this.group = group;
    this.container = container;
    this.onZoom = onZoom;
    this.onReset = onReset;
    this.plot = null;
    this.key = "";
    this.log = false;
    // what is drawn, for the tests: name -> buckets, and name -> {value, min, max}, the
    // columns of plot.data holding its mean and its band's edges
    this.buckets = {};
    this.layout = {};
    this.range = null;
    // follow the container's width (window resizes, panels shown after the first draw)
    this.observer = new ResizeObserver(() => {
      if (this.plot && this.plot.width !== this.size().width) this.plot.setSize(this.size());
    });
    this.observer.observe(container);
  }

  size() {
    return { width: Math.max(300, this.container.clientWidth), height: 240 };
  }

  setLog(on) {
    this.log = on;
    this.container.dataset.log = on ? "1" : "0";
    this.update(this.buckets, this.range);
  }

  // series: {name: buckets}; range: [from, to] of x to show, or null for all of it
  update(series, range = null) {
    const entries = this.group.entries.filter((s) => series[s.name] && series[s.name].length);
    this.buckets = Object.fromEntries(entries.map((s) => [s.name, series[s.name]]));
    this.range = range;
    const byStep = this.group.x === "step";
    const xOf = byStep ? (b) => b.step : (b) => b.epoch;
    const total = entries.reduce((sum, s) => sum + series[s.name].length, 0);
    this.container.dataset.points = String(total);
    this.container.dataset.series = entries.map((s) => s.name).join(",");
    // how far the curve reaches (the tests watch it grow)
    this.container.dataset.lastX = String(Math.max(-1, ...entries.map((s) => {
      const last = series[s.name][series[s.name].length - 1];
      return byStep ? last.last_step : last.epoch;
    })));
    this.container.dataset.zoom = range ? `${range[0]}-${range[1]}` : "";
    if (!entries.length) {
      if (this.plot) { this.plot.destroy(); this.plot = null; this.key = ""; }
      if (!this.container.querySelector(".empty")) {
        this.container.replaceChildren(h("div", { class: "empty" }, "No points yet"));
      }
      return false;
    }
    // a log scale cannot show values <= 0: those become gaps
    const y = this.log ? (v) => (v > 0 ? v : null) : (v) => v;
    const tables = [];
    this.layout = {};
    let column = 1;
    for (const s of entries) {
      const bs = series[s.name];
      const table = [bs.map(xOf), bs.map((b) => y(b.value))];
      this.layout[s.name] = { value: column++ };
      // a band from each bucket's min to its max where buckets hold more than one point
      if (bs.some((b) => b.count > 1)) {
        table.push(bs.map((b) => y(b.min)), bs.map((b) => y(b.max)));
        Object.assign(this.layout[s.name], { min: column++, max: column++ });
      }
      tables.push(table);
    }
    const data = tables.length === 1 ? tables[0] : uPlot.join(tables);
    const key = [this.log, ...entries.map((s) => `${s.name}${this.layout[s.name].min ? "±" : ""}`)].join(",");
    if (this.plot && key === this.key) {
      this.plot.setData(data);
    } else {
      this.create(entries, data);
      this.key = key;
    }
    if (range) this.plot.setScale("x", { min: range[0], max: range[1] });
    return true;
  }

  create(entries, data) {
    if (this.plot) this.plot.destroy();
    this.container.replaceChildren();
    const sparse = entries.length > 1;
    const value = (u, v) => num(v);
    const series = [{ label: this.group.x, value: (u, v) => (v === null || v === undefined ? "–" : num(v)) }];
    const bands = [];
    for (const s of entries) {
      const color = COLORS[this.group.entries.indexOf(s) % COLORS.length];
      const { min, max } = this.layout[s.name];
      series.push({ label: s.label, stroke: color, width: s.per === "step" ? 1 : 2, spanGaps: sparse,
                    points: { show: s.per === "step" ? false : undefined }, value });
      if (min) {
        for (const edge of ["min", "max"]) {
          series.push({ label: `${s.label} ${edge}`, stroke: `${color}55`, width: 1, spanGaps: sparse,
                        points: { show: false }, value });
        }
        bands.push({ series: [max, min], fill: `${color}26` });
      }
    }
    this.plot = new uPlot({
      ...this.size(),
      scales: { x: { time: false }, y: this.log ? { distr: 3 } : { range: linearRange } },
      axes: [{ label: this.group.x }, { size: 60 }],
      // a drag selects a range and asks onZoom for it, instead of uPlot zooming by itself
      cursor: { drag: { x: true, y: false, setScale: false } },
      hooks: {
        setSelect: [(u) => {
          const { left, width } = u.select;
          if (width < 3) return;
          u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
          this.onZoom(u.posToVal(left, "x"), u.posToVal(left + width, "x"));
        }],
      },
      series,
      bands,
    }, data, this.container);
    this.plot.over.addEventListener("dblclick", () => this.onReset());
  }

  destroy() {
    this.observer.disconnect();
    if (this.plot) this.plot.destroy();
  }
}

function jobView(main, id) {
  const title = h("h1", {}, `Job ${id}`);
  const status = h("span");
  const cancel = h("button", { type: "button", class: "danger", hidden: true, onclick: () => cancelJob() }, "Cancel job");
  const facts = h("dl", { class: "facts" });
  const bar = h("div");
  const errorBox = h("div");
  const chartGrid = h("div", { class: "grid", id: "charts" });
  const checkpoints = h("tbody");
  const events = h("tbody");
  const spec = h("pre", { class: "spec" });
  const groups = chartGroups();
  const charts = new Map();
  const generation = app.generation;
  let job = null;
  let lastEventId = 0;
  let specShown = false;
  let metricsDone = false;
  // per series, its buckets over the whole job (growing while it runs); the zoomed step
  // range of the step charts and its buckets; the points asked per series
  const overview = {};
  let zoom = null;
  let zoomSeq = 0;
  let maxPoints = 0;
  let loaded = false;
  // the live streams while they run (one per bucket width), and whether to draw soon
  let streams = [];
  let drawQueued = false;

  main.replaceChildren(
    h("div", { class: "crumbs" }, h("a", { href: "#/" }, "Jobs"), ` / ${id}`),
    h("div", { class: "toolbar" }, title, status, h("span", { class: "spacer" }), cancel),
    errorBox,
    h("div", { class: "panel" }, bar, h("div", { style: "height:14px" }), facts),
    chartGrid,
    h("div", { class: "grid" },
      h("div", { class: "panel flush" }, h("h2", { style: "padding:14px 14px 0" }, "Checkpoints"),
        h("table", { id: "checkpoints" }, h("thead", {}, h("tr", {},
          ["Epoch", "Step", "Metrics", "Size", "sha256", ""].map((c) => h("th", {}, c)))), checkpoints)),
      h("div", { class: "panel flush" }, h("h2", { style: "padding:14px 14px 0" }, "Events"),
        h("div", { class: "scroll" }, h("table", { id: "events" }, h("thead", {}, h("tr", {},
          ["Time", "Kind", "Message"].map((c) => h("th", {}, c)))), events)))),
    h("details", { class: "panel", open: true }, h("summary", {}, "Spec"), h("div", { style: "height:10px" }), spec));

  function addChart(group) {
    const container = h("div", { class: "chart", id: `chart-${group.id}`, title: "Drag to zoom, double-click to reset" });
    const reset = h("button", { type: "button", class: "small", hidden: true, onclick: () => resetZoom(group) },
      "Reset zoom");
    const log = group.log ? h("button", {
      type: "button", class: "small toggle", "aria-pressed": "false", dataset: { log: group.id },
      onclick: () => {
        chart.setLog(!chart.log);
        log.setAttribute("aria-pressed", String(chart.log));
      },
    }, "log scale") : null;
    const panel = h("div", { class: "panel", hidden: true },
      h("div", { class: "chart-head" }, h("h2", {}, group.title), h("span", { class: "spacer" }), reset, log), container);
    const chart = new Chart(group, container, { onZoom: (from, to) => zoomTo(group, from, to),
                                                onReset: () => resetZoom(group) });
    chartGrid.append(panel);
    charts.set(group.id, { group, chart, panel, reset });
  }
  for (const g of groups) addChart(g);
  // the first chart shows even before it has points (and gives the width to fetch for)
  if (groups.length) charts.get(groups[0].id).panel.hidden = false;

  app.cleanup.push(() => {
    stopStreams();
    for (const { chart } of charts.values()) chart.destroy();
    delete window.__trainyard;
  });
  // for the tests: the charts, and the zoom a drag and a double-click do
  window.__trainyard = { charts: Object.fromEntries([...charts].map(([k, v]) => [k, v.chart])),
                         zoom: (group, from, to) => zoomTo(charts.get(group).group, from, to),
                         reset: (group) => resetZoom(charts.get(group).group),
                         live: () => (streams.length ? "stream" : "poll") };

  async function cancelJob() {
    cancel.disabled = true;
    try {
      await api(`/jobs/${id}/cancel`, { method: "POST" });
      await refresh();
    } catch (err) {
      showError(main, err);
      cancel.disabled = false;
    }
  }

  function renderJob() {
    title.textContent = job.name ? `${job.name}` : `Job ${job.id}`;
    document.title = `${title.textContent} · trainyard`;
    status.replaceChildren(badge(job.status), job.cancel_requested && !FINISHED.has(job.status)
      ? h("span", { class: "muted" }, " cancel requested") : "");
    cancel.hidden = FINISHED.has(job.status) || job.cancel_requested;
    const p = job.progress || {};
    bar.replaceChildren(progressBar(job, true));
    const elapsed = job.started_at ? ((job.finished_at ? Date.parse(job.finished_at) : Date.now())
      - Date.parse(job.started_at)) / 1000 : null;
    const fact = (k, v) => [h("div", {}, h("dt", {}, k), h("dd", {}, v))];
    facts.replaceChildren(
      ...fact("Job", `#${job.id}`),
      ...fact("Progress", p.epochs ? `epoch ${p.epoch} of ${p.epochs}, step ${p.step ?? 0}` : "–"),
      ...fact(FINISHED.has(job.status) ? "Ran for" : "Running for", duration(elapsed)),
      ...fact("ETA", job.status === "running" ? duration(p.eta_s) : "–"),
      ...fact("Result", headline(job)),
      ...fact("Owner", job.owner),
      ...fact("Priority", job.priority),
      ...fact("Attempts", job.attempts),
      ...fact("Created", when(job.created_at)),
      ...fact("Finished", when(job.finished_at)));
    errorBox.replaceChildren(job.error ? h("div", { class: "error-box" }, job.error) : "");
    if (!specShown) {
      spec.textContent = JSON.stringify(job.spec, null, 2);
      specShown = true;
    }
  }

  // -- the charts' data

  function draw() {
    for (const name of Object.keys(overview)) {
      if (!(app.meta.series || []).some((s) => s.name === name) && !charts.has(name)) addChart(uncataloged(name));
    }
    for (const { group, chart, panel, reset } of charts.values()) {
      const names = group.entries.map((s) => s.name);
      // shown before drawing, so the chart is drawn at the panel's width
      panel.hidden = !names.some((n) => overview[n] && overview[n].length) && group !== groups[0];
      const zoomed = group.x === "step" ? zoom : chart.range && { range: chart.range, series: overview };
      chart.update(zoomed ? zoomed.series : overview, zoomed ? zoomed.range : null);
      reset.hidden = !zoomed;
    }
  }

  function drawSoon() {
    if (drawQueued) return;
    drawQueued = true;
    requestAnimationFrame(() => {
      drawQueued = false;
      if (generation !== app.generation) return;
      // a live series that has grown well past the points asked: fetch it afresh, coarser
      if (Object.values(overview).some((bs) => bs.length > 3 * maxPoints)) reload().catch((err) => showError(main, err));
      else draw();
    });
  }

  // what a chart is wide, in px: the points asked per series
  function chartWidth() {
    const first = groups.length ? charts.get(groups[0].id).chart.container.clientWidth : 0;
    return Math.min(2000, Math.max(100, Math.round(first || chartGrid.clientWidth || 600)));
  }

  const lastStep = (names) => Math.max(-1, ...names.map((n) => {
    const bs = overview[n] || [];
    return bs.length ? bs[bs.length - 1].last_step : -1;
  }));

  // The first load: every series in at most a chart's width of buckets, each with its
  // mean, min and max, in one request.
  async function loadMetrics() {
    maxPoints = chartWidth();
    const page = await api(`/jobs/${id}/metrics?max_points=${maxPoints}`);
    if (generation !== app.generation) return;
    for (const name of Object.keys(overview)) delete overview[name];
    for (const p of page.items) (overview[p.name] ||= []).push(asBucket(p));
    draw();
  }

  async function reload() {
    const wasLive = streams.length > 0;
    stopStreams();
    await loadMetrics();
    if (wasLive) startStreams();
  }

  // Polling (no stream): the raw points past the last step seen, folded into the
  // buckets each series is shown in.
  async function pollMetrics() {
    const after = lastStep(Object.keys(overview));
    const page = await api(`/jobs/${id}/metrics?${after >= 0 ? `after_step=${after}&` : ""}limit=${NEW_POINTS_PAGE}`);
    // a cut page may end part-way through a step: keep that step for the next poll
    const cut = page.next_page_token ? Math.max(...page.items.map((p) => p.step)) : null;
    for (const p of cut === null ? page.items : page.items.filter((q) => q.step < cut)) {
      const list = (overview[p.name] ||= []);
      foldPoint(list, p, bucketWidth(list));
    }
    drawSoon();
  }

  // A drag over a step chart: every step chart shows that range, fetched again so a
  // small range comes as raw points. A chart against the epoch holds all its points
  // already and zooms by itself.
  async function zoomTo(group, from, to) {
    if (group.x !== "step") {
      charts.get(group.id).chart.range = [from, to];
      draw();
      return;
    }
    from = Math.max(0, Math.floor(from));
    to = Math.max(from + 1, Math.ceil(to));
    const names = [...charts.values()].filter((c) => c.group.x === "step")
      .flatMap((c) => c.group.entries.map((s) => s.name)).filter((n) => overview[n]);
    const seq = ++zoomSeq;
    const query = new URLSearchParams({ max_points: maxPoints || chartWidth(), before_step: to + 1 });
    if (from > 0) query.set("after_step", from - 1);
    if (names.length) query.set("name", names.join(","));
    const page = await api(`/jobs/${id}/metrics?${query}`);
    if (seq !== zoomSeq || generation !== app.generation) return;
    const series = {};
    for (const p of page.items) (series[p.name] ||= []).push(asBucket(p));
    zoom = { range: [from, to], series };
    draw();
  }

  function resetZoom(group) {
    if (group.x === "step") {
      zoomSeq += 1;
      zoom = null;
    } else {
      charts.get(group.id).chart.range = null;
    }
    draw();
  }

  // -- live: the stream while the job runs, else polling

  // One stream per bucket width the first load gave (most jobs: one). Series not loaded
  // yet join a stream by the catalog: step series the widest, epoch series raw points.
  function streamGroups() {
    const widths = new Map();
    const add = (width, name) => widths.set(width, [...(widths.get(width) || []), name]);
    for (const [name, bs] of Object.entries(overview)) add(bucketWidth(bs), name);
    if (widths.size <= 1) return [{ width: widths.size ? [...widths.keys()][0] : 1, names: null }];
    const widest = Math.max(...widths.keys());
    for (const s of app.meta.series || []) if (!overview[s.name]) add(s.per === "step" ? widest : 1, s.name);
    return [...widths].map(([width, names]) => ({ width, names }));
  }

  function startStreams() {
    chartGrid.dataset.live = "poll";
    if (app.noStream || !job || FINISHED.has(job.status)) return;
    streams = streamGroups().map(({ width, names }, i) => {
      const query = new URLSearchParams({ bucket_steps: width });
      if (names) query.set("name", names.join(","));
      const after = lastStep(names || Object.keys(overview));
      if (after >= 0) query.set("after_step", after);
      if (lastEventId) query.set("after_event", lastEventId);
      const stream = new EventStream(`/jobs/${id}/stream?${query}`, {
        message: (type, data) => onStreamMessage(i === 0, type, data),
        refused: (code) => {
          // a server without the stream: poll on this page load; at capacity: poll here
          if (code === 404) app.noStream = true;
          stopStreams();
        },
      });
      stream.run();
      return stream;
    });
    chartGrid.dataset.live = "stream";
  }

  function stopStreams() {
    for (const s of streams.splice(0)) s.stop();
    chartGrid.dataset.live = "poll";
  }

  function onStreamMessage(primary, type, data) {
    if (generation !== app.generation) return;
    if (type === "points") {
      for (const p of data.items || []) putBucket(overview[p.name] ||= [], asBucket(p));
      drawSoon();
    } else if (!primary) {
      // status, log lines and the end come with every stream: the first one's count
      if (type === "end") stopStreams();
    } else if (type === "status") {
      job = { ...job, ...data };
      renderJob();
    } else if (type === "log") {
      addEvents([data]);
    } else if (type === "end") {
      job = { ...job, ...data };
      renderJob();
      stopStreams();
    }
  }

  async function refreshCheckpoints() {
    const { items } = await api(`/jobs/${id}/checkpoints`);
    checkpoints.replaceChildren(...(items.length ? items.slice().reverse().map((c) => h("tr", {},
      h("td", {}, c.epoch, c.is_best ? badge("best") : ""),
      h("td", {}, c.step),
      h("td", { class: "mono" }, Object.entries(c.metrics || {})
        .filter(([k]) => ["loss", "val_loss", "accuracy", "val_accuracy"].includes(k))
        .map(([k, v]) => `${k} ${num(v)}`).join("  ")),
      h("td", {}, bytes(c.size_bytes)),
      h("td", { class: "mono", title: c.sha256 }, c.sha256.slice(0, 12)),
      h("td", {}, h("a", { href: c.download_url, class: "download", onclick: (e) => download(e, id, c) }, "Download")),
    )) : [h("tr", {}, h("td", { colspan: 6, class: "muted" }, "No checkpoints yet"))]));
  }

  function addEvents(items) {
    if (items.length && !lastEventId) events.replaceChildren();
    for (const ev of items) {
      if (ev.id <= lastEventId) continue;
      events.prepend(h("tr", {}, h("td", { title: ev.time }, when(ev.time)), h("td", { class: "kind" }, ev.kind),
        h("td", {}, ev.message)));
      lastEventId = ev.id;
    }
    if (!events.children.length) events.append(h("tr", {}, h("td", { colspan: 3, class: "muted" }, "No events")));
  }

  async function refreshEvents() {
    const page = await api(`/jobs/${id}/events?after_id=${lastEventId}&limit=500`);
    addEvents(page.items);
  }

  // Each tick: the job and its checkpoints; the metrics and events too unless a stream
  // brings them. A finished job's metrics no longer change: fetched once more, then not.
  async function refresh() {
    const wasFinished = job && FINISHED.has(job.status);
    const first = !loaded;
    // the first load asks for the metrics beside the job: they need only its id
    const metrics = first ? loadMetrics() : null;
    if (metrics) metrics.catch(() => {}); // a missing job is reported by its own request
    job = await api(`/jobs/${id}`);
    renderJob();
    if (first) {
      await Promise.all([metrics, refreshEvents()]);
      loaded = true;
      startStreams();
    } else if (!streams.length && !metricsDone) {
      await pollMetrics();
    }
    metricsDone = wasFinished;
    await Promise.all([refreshCheckpoints(), streams.length || first ? null : refreshEvents()]);
  }
  return refresh;
}

// Checkpoint downloads need the token, so they go through fetch, not a plain link.
async function download(event, jobId, checkpoint) {
  event.preventDefault();
  const link = event.currentTarget;
  link.textContent = "Downloading…";
  try {
    const blob = await api(checkpoint.download_url.replace(API, ""));
    const url = URL.createObjectURL(blob);
    const a = h("a", { href: url, download: `job-${jobId}-epoch-${String(checkpoint.epoch).padStart(5, "0")}.npz` });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
    link.textContent = "Download";
  } catch (err) {
    link.textContent = "Download failed";
    link.title = err.message;
  }
}

// -- workers --------------------------------------------------------------------------------

function workersView(main) {
  const body = h("tbody");
  const counts = h("span", { class: "muted" });
  main.replaceChildren(
    h("div", { class: "toolbar" }, h("h1", {}, "Workers"), counts),
    h("div", { class: "panel flush" }, h("table", { id: "workers" },
      h("thead", {}, h("tr", {}, ["Worker", "State", "Busy", "Running", "Last seen", "Up since", "Broker", "Version"]
        .map((c) => h("th", {}, c)))), body)));

  async function refresh() {
    const { items } = await api("/workers");
    clearError(main);
    const alive = items.filter((w) => w.state === "alive");
    counts.textContent = `${alive.length} alive, ${alive.reduce((s, w) => s + w.busy, 0)} of `
      + `${alive.reduce((s, w) => s + w.concurrency, 0)} slots busy`;
    if (!items.length) {
      body.replaceChildren(h("tr", {}, h("td", { colspan: 8, class: "muted" },
        "No worker has reported in the last day. Start one: ", h("code", {}, "trainyard worker"))));
      return;
    }
    body.replaceChildren(...items.map((w) => h("tr", { dataset: { name: w.name, state: w.state } },
      h("td", { class: "mono" }, w.name),
      h("td", {}, badge(w.state)),
      h("td", {}, `${w.busy} / ${w.concurrency}`),
      h("td", {}, w.jobs.length ? w.jobs.map((j, i) => [i ? ", " : "", h("a", { href: `#/jobs/${j.id}` },
        `${j.name || "job"} #${j.id}`), j.progress && j.progress.epochs ? ` (${j.progress.epoch}/${j.progress.epochs})` : ""])
        : w.busy ? `${w.busy} of other users` : h("span", { class: "muted" }, "idle")),
      h("td", { title: when(w.last_seen_at) }, ago(w.last_seen_at)),
      h("td", { title: when(w.started_at) }, ago(w.started_at)),
      h("td", {}, w.broker),
      h("td", {}, w.version))));
  }
  return refresh;
}

// -- start ----------------------------------------------------------------------------------

document.getElementById("signout").addEventListener("click", () => signOut());
window.addEventListener("hashchange", render);
render();
