// The trainyard dashboard: a few views over the JSON API, refreshed every couple of
// seconds. Plain DOM building (never innerHTML with data: job names and messages come
// from users), uPlot for the curves. The token stays in this browser's localStorage.
"use strict";

const API = "/api/v1";
const TOKEN_KEY = "trainyard.token";
const REFRESH_MS = 2000;
// points per series asked of the server; it keeps each range's first, last, min and max
const MAX_POINTS = 800;
// new points fetched per poll at most (the rest comes with the next poll)
const NEW_POINTS_PAGE = 10000;
// The server's job statuses, in the order of a job's life, and those that are final:
// both from /api/v1/meta (loadMeta), so a status the server adds shows up here unchanged.
const STATUSES = [];
const FINISHED = new Set();
const COLORS = ["#1f6feb", "#e8710a", "#12a150", "#b42318", "#7c3aed", "#0e7490"];

const app = { token: localStorage.getItem(TOKEN_KEY), user: null, meta: null, timer: null, cleanup: [], generation: 0 };

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
  return `${(n / 1024 ** 2).toFixed(1)} MiB`;
}

// The server's reduction, done here on points already loaded: the first and last
// point and each of the equal step ranges' lowest and highest, so spikes survive.
function downsample(points, maxPoints) {
  const first = points[0];
  const last = points[points.length - 1];
  const buckets = Math.max(1, Math.floor((maxPoints - 2) / 2));
  const span = last[0] - first[0] + 1;
  const low = new Map();
  const high = new Map();
  for (const p of points) {
    const b = Math.floor(((p[0] - first[0]) * buckets) / span);
    if (!low.has(b) || p[2] < low.get(b)[2]) low.set(b, p);
    if (!high.has(b) || p[2] > high.get(b)[2]) high.set(b, p);
  }
  const kept = new Set([first, last, ...low.values(), ...high.values()]);
  return points.filter((p) => kept.has(p));
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
      app.user = await api("/me");
    } catch (err) {
      if (err.status === 401) { signOut("That token was not accepted."); return; }
      main.replaceChildren(h("div", { class: "error-box" }, err.message));
      return;
    }
    document.getElementById("who").textContent = `${app.user.name}${app.user.is_admin ? " (admin)" : ""}`;
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

// -- one job --------------------------------------------------------------------------------

// Charts of a job: which series go together, and what the x axis counts.
const CHARTS = [
  { id: "loss", title: "Loss", x: "step", series: ["loss", "epoch_loss", "val_loss"],
    labels: { loss: "batch loss", epoch_loss: "train (epoch mean)", val_loss: "validation" } },
  { id: "accuracy", title: "Accuracy", x: "epoch", series: ["epoch_accuracy", "val_accuracy"],
    labels: { epoch_accuracy: "train", val_accuracy: "validation" } },
  { id: "r2", title: "R²", x: "epoch", series: ["epoch_r2", "val_r2"], labels: { epoch_r2: "train", val_r2: "validation" } },
  { id: "mae", title: "Mean absolute error", x: "epoch", series: ["epoch_mae", "val_mae"],
    labels: { epoch_mae: "train", val_mae: "validation" } },
  { id: "lr", title: "Learning rate", x: "step", series: ["lr"], labels: { lr: "learning rate" } },
  { id: "grad_norm", title: "Gradient norm", x: "step", series: ["grad_norm"], labels: { grad_norm: "‖∇‖" } },
];

class Chart {
  constructor(spec, container) {
    this.spec = spec;
    this.container = container;
    this.plot = null;
    this.key = "";
    // follow the container's width (window resizes, panels shown after the first draw)
    this.observer = new ResizeObserver(() => {
      if (this.plot && this.plot.width !== this.size().width) this.plot.setSize(this.size());
    });
    this.observer.observe(container);
  }

  size() {
    return { width: Math.max(300, this.container.clientWidth), height: 240 };
  }

  // points: {name: [[x, y], ...]}
  update(points) {
    const names = this.spec.series.filter((n) => points[n] && points[n].length);
    const total = names.reduce((sum, n) => sum + points[n].length, 0);
    this.container.dataset.points = String(total);
    this.container.dataset.series = names.join(",");
    // how far the curve reaches (the tests watch it grow)
    this.container.dataset.lastX = String(Math.max(-1, ...names.map((n) => points[n][points[n].length - 1][0])));
    if (!names.length) {
      if (this.plot) { this.plot.destroy(); this.plot = null; this.key = ""; }
      if (!this.container.querySelector(".empty")) {
        this.container.replaceChildren(h("div", { class: "empty" }, "No points yet"));
      }
      return false;
    }
    const tables = names.map((n) => [points[n].map((p) => p[0]), points[n].map((p) => p[1])]);
    const data = names.length === 1 ? tables[0] : uPlot.join(tables);
    const key = names.join(",");
    if (this.plot && key === this.key) {
      this.plot.setData(data);
      return true;
    }
    if (this.plot) this.plot.destroy();
    this.container.replaceChildren();
    this.key = key;
    const sparse = names.length > 1;
    this.plot = new uPlot({
      ...this.size(),
      scales: { x: { time: false } },
      axes: [{ label: this.spec.x }, { size: 60 }],
      cursor: { drag: { x: true, y: false } },
      series: [
        { label: this.spec.x, value: (u, v) => (v === null || v === undefined ? "–" : num(v)) },
        ...names.map((n, i) => ({
          label: this.spec.labels[n] || n,
          stroke: COLORS[this.spec.series.indexOf(n) % COLORS.length],
          width: n === "loss" ? 1 : 2,
          spanGaps: sparse,
          points: { show: n !== "loss" && n !== "lr" && n !== "grad_norm" ? undefined : false },
          value: (u, v) => num(v),
        })),
      ],
    }, data, this.container);
    return true;
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
  const chartGrid = h("div", { class: "grid" });
  const checkpoints = h("tbody");
  const events = h("tbody");
  const spec = h("pre", { class: "spec" });
  const charts = new Map();
  let job = null;
  let lastEventId = 0;
  let specShown = false;
  let metricsDone = false;
  // per series: [step, epoch, value] in step order; the largest step fetched so far
  const series = {};
  let lastStep = -1;

  app.cleanup.push(() => { for (const { chart } of charts.values()) chart.destroy(); });
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

  for (const c of CHARTS) {
    const container = h("div", { class: "chart", id: `chart-${c.id}` });
    const panel = h("div", { class: "panel", hidden: true }, h("h2", {}, c.title), container);
    chartGrid.append(panel);
    charts.set(c.id, { chart: new Chart(c, container), panel });
  }

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

  // The first load asks the server for every series downsampled; after that only the
  // points past the last step seen are fetched and appended, so a poll stays cheap
  // however long the job has run.
  async function refreshMetrics() {
    if (lastStep < 0) {
      const page = await api(`/jobs/${id}/metrics?max_points=${MAX_POINTS}`);
      addPoints(page.items);
    } else {
      const page = await api(`/jobs/${id}/metrics?after_step=${lastStep}&limit=${NEW_POINTS_PAGE}`);
      // a cut page may end part-way through a step: keep that step for the next poll
      const cut = page.next_page_token ? Math.max(...page.items.map((p) => p.step)) : null;
      addPoints(cut === null ? page.items : page.items.filter((p) => p.step < cut));
    }
    const byX = { step: {}, epoch: {} };
    for (const [name, pts] of Object.entries(series)) {
      byX.step[name] = pts.map((p) => [p[0], p[2]]);
      byX.epoch[name] = pts.map((p) => [p[1], p[2]]);
    }
    for (const c of CHARTS) {
      const { chart, panel } = charts.get(c.id);
      const has = c.series.some((n) => series[n] && series[n].length);
      // loss and the learning rate are always shown; other charts only when they apply.
      // Shown before drawing, so the chart is drawn at the panel's width.
      panel.hidden = !has && !["loss", "lr"].includes(c.id);
      chart.update(byX[c.x]);
    }
  }

  function addPoints(items) {
    for (const p of items) {
      (series[p.name] ||= []).push([p.step, p.epoch, p.value]);
      if (p.step > lastStep) lastStep = p.step;
    }
    for (const [name, pts] of Object.entries(series)) {
      if (pts.length > 3 * MAX_POINTS) series[name] = downsample(pts, MAX_POINTS);
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

  async function refreshEvents() {
    const page = await api(`/jobs/${id}/events?after_id=${lastEventId}&limit=500`);
    if (!page.items.length && lastEventId) return;
    if (!lastEventId) events.replaceChildren();
    for (const ev of page.items) {
      events.prepend(h("tr", {}, h("td", { title: ev.time }, when(ev.time)), h("td", { class: "kind" }, ev.kind),
        h("td", {}, ev.message)));
      lastEventId = ev.id;
    }
    if (!events.children.length) events.append(h("tr", {}, h("td", { colspan: 3, class: "muted" }, "No events")));
  }

  async function refresh() {
    const wasFinished = job && FINISHED.has(job.status);
    job = await api(`/jobs/${id}`);
    renderJob();
    // a finished job's metrics no longer change: fetch them once more, then stop
    if (!metricsDone) await refreshMetrics();
    metricsDone = wasFinished;
    await Promise.all([refreshCheckpoints(), refreshEvents()]);
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
