// The status page: draws what /api/live sends (a picture of every watch
// when one is published, each event as it happens). Text goes in with
// textContent only, never as HTML. The token for actions stays in this
// tab (sessionStorage) and goes out only in an Authorization header.
"use strict";

const EVENTS_KEPT = 200;
const TOKEN_KEY = "supervisor-web-token";
let picture = null;
let skew = 0; // the daemon's clock minus ours, in seconds

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) {
    if (c !== null && c !== undefined) node.append(c);
  }
  return node;
}

function duration(secs) {
  if (secs === null || secs === undefined) return "";
  secs = Math.max(0, Math.floor(secs));
  const d = Math.floor(secs / 86400), h = Math.floor(secs / 3600) % 24;
  const m = Math.floor(secs / 60) % 60, s = secs % 60;
  if (d) return `${d}d${h}h`;
  if (h) return `${h}h${m}m`;
  if (m) return `${m}m${s}s`;
  return `${s}s`;
}

function bytes(n) {
  if (n === null || n === undefined) return "";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

function now() { return Date.now() / 1000 + skew; }

function ago(at) { return `${duration(now() - at)} ago`; }

function clock(at) {
  return new Date(at * 1000).toLocaleTimeString([], { hour12: false });
}

function sparkline(values) {
  const NS = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("width", "80");
  svg.setAttribute("height", "18");
  if (values.length > 1) {
    // Scaled to its own range, unless that range is noise (then flat).
    const lo = Math.min(...values), hi = Math.max(...values);
    const span = hi - lo > hi * 0.05 ? hi - lo : 0;
    const y = (v) => (span ? 17 - ((v - lo) / span) * 16 : 9);
    const points = values.map((v, i) => `${(i / (values.length - 1)) * 78 + 1},${y(v)}`).join(" ");
    const line = document.createElementNS(NS, "polyline");
    line.setAttribute("points", points);
    svg.append(line);
  }
  return svg;
}

function exitCell(e) {
  if (!e) return el("td", { class: "exit muted" }, "none");
  return el("td", { class: "exit" },
    el("div", {}, e.cause || e.status),
    el("div", { class: "when", "data-at": e.at }, `pid ${e.pid}, ${ago(e.at)}`));
}

function healthCell(h) {
  if (!h) return el("td", { class: "muted" }, "");
  if (h.ok === null) return el("td", { class: "muted" }, "not yet");
  const text = `${h.ok ? "passing" : "failing"} ${h.latency_ms.toFixed(1)} ms`;
  return el("td", { class: h.ok ? "good" : "bad", title: `${h.checks} checks, ${h.failures} failed` }, text);
}

function conditionsCell(cs) {
  return el("td", {}, ...cs.map((c) =>
    el("div", { class: c.fired ? "bad" : "" },
      `${c.condition} ${c.limit}${c.fired ? ` (fired ${c.fired}×)` : ""}`)));
}

// Kept across pictures, so that a button being pressed is never replaced.
const actionCells = new Map();

function actionCell(w) {
  if (actionCells.has(w.name)) return actionCells.get(w.name);
  const cell = el("td", { class: "act" });
  for (const verb of ["start", "stop", "restart"]) {
    const b = el("button", { type: "button", "data-action": verb, "data-watch": w.name }, verb);
    b.addEventListener("click", () => act(w.name, verb));
    cell.append(b);
  }
  actionCells.set(w.name, cell);
  return cell;
}

function row(w, actions) {
  const last = (xs) => (xs.length ? xs[xs.length - 1] : null);
  const state = w.backoff_secs ? `${w.state} (held back)` : w.state;
  const tr = el("tr", { "data-watch": w.name },
    el("td", { class: "name" }, w.name, w.group ? el("span", { class: "group" }, w.group) : null),
    el("td", { class: `state ${w.state}` }, state),
    el("td", { class: "pid num" }, w.pid === null ? "" : String(w.pid)),
    el("td", { class: "uptime num", "data-started": w.started_at ?? "" },
      w.started_at ? duration(now() - w.started_at) : ""),
    el("td", { class: "restarts num" }, String(w.restarts)),
    exitCell(w.last_exit),
    healthCell(w.health),
    conditionsCell(w.conditions),
    el("td", { class: "memory num" }, sparkline(w.memory), bytes(last(w.memory))),
    el("td", { class: "cpu num" }, sparkline(w.cpu_percent),
      last(w.cpu_percent) === null ? "" : `${last(w.cpu_percent).toFixed(1)}%`));
  if (actions) tr.append(actionCell(w));
  return tr;
}

function draw() {
  const p = picture;
  const d = p.daemon;
  $("daemon").textContent =
    `${d.watches} watches · exits seen by ${d.backend} · tracking ${d.tracking} · v${d.version}`;
  $("every").textContent = String(d.sample_every_secs);
  const warning = $("warning");
  warning.hidden = d.lost === 0;
  warning.textContent = d.lost ? `${d.lost} exit records lost by the backend (recovered by rescans)` : "";
  $("unlock").hidden = !p.actions;
  for (const th of document.querySelectorAll("th.act")) th.hidden = !p.actions;
  const names = new Set(p.watches.map((w) => w.name));
  for (const name of actionCells.keys()) if (!names.has(name)) actionCells.delete(name);
  const body = document.querySelector("#watches tbody");
  body.replaceChildren(...p.watches.map((w) => row(w, p.actions)));
}

function addEvent(e, atTop) {
  const list = $("events");
  const item = el("li", { "data-kind": e.kind, "data-watch": e.watch },
    el("span", { class: "at" }, clock(e.at)),
    el("span", { class: "kind" }, e.kind),
    el("span", { class: "name" }, e.watch),
    e.text);
  if (atTop) list.prepend(item); else list.append(item);
  while (list.children.length > EVENTS_KEPT) list.lastChild.remove();
}

function tick() {
  for (const cell of document.querySelectorAll("td.uptime")) {
    const started = parseFloat(cell.dataset.started);
    if (!Number.isNaN(started)) cell.textContent = duration(now() - started);
  }
  for (const when of document.querySelectorAll(".exit .when")) {
    const at = parseFloat(when.dataset.at);
    when.textContent = when.textContent.replace(/, .*$/, `, ${ago(at)}`);
  }
}

async function act(name, verb) {
  const said = $("said");
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (!token) {
    said.textContent = "Enter the web_token first.";
    $("token").focus();
    return;
  }
  said.textContent = `${verb} ${name}…`;
  try {
    const answer = await fetch(`/api/watches/${encodeURIComponent(name)}/${verb}`, {
      method: "POST",
      headers: { Authorization: `Bearer ${token}` },
      credentials: "omit",
    });
    const result = await answer.json();
    said.textContent = result.ok ? `${verb} ${name}: done` : `${verb} ${name}: ${result.error}`;
    if (answer.status === 401) sessionStorage.removeItem(TOKEN_KEY);
  } catch (e) {
    said.textContent = `${verb} ${name}: ${e}`;
  }
}

function connect() {
  const live = $("live");
  const source = new EventSource("/api/live");
  let first = true;
  source.onopen = () => { live.textContent = "live"; live.className = "live on"; };
  source.onerror = () => { live.textContent = "reconnecting"; live.className = "live off"; };
  source.addEventListener("page", (m) => {
    picture = JSON.parse(m.data);
    skew = picture.now - Date.now() / 1000;
    draw();
    if (first) {
      $("events").replaceChildren();
      for (const e of picture.events) addEvent(e, true);
      first = false;
    }
  });
  source.addEventListener("event", (m) => addEvent(JSON.parse(m.data), true));
  source.addEventListener("dropped", (m) => {
    source.close();
    live.textContent = "dropped";
    live.className = "live off";
    $("warning").hidden = false;
    $("warning").textContent = JSON.parse(m.data);
  });
}

$("unlock").addEventListener("submit", (e) => {
  e.preventDefault();
  const token = $("token").value.trim();
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  $("token").value = "";
  $("said").textContent = token ? "Token kept for this tab." : "";
});

connect();
setInterval(tick, 1000);
