// The model-boss dashboard: polls the coordinator's JSON status endpoints every 2 s and
// renders them. Every value from the server goes into the page as text (textContent),
// never as HTML: client ids and model names are chosen by callers.
"use strict";

const POLL_MS = 2000;
const KEY_STORE = "model-boss.api-key";
const PRIORITY_NAMES = [[1, "urgent"], [5, "high"], [10, "normal"], [20, "low"], [50, "batch"]];

function priorityLabel(p) {
  let label = "urgent";
  for (const [value, name] of PRIORITY_NAMES) {
    if (p >= value) label = name;
  }
  return `${label} (${p})`;
}

function seconds(s) {
  if (s < 60) return `${s.toFixed(1)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  return `${(s / 3600).toFixed(1)} h`;
}

function headers(extra) {
  const key = localStorage.getItem(KEY_STORE);
  const out = Object.assign({}, extra || {});
  if (key) out.Authorization = `Bearer ${key}`;
  return out;
}

class HttpError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function getJSON(path) {
  const r = await fetch(path, { headers: headers(), cache: "no-store" });
  if (!r.ok) {
    let message = `${path}: HTTP ${r.status}`;
    try {
      const body = await r.json();
      if (body && body.error && body.error.message) message = `${path}: ${body.error.message}`;
    } catch (_) { /* not JSON */ }
    throw new HttpError(r.status, message);
  }
  return r.json();
}

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "" : String(text);
  if (className) td.className = className;
  return td;
}

function fill(tableId, rows) {
  const body = document.querySelector(`#${tableId} tbody`);
  body.replaceChildren(...rows);
}

function row(cells, attrs) {
  const tr = document.createElement("tr");
  tr.append(...cells);
  for (const [k, v] of Object.entries(attrs || {})) tr.dataset[k] = v;
  return tr;
}

function renderSummary(health, gpu) {
  const parts = [
    `${health.models} models`,
    `${health.queue_depth} waiting`,
    `${health.running} running`,
    `ledger ${gpu.ledger}`,
  ];
  document.getElementById("summary").textContent = parts.join(" · ");
}

const HISTORY_POINTS = 150; // 5 minutes of 2 s samples
const history = new Map(); // pool -> [used_mb + foreign_mb, ...]
const SVG = "http://www.w3.org/2000/svg";

function remember(p) {
  const points = history.get(p.pool) || [];
  points.push(p.used_mb + p.foreign_mb);
  if (points.length > HISTORY_POINTS) points.shift();
  history.set(p.pool, points);
  return points;
}

function sparkline(points, capacity) {
  const width = 300;
  const height = 36;
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("class", "history-chart");
  svg.setAttribute("role", "img");
  const peak = Math.max(...points);
  svg.setAttribute("aria-label", `memory in use over the last ${points.length} samples, peak ${peak} MB`);
  const step = width / Math.max(1, HISTORY_POINTS - 1);
  const offset = (HISTORY_POINTS - points.length) * step;
  const coords = points.map((mb, i) => {
    const x = offset + i * step;
    const y = height - (capacity ? (height * mb) / capacity : 0);
    return `${x.toFixed(1)},${y.toFixed(1)}`;
  });
  const frame = document.createElementNS(SVG, "rect");
  frame.setAttribute("width", String(width));
  frame.setAttribute("height", String(height));
  const line = document.createElementNS(SVG, "polyline");
  line.setAttribute("points", coords.join(" "));
  svg.append(frame, line);
  const figure = document.createElement("div");
  figure.className = "history";
  const caption = document.createElement("span");
  caption.textContent = `in use over the last ${seconds((points.length * POLL_MS) / 1000)} (peak ${peak} MB)`;
  figure.append(svg, caption);
  return figure;
}

function renderPools(gpu) {
  const root = document.getElementById("pools");
  const blocks = gpu.pools.map((p) => {
    const div = document.createElement("div");
    div.className = "pool";
    div.dataset.pool = p.pool;
    const title = document.createElement("h3");
    title.textContent = `${p.pool}: ${p.used_mb} MB leased, ${p.foreign_mb} MB used outside the ledger, ${p.free_mb} MB free of ${p.capacity_mb} MB`;
    const bar = document.createElement("div");
    bar.className = "bar";
    bar.setAttribute("role", "img");
    bar.setAttribute("aria-label", title.textContent);
    for (const [cls, mb] of [["used", p.used_mb], ["foreign", p.foreign_mb]]) {
      const span = document.createElement("span");
      span.className = cls;
      span.style.width = `${p.capacity_mb ? (100 * mb) / p.capacity_mb : 0}%`;
      bar.append(span);
    }
    const table = document.createElement("table");
    table.className = "leases";
    const head = document.createElement("thead");
    head.append(row(["holder", "model", "MB", "priority", "token", "expires in", "asked back"].map((h) => {
      const th = document.createElement("th");
      th.textContent = h;
      return th;
    })));
    const body = document.createElement("tbody");
    const now = Date.now() / 1000;
    for (const l of p.leases) {
      const asked = l.preempt ? (l.preempt_reason || "yes") : "";
      body.append(row([
        cell(l.holder), cell(l.model_id || ""), cell(l.mb, "num"), cell(priorityLabel(l.priority)),
        cell(l.token, "num"), cell(seconds(Math.max(0, l.expires_at - now))), cell(asked, l.preempt ? "asked" : ""),
      ], { lease: l.id }));
    }
    for (const w of p.waiters) {
      body.append(row([
        cell(w.holder), cell("(waiting)"), cell(w.mb, "num"), cell(priorityLabel(w.priority)),
        cell(""), cell(""), cell(""),
      ], { waiter: w.id }));
    }
    table.append(head, body);
    div.append(title, bar, sparkline(remember(p), p.capacity_mb), table);
    return div;
  });
  root.replaceChildren(...blocks);
}

async function post(model, action, body) {
  const r = await fetch(`/v1/admin/models/${encodeURIComponent(model)}/${action}`, {
    method: "POST",
    headers: headers({ "Content-Type": "application/json" }),
    body: JSON.stringify(body || {}),
  });
  if (!r.ok) {
    const answer = await r.json().catch(() => ({}));
    showError(`${action} ${model}: ${(answer.error && answer.error.message) || `HTTP ${r.status}`}`);
    keepError = true;
    return false;
  }
  keepError = false;
  showError("");
  return true;
}

function actionButton(model, action) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = action;
  b.dataset.action = action;
  b.addEventListener("click", async () => {
    b.disabled = true;
    try {
      await post(model, action);
    } finally {
      refresh();
    }
  });
  return b;
}

const openForms = new Set(); // models whose overrides form is open (kept across refreshes)
const draft = new Map(); // "model/field" -> what the user typed so far

function overrideValue(text) {
  const trimmed = text.trim();
  if (trimmed === "true" || trimmed === "false") return trimmed === "true";
  const n = Number(trimmed);
  return trimmed !== "" && Number.isFinite(n) ? n : trimmed;
}

// The coordinator reports overrides as a manifest-entry patch: top-level keys, or keys of
// the backend's table (e.g. {"llama_server": {"parallel": 2}}).
function currentOverride(m, field) {
  const top = m.overrides[field];
  if (top !== undefined && (top === null || typeof top !== "object")) return top;
  for (const table of Object.values(m.overrides)) {
    if (table && typeof table === "object" && table[field] !== undefined) return table[field];
  }
  return undefined;
}

function overridesForm(m) {
  const form = document.createElement("form");
  form.className = "overrides";
  form.dataset.model = m.id;
  for (const field of m.capabilities.live_overrides) {
    const label = document.createElement("label");
    label.textContent = field;
    const input = document.createElement("input");
    input.name = field;
    input.size = 8;
    const key = `${m.id}/${field}`;
    const current = currentOverride(m, field);
    input.value = draft.has(key) ? draft.get(key) : current === undefined ? "" : String(current);
    input.addEventListener("input", () => draft.set(key, input.value));
    label.append(input);
    form.append(label);
  }
  const submit = document.createElement("button");
  submit.type = "submit";
  submit.textContent = "load with these";
  form.append(submit);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const overrides = {};
    for (const input of form.querySelectorAll("input")) {
      if (input.value.trim() !== "") overrides[input.name] = overrideValue(input.value);
    }
    submit.disabled = true;
    const ok = await post(m.id, "load", { overrides });
    if (ok) {
      openForms.delete(m.id);
      for (const field of m.capabilities.live_overrides) draft.delete(`${m.id}/${field}`);
    }
    refresh();
  });
  return form;
}

function mib(bytes) {
  return Math.round(bytes / 1048576);
}

// What the model's slots use (as last measured) and what their leases hold, in MiB;
// a model refused for using more than its lease says so, with the numbers.
function memoryUse(m) {
  if (m.overuse.refused) return m.overuse.refused;
  if (!m.leased_bytes) return "";
  const used = m.used_bytes === null ? "?" : String(mib(m.used_bytes));
  return `${used} / ${mib(m.leased_bytes)} MiB`;
}

function renderModels(admin) {
  fill("models", admin.models.map((m) => {
    const actions = document.createElement("td");
    const loaded = m.replicas.loaded > 0;
    actions.append(loaded ? actionButton(m.id, "unload") : actionButton(m.id, "load"));
    if (!loaded && m.capabilities.live_overrides.length) {
      const toggle = document.createElement("button");
      toggle.type = "button";
      toggle.dataset.action = "overrides";
      toggle.textContent = openForms.has(m.id) ? "hide settings" : "settings…";
      toggle.addEventListener("click", () => {
        if (openForms.has(m.id)) openForms.delete(m.id);
        else openForms.add(m.id);
        refresh();
      });
      actions.append(" ", toggle);
      if (openForms.has(m.id)) actions.append(overridesForm(m));
    }
    return row([
      cell(m.id), cell(m.backend), cell(m.state, `state-${m.state}`),
      cell(`${m.replicas.loaded}/${m.replicas.max}`, "num"), cell(m.queue.waiting, "num"),
      cell(m.queue.running, "num"), cell(m.footprint_mb, "num"), cell(memoryUse(m), m.overuse.refused ? "" : "num"),
      cell(m.pin ? "yes" : ""), actions,
    ], { model: m.id, state: m.state, refused: m.overuse.refused ? "overuse" : "" });
  }));
}

function renderQueue(queue) {
  fill("queue", queue.waiting.map((q) => row([
    cell(q.position, "num"), cell(q.model), cell(priorityLabel(q.priority)), cell(q.client),
    cell(seconds(q.age_s)),
  ], { request: q.request_id })));
  fill("running", queue.running.map((q) => row([
    cell(q.request_id), cell(q.model), cell(priorityLabel(q.priority)), cell(q.client),
    cell(seconds(q.running_s)),
  ], { request: q.request_id })));
}

function renderClients(requestors) {
  const now = Date.now() / 1000;
  fill("clients", requestors.clients.map((c) => row([
    cell(c.client_id), cell(c.requests, "num"), cell(c.errors, "num"), cell(c.rejected, "num"),
    cell(c.cancelled, "num"), cell(c.last_priority === null ? "" : priorityLabel(c.last_priority)),
    cell(c.last_seen ? `${seconds(Math.max(0, now - c.last_seen))} ago` : ""),
  ], { client: c.client_id })));
}

function showError(message) {
  const el = document.getElementById("error");
  el.textContent = message;
  el.hidden = !message;
}

// A models table for a key that may not call the admin API: what /v1/models shows
// (id, backend, state), without replicas, memory or the load/unload buttons.
function renderModelList(list) {
  fill("models", list.data.map((m) => row([
    cell(m.id), cell(m.backend), cell(m.state, `state-${m.state}`),
    cell(""), cell(""), cell(""), cell(""), cell(""), cell(""), cell(""),
  ], { model: m.id, state: m.state, readonly: "true" })));
}

// A panel's own note: what this key may not see there (empty: nothing to say).
function panelNote(id, message) {
  const el = document.getElementById(`${id}-note`);
  el.textContent = message;
  el.hidden = !message;
}

function refused(e) {
  return e instanceof HttpError && (e.status === 401 || e.status === 403);
}

// One endpoint's answer, or why it failed: a refused call fails its own panel only.
async function settle(path) {
  try {
    return { value: await getJSON(path), error: null };
  } catch (e) {
    return { value: null, error: e };
  }
}

function panelError(e) {
  return refused(e) ? `${e.message} (this key may not see it)` : `cannot load: ${e.message}`;
}

let timer = null;
let keepError = false; // an admin action's error stays until the next admin action

async function refresh() {
  clearTimeout(timer);
  try {
    const [health, gpu, admin, queue, requestors] = await Promise.all([
      settle("/health"), settle("/api/v1/gpu/status"), settle("/v1/admin/models"),
      settle("/v1/queue"), settle("/v1/requestors"),
    ]);
    let models = admin;
    let modelsNote = "";
    if (admin.error && refused(admin.error)) {
      models = await settle("/v1/models");
      modelsNote = "an admin key shows replicas, memory and the load/unload buttons";
    }
    if (health.value) renderSummary(health.value, gpu.value || { ledger: "?" });
    if (gpu.value) renderPools(gpu.value);
    panelNote("pools", gpu.error ? panelError(gpu.error) : "");
    // Not while someone types into a settings form: re-rendering would take their cursor.
    if (!document.activeElement || !document.activeElement.closest("#models form")) {
      if (admin.value) renderModels(admin.value);
      else if (models.value) renderModelList(models.value);
    }
    panelNote("models", models.error ? panelError(models.error) : modelsNote);
    if (queue.value) renderQueue(queue.value);
    panelNote("queue", queue.error ? panelError(queue.error) : "");
    if (requestors.value) renderClients(requestors.value);
    panelNote("clients", requestors.error ? panelError(requestors.error) : "");

    const results = [gpu, models, queue, requestors];
    const shown = results.filter((r) => r.value).length;
    const unreachable = [health, ...results].find((r) => r.error && !(r.error instanceof HttpError));
    if (unreachable) {
      showError(`cannot reach the coordinator: ${unreachable.error.message}`);
    } else if (shown === 0) {
      const first = results.find((r) => r.error).error;
      showError(`${first.message} — enter an API key (an admin key shows the models)`);
    } else if (!keepError) {
      showError("");
    }
    if (shown > 0) {
      document.getElementById("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
      document.body.dataset.loaded = "true";
    }
  } finally {
    timer = setTimeout(refresh, POLL_MS);
  }
}

document.getElementById("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = document.getElementById("api-key");
  if (input.value) localStorage.setItem(KEY_STORE, input.value);
  else localStorage.removeItem(KEY_STORE);
  input.value = "";
  refresh();
});

refresh();
