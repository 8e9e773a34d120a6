// The trace page: lanes per service/process, send->receive arrows, the critical path,
// the service graph, the details pane and the time slider, drawn from
// GET /api/v1/traces/{id}. The timeline is one SVG string set once: the browser lays out
// 2,000 events in a single pass.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const { $, $$, el, call, base } = tracery;
  const root = $("#trace");
  const id = root.dataset.trace;
  const LABEL_W = 190, LANE_H = 54, TOP = 26;
  const esc = (s) => String(s ?? "").replace(/[&<>"']/g,
    (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));

  let data = null, order = [], pos = new Map(), snapshots = new Map();

  const laneOf = (e) => `${e.service} · ${e.process}`;

  function layout(events) {
    // Causal order: Lamport first (send before its receive), then the lane's own clock.
    order = events.map((e, i) => [e, i]).sort(([a, i], [b, j]) =>
      (a.lamport - b.lamport) || (a.time_unix_nano - b.time_unix_nano) || (i - j)).map(([e]) => e);
    const lanes = [];
    for (const e of order) if (!lanes.includes(laneOf(e))) lanes.push(laneOf(e));
    const width = root.clientWidth - LABEL_W - 40;
    const dx = Math.max(14, Math.min(70, width / Math.max(1, order.length)));
    pos = new Map();
    order.forEach((e, step) => pos.set(e.id, {
      x: LABEL_W + 20 + step * dx, y: TOP + lanes.indexOf(laneOf(e)) * LANE_H + LANE_H / 2, step,
    }));
    return { lanes, dx };
  }

  function draw() {
    const events = data.events || [];
    const box = $("#timeline");
    if (!events.length) {
      box.innerHTML = '<p class="empty">No events recorded for this trace yet.</p>';
      $("#timeline-note").textContent = "";
      window.traceryRender = { events: 0, ms: performance.now() };
      return;
    }
    const { lanes, dx } = layout(events);
    const laneNames = new Map(order.map((e) => [laneOf(e), [e.service, e.process]]));
    const crit = new Set(data.critical_path || []);
    const critPairs = new Set();
    const cp = data.critical_path || [];
    for (let i = 1; i < cp.length; i++) critPairs.add(`${cp[i - 1]}>${cp[i]}`);
    const w = LABEL_W + 40 + order.length * dx, h = TOP + lanes.length * LANE_H + 10;
    const parts = [`<svg id="timeline-svg" xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}">`,
      '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" class="arrowhead"/></marker>',
      '<marker id="arrow-crit" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" class="arrowhead crit"/></marker></defs>'];
    lanes.forEach((lane, i) => {
      const y = TOP + i * LANE_H + LANE_H / 2;
      parts.push(`<rect class="lane-bg${i % 2 ? " odd" : ""}" x="0" y="${y - LANE_H / 2}" width="${w}" height="${LANE_H}"/>`,
        `<line class="lane" x1="${LABEL_W}" y1="${y}" x2="${w}" y2="${y}"/>`,
        `<text class="lane-label" x="10" y="${y - 3}">${esc(laneNames.get(lane)[0])}</text>`,
        `<text class="lane-sub" x="10" y="${y + 12}">${esc(laneNames.get(lane)[1])}</text>`);
    });
    // Critical path segments within a lane (receive -> work -> send).
    for (let i = 1; i < cp.length; i++) {
      const a = pos.get(cp[i - 1]), b = pos.get(cp[i]);
      if (a && b && a.y === b.y) parts.push(`<line class="crit-seg" x1="${a.x}" y1="${a.y}" x2="${b.x}" y2="${b.y}"/>`);
    }
    for (const edge of data.edges || []) {
      const a = pos.get(edge.from), b = pos.get(edge.to);
      if (!a || !b) continue;
      const c = critPairs.has(`${edge.from}>${edge.to}`);
      const mx = (a.x + b.x) / 2;
      parts.push(`<path class="edge${c ? " crit" : ""}" d="M${a.x},${a.y} C${mx},${a.y} ${mx},${b.y} ${b.x},${b.y}" marker-end="url(#${c ? "arrow-crit" : "arrow"})"/>`);
    }
    for (const e of order) {
      const p = pos.get(e.id);
      const cls = `ev ${e.kind}${e.held ? " held" : ""}${crit.has(e.id) ? " crit" : ""}`;
      parts.push(`<circle class="${cls}" data-id="${esc(e.id)}" cx="${p.x}" cy="${p.y}" r="${e.kind === "hit" ? 7 : 6}"><title>${esc(e.kind)} ${esc(e.label || e.conn || "")}</title></circle>`);
      if (e.held) parts.push(`<circle class="held-ring" cx="${p.x}" cy="${p.y}" r="11"/>`);
    }
    parts.push(`<rect id="future" class="future" x="${w}" y="0" width="0" height="${h}"/>`,
      `<line id="now" class="now" x1="0" y1="0" x2="0" y2="${h}"/>`, "</svg>");
    box.innerHTML = parts.join("");
    $("#timeline-note").textContent =
      `${count(order.length, "event")} · ${count(lanes.length, "lane")} · ` +
      `${count((data.edges || []).length, "send→receive arrow")}` +
      (data.source === "controller" ? " · hits and held messages (no message events reported)" : "");
    const slider = $("#step");
    slider.max = String(order.length - 1);
    slider.value = String(order.length - 1);
    graph(lanes);
    step(order.length - 1, false);
    window.traceryRender = { events: order.length, ms: performance.now() };
  }

  function graph(lanes) {
    let services = data.services || [];
    if (!services.length && (data.edges || []).length) {
      const byId = new Map(order.map((e) => [e.id, e]));
      const counts = new Map();
      for (const edge of data.edges) {
        const a = byId.get(edge.from), b = byId.get(edge.to);
        if (!a || !b || a.service === b.service) continue;
        const k = `${a.service}\u0000${b.service}`;
        counts.set(k, (counts.get(k) || 0) + 1);
      }
      services = Array.from(counts, ([k, count]) => { const [from, to] = k.split("\u0000"); return { from, to, count }; });
    }
    const box = $("#graph");
    const names = [];
    for (const s of services) for (const n of [s.from, s.to]) if (!names.includes(n)) names.push(n);
    if (!services.length) {
      const seen = [...new Set(order.map((e) => e.service))];
      box.innerHTML = `<p class="empty">No messages between services recorded. Services seen: ${esc(seen.join(", ") || "none")}.</p>`;
      return;
    }
    const W = 150, GAP = 70, H = 120;
    const x = (n) => 20 + names.indexOf(n) * (W + GAP);
    const parts = [`<svg id="graph-svg" xmlns="http://www.w3.org/2000/svg" width="${names.length * (W + GAP)}" height="${H + 60}">`,
      '<defs><marker id="garrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="8" markerHeight="8" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" class="arrowhead"/></marker></defs>'];
    services.forEach((s) => {
      const a = x(s.from), b = x(s.to), fwd = a < b;
      const y = fwd ? 40 : 110;
      const x1 = fwd ? a + W : a, x2 = fwd ? b : b + W;
      const bend = fwd ? -26 : 26;
      parts.push(`<path class="gedge" d="M${x1},${y} Q${(x1 + x2) / 2},${y + bend} ${x2},${y}" marker-end="url(#garrow)"/>`,
        `<text class="gcount" x="${(x1 + x2) / 2}" y="${y + bend / 2 + (fwd ? -4 : 12)}">${s.count}×</text>`);
    });
    for (const n of names) {
      parts.push(`<rect class="gnode" x="${x(n)}" y="55" width="${W}" height="40" rx="8"/>`,
        `<text class="gname" x="${x(n) + W / 2}" y="80">${esc(n)}</text>`);
    }
    parts.push("</svg>");
    box.innerHTML = parts.join("");
  }

  function details(e) {
    if (!e) return;
    const rows = [["kind", e.kind + (e.held ? " (held)" : "")], ["service", e.service], ["process", e.process],
      ["node", e.node], ["thread", e.thread], ["time", new Date(e.time_unix_nano / 1e6).toISOString() + ` (+${e.time_unix_nano % 1e6} ns)`],
      ["Lamport", e.lamport], ["vector clock", Object.entries(e.vclock || {}).map(([k, v]) => `${k}: ${v}`).join(", ")]];
    if (e.conn) rows.push(["connection", e.conn]);
    if (e.bytes !== undefined) rows.push(["bytes", e.bytes]);
    if (e.label) rows.push(["what", e.label]);
    const list = el("dl", { class: "facts" });
    for (const [k, v] of rows) list.append(el("dt", { text: k }), el("dd", { text: String(v ?? "") }));
    const box = $("#details");
    box.replaceChildren(el("h3", { text: `Event ${e.id}` }), list);
    if (e.snapshot_id !== undefined && e.snapshot_id !== null) {
      box.append(el("a", { href: `/snapshots/${e.snapshot_id}`, text: `snapshot #${e.snapshot_id} →` }));
    }
    for (const c of $$("circle.ev.selected")) c.classList.remove("selected");
    const c = $(`circle.ev[data-id="${e.id}"]`);
    if (c) c.classList.add("selected");
  }

  async function snapshot(sid) {
    if (!snapshots.has(sid)) snapshots.set(sid, call("GET", `/api/v1/snapshots/${sid}`).catch(() => null));
    return snapshots.get(sid);
  }

  function clip(s) {
    return s && s.length > 80 ? s.slice(0, 77) + "…" : s;
  }

  // Variables as they were at `at`: each lane's latest hit at or before that step.
  async function stateAt(at) {
    const latest = new Map();
    for (let i = 0; i <= at; i++) {
      const e = order[i];
      if (e.kind === "hit" && e.snapshot_id !== undefined && e.snapshot_id !== null) latest.set(laneOf(e), e);
    }
    const box = $("#state");
    const out = [el("h3", { text: `Variables as of step ${at + 1}` })];
    if (!latest.size) out.push(el("p", { class: "empty", text: "No hit yet at this step." }));
    for (const [lane, e] of latest) {
      const s = await snapshot(e.snapshot_id);
      if (Number($("#step").value) !== at) return;
      const list = el("ul", { class: "vars" });
      for (const v of (s && s.variables) || []) {
        list.append(el("li", {}, el("span", { class: "name", text: v.name }), " = ",
          el("span", { class: "value", text: clip(v.text ?? JSON.stringify(v.value)) })));
      }
      out.push(el("h4", {}, `${lane} · `, el("a", { href: `/snapshots/${e.snapshot_id}`, text: `#${e.snapshot_id}` })), list);
    }
    box.replaceChildren(...out);
  }

  function step(at, show = true) {
    const e = order[at];
    if (!e) return;
    const p = pos.get(e.id);
    const now = $("#now"), future = $("#future"), svg = $("#timeline-svg");
    now.setAttribute("x1", p.x + 8); now.setAttribute("x2", p.x + 8);
    future.setAttribute("x", p.x + 8);
    future.setAttribute("width", Math.max(0, Number(svg.getAttribute("width")) - p.x - 8));
    $("#step-label").textContent = `${at + 1} / ${order.length}: ${e.kind} in ${e.service}`;
    if (show) details(e);
    stateAt(at);
  }

  async function load() {
    data = await call("GET", `/api/v1/traces/${id}`);
    draw();
  }

  $("#timeline").addEventListener("click", (ev) => {
    const c = ev.target.closest("circle.ev");
    if (!c) return;
    const e = order.find((x) => String(x.id) === c.dataset.id);
    $("#step").value = String(pos.get(e.id).step);
    step(pos.get(e.id).step);
  });
  $("#step").addEventListener("input", (ev) => step(Number(ev.target.value)));

  const resume = $("#resume");
  if (resume) {
    resume.addEventListener("click", async () => {
      const out = $("#resume-message");
      resume.disabled = true;
      out.className = "message";
      out.textContent = "resuming…";
      try {
        const r = await call("POST", `/api/v1/traces/${id}/resume`);
        const held = r.held_released.reduce((n, h) => n + h.messages, 0);
        out.className = "message ok";
        out.textContent = r.resumed
          ? `resumed trace ${r.trace_id}: released ${r.released.length} thread(s)` + (held ? ` and ${held} held message(s)` : "")
          : `trace ${r.trace_id} was not frozen; nothing to resume`;
      } catch (err) {
        resume.disabled = false;
        out.className = "message error";
        out.textContent = err.message;
      }
    });
  }

  // Live: a new hit of this trace redraws; a freeze or release of it reloads the page.
  let pending = null;
  document.addEventListener("tracery:snapshot", (ev) => {
    if (ev.detail.trace_id !== id) return;
    clearTimeout(pending);
    pending = setTimeout(load, 200);
  });
  document.addEventListener("tracery:trace", (ev) => {
    if (ev.detail.trace_id !== id) return;
    if (ev.detail.kind === "release" && resume) {
      $("#resume-message").textContent += " · released; the request goes on";
      $("#frozen").classList.remove("frozen");
      return;
    }
    clearTimeout(pending);
    pending = setTimeout(() => location.reload(), 300);
  });

  load().catch((err) => { $("#timeline").replaceChildren(el("p", { class: "error", text: err.message })); });
});

// "1 lane", "3 lanes".
function count(n, noun) {
  return `${n} ${noun}${n === 1 ? "" : "s"}`;
}
