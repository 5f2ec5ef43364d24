// The Weir dashboard: draws the snapshots `/events` sends every half
// second. Rates and backpressure shares come from the difference between a
// snapshot and one about two seconds older.
"use strict";

const history = [];          // recent snapshots, oldest first
const cards = new Map();     // operator id -> its card's elements
const RATE_WINDOW_MS = 2000;

const $ = (selector, root = document) => root.querySelector(selector);
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value);
  }
  for (const child of children) node.append(child);
  return node;
}
function svg(tag, attrs = {}) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  return node;
}
function human(n) {
  if (n >= 1e6) return (n / 1e6).toFixed(2) + " M";
  if (n >= 1e3) return (n / 1e3).toFixed(1) + " K";
  return n >= 10 || n === 0 ? n.toFixed(0) : n.toFixed(1);
}
function bytes(n) {
  if (n >= 1 << 20) return (n / (1 << 20)).toFixed(1) + " MiB";
  if (n >= 1 << 10) return (n / (1 << 10)).toFixed(1) + " KiB";
  return n + " B";
}
function time(ms) { return new Date(ms).toLocaleTimeString(); }

// The snapshot to measure rates against: the newest one at least
// RATE_WINDOW_MS older than `now`, else the oldest.
function baseline(now) {
  let base = null;
  for (const snap of history) {
    if (snap === now) break;
    if (now.at_ms - snap.at_ms >= RATE_WINDOW_MS || base === null) base = snap;
    if (now.at_ms - snap.at_ms < RATE_WINDOW_MS) break;
  }
  return base;
}
function edgeKey(e) { return e.from + ">" + e.to + ">" + (e.output || ""); }

function render(snap) {
  history.push(snap);
  while (history.length > 12) history.shift();
  const base = baseline(snap);
  const seconds = base ? Math.max((snap.at_ms - base.at_ms) / 1000, 0.001) : null;
  renderTotals(snap, base, seconds);
  renderGraph(snap, base, seconds);
  renderOperators(snap, base, seconds);
  renderCheckpoint(snap);
  renderDeadLetters(snap);
}

function renderTotals(snap, base, seconds) {
  const read = snap.sources.reduce((sum, s) => sum + s.records, 0);
  let text = `${human(read)} read, ${human(snap.sink_records)} written, ${snap.dead_letters.count} dead letters`;
  if (base) {
    const before = base.sources.reduce((sum, s) => sum + s.records, 0);
    text += ` · ${human(Math.max(read - before, 0) / seconds)} records/s in`;
  }
  $("#totals").textContent = text;
}

function renderGraph(snap, base, seconds) {
  const g = snap.graph;
  const nodes = new Map();
  g.sources.forEach((name, i) => nodes.set("source:" + i, { kind: "source", label: name }));
  snap.operators.forEach(op => nodes.set("operator:" + op.id,
    { kind: "operator", label: op.id, detail: `v${op.version} · ×${op.parallelism}` }));
  g.sinks.forEach((label, i) => nodes.set("sink:" + i, { kind: "sink", label }));
  // Columns: sources, then operators by their distance from the sources, then sinks.
  const depth = new Map();
  for (const [id, node] of nodes) if (node.kind === "source") depth.set(id, 0);
  for (let round = 0; round < nodes.size; round++) {
    for (const e of g.edges) {
      if (depth.has(e.from) && nodes.get(e.to)?.kind === "operator") {
        depth.set(e.to, Math.max(depth.get(e.to) ?? 0, depth.get(e.from) + 1));
      }
    }
  }
  let deepest = 0;
  for (const [id, node] of nodes) {
    if (node.kind === "operator") {
      if (!depth.has(id)) depth.set(id, 1);
      deepest = Math.max(deepest, depth.get(id));
    }
  }
  for (const [id, node] of nodes) if (node.kind === "sink") depth.set(id, deepest + 1);
  const columns = [];
  for (const [id] of nodes) (columns[depth.get(id)] ||= []).push(id);
  const W = 190, H = 52, GAP_X = 120, GAP_Y = 26, PAD = 20;
  const tallest = Math.max(1, ...columns.map(c => (c || []).length));
  const width = PAD * 2 + columns.length * W + (columns.length - 1) * GAP_X;
  const height = PAD * 2 + tallest * H + (tallest - 1) * GAP_Y;
  const place = new Map();
  columns.forEach((column, x) => (column || []).forEach((id, y) => {
    const offset = (height - PAD * 2 - (column.length * H + (column.length - 1) * GAP_Y)) / 2;
    place.set(id, { x: PAD + x * (W + GAP_X), y: PAD + offset + y * (H + GAP_Y) });
  }));
  const root = svg("svg", { width, height, viewBox: `0 0 ${width} ${height}` });
  const before = new Map((base?.graph.edges || []).map(e => [edgeKey(e), e]));
  for (const e of g.edges) {
    const a = place.get(e.from), b = place.get(e.to);
    if (!a || !b) continue;
    const old = before.get(edgeKey(e));
    let rate = null, blocked = 0;
    if (old) {
      rate = Math.max(e.records - old.records, 0) / seconds;
      blocked = Math.max(e.blocked_ns - old.blocked_ns, 0) / (seconds * 1e9 * Math.max(e.senders, 1));
    }
    const colour = blocked >= 0.5 ? "var(--bad)" : blocked >= 0.1 ? "var(--warn)" : "var(--ok)";
    const x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2, mx = (x1 + x2) / 2;
    const group = svg("g", { class: "edge", "data-from": e.from, "data-to": e.to });
    group.append(svg("path", { d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}`, stroke: colour }));
    const label = svg("text", { x: mx, y: (y1 + y2) / 2 - 7, "text-anchor": "middle", fill: colour, class: "edge-rate" });
    const output = e.output && e.output !== "out" ? ` (${e.output})` : "";
    label.textContent = (rate === null ? "…" : `${human(rate)}/s`) + output;
    label.dataset.rate = rate === null ? "" : String(rate);
    const title = svg("title");
    title.textContent = `${human(e.records)} records; blocked ${(blocked * 100).toFixed(0)}% of the time`;
    group.append(label, title);
    root.append(group);
  }
  for (const [id, node] of nodes) {
    const p = place.get(id);
    const group = svg("g", { class: `node ${node.kind}`, "data-id": id, transform: `translate(${p.x},${p.y})` });
    group.append(svg("rect", { width: W, height: H }));
    const kind = svg("text", { x: 10, y: 17, class: "kind" });
    kind.textContent = node.kind + (node.detail ? " · " + node.detail : "");
    const label = svg("text", { x: 10, y: 38, class: "label" });
    label.textContent = node.label.length > 26 ? "…" + node.label.slice(-25) : node.label;
    group.append(kind, label);
    root.append(group);
  }
  $("#graph").replaceChildren(root);
}

function operatorCard(id) {
  const result = el("span", { class: "result" });
  const file = el("input", { type: "file", accept: ".wasm", name: "component" });
  const post = async (what, body) => {
    result.className = "result";
    result.textContent = what === "deploy" ? "deploying…" : "rolling back…";
    try {
      const response = await fetch(`/v1/operators/${encodeURIComponent(id)}/${what}`, { method: "POST", body });
      const answer = await response.json();
      if (response.ok) {
        result.textContent = `version ${answer.version} replaced version ${answer.replaced} in ${answer.deploy_ms.toFixed(1)} ms`;
      } else {
        result.className = "result error";
        result.textContent = `refused: ${answer.error}`;
      }
    } catch (e) {
      result.className = "result error";
      result.textContent = `failed: ${e}`;
    }
  };
  const form = el("form", { class: "deploy", onsubmit: event => {
    event.preventDefault();
    if (file.files.length === 0) { result.textContent = "choose a .wasm file first"; return; }
    post("deploy", file.files[0]);
  } }, file, el("button", { type: "submit" }, "Deploy"));
  const rollback = el("button", { type: "button", class: "secondary rollback", onclick: () => post("rollback") }, "Roll back");
  const card = el("div", { class: "operator", "data-id": id },
    el("h3", {}, el("span", { class: "name" }, id), el("span", { class: "version" }), el("span", { class: "paused" })),
    el("div", { class: "stats" }),
    el("table", { class: "versions" },
      el("thead", {}, el("tr", {}, ...["version", "deployed", "hash", "state", "origin"].map(h => el("th", {}, h)))),
      el("tbody")),
    el("div", { class: "refusals" }),
    el("div", { class: "actions" }, form, rollback, result));
  $("#operators").append(card);
  return card;
}

function renderOperators(snap, base, seconds) {
  for (const op of snap.operators) {
    let card = cards.get(op.id);
    if (!card) { card = operatorCard(op.id); cards.set(op.id, card); }
    $(".version", card).textContent = "v" + op.version;
    $(".paused", card).textContent = op.paused ? "paused (weir resume " + op.id + ")" : "";
    const old = base?.operators.find(o => o.id === op.id);
    const rate = field => old ? human(Math.max(op[field] - old[field], 0) / seconds) + "/s" : "…";
    const stat = (name, value) => el("div", {}, el("span", {}, name), value);
    $(".stats", card).replaceChildren(
      stat("in", rate("records_in")), stat("out", rate("records_out")),
      stat("records in", human(op.records_in)), stat("records out", human(op.records_out)),
      stat("state keys", human(op.state_keys)), stat("dead letters", String(op.dead_letters)),
      stat("failures", String(op.failures)), stat("code", op.tier));
    $(".versions tbody", card).replaceChildren(...op.versions.slice().reverse().map(v =>
      el("tr", { class: v.version === op.version ? "active" : "" },
        el("td", {}, "v" + v.version), el("td", {}, v.deployed_at.replace("T", " ").replace("Z", "")),
        el("td", { class: "hash", title: v.content_hash }, v.content_hash.slice(0, 12)),
        el("td", {}, String(v.state_version)), el("td", {}, v.origin))));
    $(".refusals", card).replaceChildren(...op.refusals.slice().reverse().map(r =>
      el("div", { class: "refusal" },
        el("div", {}, `refused at ${r.at.replace("T", " ").replace("Z", "")} (${r.origin})`),
        el("div", { class: "reason" }, r.reason))));
  }
}

function renderCheckpoint(snap) {
  const c = snap.checkpoint;
  const box = $("#checkpoint");
  if (!snap.checkpoints) { box.textContent = "this run takes no checkpoints (it reads standard input)"; return; }
  if (!c) { box.textContent = "none yet"; return; }
  box.replaceChildren(
    el("div", {}, el("strong", { class: "checkpoint-id" }, `#${c.id}`), ` completed ${c.age_s.toFixed(1)} s ago`),
    el("div", {}, `took ${c.duration_ms.toFixed(1)} ms, ${bytes(c.bytes)} of state`),
    el("div", { class: "count" }, c.path));
}

function renderDeadLetters(snap) {
  $("#dead-count").textContent = `(${snap.dead_letters.count} in all; the latest ${snap.dead_letters.recent.length})`;
  $("#dead-letters tbody").replaceChildren(...snap.dead_letters.recent.map(d =>
    el("tr", {},
      el("td", {}, String(d.number)), el("td", {}, time(d.at_ms)),
      el("td", {}, `${d.source}:${d.line}`),
      el("td", {}, d.operator ? `${d.operator}@v${d.version}` : ""),
      el("td", { class: "reason" }, d.reason),
      el("td", { class: "raw", title: d.raw }, d.raw))));
}

function connect() {
  const status = $("#connection");
  const events = new EventSource("/events");
  events.onopen = () => { status.textContent = "live"; status.className = "connection live"; };
  events.onmessage = message => render(JSON.parse(message.data));
  events.onerror = () => { status.textContent = "disconnected (retrying)"; status.className = "connection lost"; };
}
connect();
