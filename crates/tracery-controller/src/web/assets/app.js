// Tracery web view: live updates (server-sent events), countdowns, and the breakpoint
// forms. Plain JavaScript, no build step: the controller embeds this file as is.
"use strict";

const tracery = (() => {
  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = v;
      else e.setAttribute(k, v);
    }
    for (const c of children) e.append(c);
    return e;
  }

  // The server's answer: JSON on success, its `error` message otherwise.
  async function call(method, url, body) {
    const opts = { method, headers: {}, credentials: "same-origin" };
    if (body !== undefined) {
      opts.headers["content-type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    const r = await fetch(url, opts);
    let j = null;
    try { j = await r.json(); } catch (_) { /* not JSON */ }
    if (!r.ok) throw new Error((j && j.error) || `${r.status} ${r.statusText}`);
    return j;
  }

  function base(path) { return (path || "").split("/").pop(); }
  function clock(iso) { return iso ? iso.slice(11, 23) + " UTC" : ""; }

  // --- live updates ---------------------------------------------------------
  const live = $("#live");
  function connect() {
    const es = new EventSource("/api/v1/events");
    es.addEventListener("hello", () => { live.textContent = "live"; live.className = "live on"; });
    es.onerror = () => { live.textContent = "reconnecting…"; live.className = "live off"; };
    es.addEventListener("snapshot", (m) => onSnapshot(JSON.parse(m.data)));
    for (const kind of ["freeze", "hold", "release"]) {
      es.addEventListener(kind, (m) => onTrace(kind, JSON.parse(m.data)));
    }
  }

  function onSnapshot(s) {
    const body = $("#snapshots");
    if (body) {
      const none = $("#no-snapshots");
      if (none) none.remove();
      const trace = s.trace_id
        ? el("a", { class: "mono", href: `/traces/${s.trace_id}`, text: s.trace_id.slice(0, 12) + "…" })
        : el("span", { class: "dim", text: "none" });
      const row = el("tr", { "data-snapshot": String(s.id), class: "new" },
        el("td", {}, el("a", { href: `/snapshots/${s.id}`, text: `#${s.id}` })),
        el("td", { text: clock(s.time) }),
        el("td", { text: String(s.breakpoint_id) }),
        el("td", {}, el("span", { class: "fn", text: s.function }), " ",
          el("span", { class: "loc", text: `${base(s.file)}:${s.line}` })),
        el("td", { text: `${s.pid}/${s.tid}` }),
        el("td", {}, trace));
      body.prepend(row);
    }
    for (const hits of $$(`[data-hits-of="${s.breakpoint_id}"]`)) {
      hits.textContent = String(Number(hits.textContent) + 1);
      hits.classList.add("bump");
    }
    document.dispatchEvent(new CustomEvent("tracery:snapshot", { detail: s }));
  }

  async function onTrace(kind, t) {
    document.dispatchEvent(new CustomEvent("tracery:trace", { detail: { kind, ...t } }));
    const list = $("#frozen-traces");
    if (!list) return;
    try {
      const all = await call("GET", "/api/v1/traces");
      list.replaceChildren(...all.frozen.map((f) => el("li", {},
        el("a", { class: "mono", href: `/traces/${f.trace_id}`, text: f.trace_id }), " ",
        el("span", { class: "tag held",
          text: `${f.frozen.threads.length} thread(s), ${f.frozen.messages.length} held message(s)` }),
        " deadline ", el("time", { "data-countdown": f.frozen.deadline || "" }))));
      const none = $("#no-frozen");
      if (none) none.hidden = all.frozen.length > 0;
      tick();
    } catch (_) { /* the next event tries again */ }
  }

  // --- countdowns -----------------------------------------------------------
  function tick() {
    for (const t of $$("time[data-countdown]")) {
      const at = Date.parse(t.dataset.countdown);
      if (isNaN(at)) { t.textContent = "unknown"; continue; }
      const s = Math.round((at - Date.now()) / 1000);
      const m = Math.floor(Math.abs(s) / 60), r = Math.abs(s) % 60;
      const text = m > 0 ? `${m}m ${String(r).padStart(2, "0")}s` : `${r}s`;
      t.textContent = s >= 0 ? text : `passed ${text} ago`;
      t.classList.toggle("late", s < 0);
    }
  }

  // --- breakpoints ----------------------------------------------------------
  // What `tracery-ctl breakpoint set` prints, from the same answer.
  function setText(b) {
    const lines = [`breakpoint ${b.id} set at ${b.location} on ${b.target}`];
    for (const a of b.armed || []) {
      const node = a.node || a.agent_id;
      if (a.error) lines.push(`  not armed on node ${node}, pid ${a.pid}: ${a.error}`);
      else if (a.probes === 0) lines.push(`  node ${node}: no process of the target runs there yet; it arms when one starts`);
      else if (a.pid === 0) lines.push(`  armed on node ${node} in the executable file (${a.probes} site${a.probes === 1 ? "" : "s"}): every process of the target that runs it is caught from its first instruction`);
      else lines.push(`  armed on node ${node}: pid ${a.pid} (${a.probes} site${a.probes === 1 ? "" : "s"})`);
    }
    for (const a of b.unanswered_agents || []) lines.push(`  agent ${a} has not answered yet`);
    return lines.join("\n");
  }

  function formBody(form) {
    const f = new FormData(form);
    const text = (k) => (f.get(k) || "").toString().trim();
    const body = { location: text("location") };
    const kind = text("target_kind"), target = text("target");
    body[kind] = kind === "pid" ? Number(target) : target;
    for (const k of ["when", "expire", "trace_id", "header", "freeze_timeout"]) {
      if (text(k)) body[k] = text(k);
    }
    for (const k of ["hits", "rate"]) if (text(k)) body[k] = Number(text(k));
    if (f.get("freeze")) body.freeze = true;
    const captures = text("captures").split("\n").map((c) => c.trim()).filter(Boolean);
    if (captures.length) body.captures = captures;
    return body;
  }

  function forms() {
    const form = $("#set-form");
    const shown = sessionStorage.getItem("tracery:set-message");
    if (shown && $("#set-message")) {
      $("#set-message").textContent = shown;
      $("#set-message").className = "message ok";
      sessionStorage.removeItem("tracery:set-message");
    }
    if (form) {
      form.addEventListener("submit", async (e) => {
        e.preventDefault();
        const out = $("#set-message");
        out.className = "message";
        out.textContent = "setting…";
        try {
          const b = await call("POST", "/api/v1/breakpoints", formBody(form));
          // Reload so the list shows it; the message survives the reload.
          sessionStorage.setItem("tracery:set-message", setText(b));
          location.reload();
        } catch (err) {
          out.className = "message error";
          out.textContent = err.message;
        }
      });
    }
    for (const button of $$("button[data-delete]")) {
      button.addEventListener("click", async () => {
        const id = button.dataset.delete;
        const out = $("#delete-message");
        try {
          const r = await call("DELETE", `/api/v1/breakpoints/${id}`);
          button.closest("tr").remove();
          out.className = "message ok";
          out.textContent = r.message;
        } catch (err) {
          out.className = "message error";
          out.textContent = err.message;
        }
      });
    }
    for (const b of $$("button[data-tree]")) {
      b.addEventListener("click", () => {
        for (const d of $$("details", b.closest("section"))) d.open = b.dataset.tree === "open";
      });
    }
  }

  connect();
  forms();
  tick();
  setInterval(tick, 1000);
  return { $, $$, el, call, base, clock };
})();
