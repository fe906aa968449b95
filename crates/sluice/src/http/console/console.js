// The Sluice console: one page, no libraries. Everything shown comes from the
// management API (docs/http-api.md) with the credentials typed into the login
// form; data reaches the page only through textContent, never as markup.
"use strict";

const $ = (sel) => document.querySelector(sel);

// --- the API -------------------------------------------------------------

const auth = {
  get: () => sessionStorage.getItem("sluice-auth"),
  set: (v) => (v ? sessionStorage.setItem("sluice-auth", v) : sessionStorage.removeItem("sluice-auth")),
};

class Unauthorized extends Error {}

function headers(extra) {
  const h = Object.assign({ "x-sluice-console": "1" }, extra || {});
  const a = auth.get();
  if (a) h.Authorization = a;
  return h;
}

async function api(method, path, body) {
  const init = { method, headers: headers(body === undefined ? {} : { "content-type": "application/json" }) };
  if (body !== undefined) init.body = JSON.stringify(body);
  const r = await fetch(path, init);
  if (r.status === 401) throw new Unauthorized("authentication required");
  const text = await r.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch (_) {
    data = { error: text };
  }
  if (!r.ok) throw new Error((data && data.error) || r.status + " " + r.statusText);
  return data;
}

// A Server-Sent Events stream read with fetch (EventSource cannot send the
// Authorization header). Calls onEvent(name, data) until stop() is called.
function stream(path, onEvent) {
  const ctl = new AbortController();
  (async () => {
    while (!ctl.signal.aborted) {
      try {
        const r = await fetch(path, { headers: headers(), signal: ctl.signal });
        if (r.status === 401) return loggedOut();
        if (!r.ok) throw new Error(r.status);
        const reader = r.body.getReader();
        const dec = new TextDecoder();
        let buf = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += dec.decode(value, { stream: true });
          let at;
          while ((at = buf.indexOf("\n\n")) >= 0) {
            const block = buf.slice(0, at);
            buf = buf.slice(at + 2);
            let name = "message";
            const data = [];
            for (const line of block.split("\n")) {
              if (line.startsWith("event:")) name = line.slice(6).trim();
              else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
            }
            if (data.length) onEvent(name, data.join("\n"));
          }
        }
      } catch (e) {
        if (ctl.signal.aborted) return;
      }
      // The stream ended (Sluice restarting, a network hiccup): reconnect.
      await new Promise((ok) => setTimeout(ok, 2000));
    }
  })();
  return { stop: () => ctl.abort() };
}

// --- small DOM helpers ----------------------------------------------------

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function fill(tbody, rows) {
  tbody.replaceChildren(...rows);
}

function shown(v) {
  if (v === null || v === undefined || v === "") return "—";
  return typeof v === "object" ? JSON.stringify(v) : String(v);
}

function fmt(n) {
  return Number(n || 0).toLocaleString("en-US");
}

function status(text, bad) {
  const s = $("#status");
  s.textContent = text;
  s.className = bad ? "error" : "";
}

function failed(e) {
  if (e instanceof Unauthorized) return loggedOut();
  status(String(e.message || e), true);
}

function formData(form) {
  const out = {};
  for (const [k, v] of new FormData(form).entries()) {
    const t = typeof v === "string" ? v.trim() : v;
    if (t !== "") out[k] = t;
  }
  return out;
}

// --- log in ---------------------------------------------------------------

async function tryIn() {
  try {
    await api("GET", "/v1/overview");
    return true;
  } catch (e) {
    if (e instanceof Unauthorized) return false;
    throw e;
  }
}

function loggedOut() {
  auth.set(null);
  stopPage();
  $("#nav").hidden = true;
  $("#logout").hidden = true;
  for (const p of document.querySelectorAll(".page")) p.hidden = true;
  $("#login").hidden = false;
}

$("#login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const f = formData(ev.target);
  if (f.token) auth.set("Bearer " + f.token);
  else auth.set("Basic " + btoa(unescape(encodeURIComponent((f.username || "") + ":" + (f.password || "")))));
  try {
    if (await tryIn()) {
      $("#login-error").textContent = "";
      return enter();
    }
    auth.set(null);
    $("#login-error").textContent = "Wrong user name, password or token.";
  } catch (e) {
    $("#login-error").textContent = String(e.message || e);
  }
});

$("#logout").addEventListener("click", loggedOut);

function enter() {
  $("#login").hidden = true;
  $("#nav").hidden = false;
  $("#logout").hidden = !auth.get();
  route();
}

// --- pages ------------------------------------------------------------------

let current = null; // { stop() } of the page shown

function stopPage() {
  if (current && current.stop) current.stop();
  current = null;
}

function route() {
  const name = (location.hash || "#overview").slice(1).split("/")[0];
  const page = pages[name] ? name : "overview";
  stopPage();
  for (const p of document.querySelectorAll(".page")) p.hidden = p.id !== "page-" + page;
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", a.dataset.page === page);
  status("");
  current = pages[page]() || null;
}

window.addEventListener("hashchange", () => {
  if (!$("#nav").hidden) route();
});

// Overview: cards, an SVG chart of the last hour, queues; live every second.
function overview() {
  let history = [];
  const render = (o) => {
    const t = o.totals || {};
    const last = o.last_second || {};
    const minute = history.slice(-60);
    const sum = (k) => minute.reduce((a, s) => a + (s[k] || 0), 0);
    const tried = sum("delivered") + sum("failed") + sum("retried");
    const errors = tried ? (100 * (sum("failed") + sum("retried"))) / tried : 0;
    const card = (label, value) => el("div", { class: "card" }, el("span", {}, label), el("b", {}, value));
    $("#cards").replaceChildren(
      card("received / s", fmt(last.received)),
      card("delivered / s", fmt(last.delivered)),
      card("errors, last minute", errors.toFixed(1) + " %"),
      card("in flight", fmt(o.in_flight)),
      card("connections in", fmt(o.connections && o.connections.inbound)),
      card("connections out", fmt(o.connections && o.connections.outbound)),
      card("received", fmt(t.received)),
      card("delivered", fmt(t.delivered)),
      card("failed", fmt(t.failed)),
      card("retried", fmt(t.retried)),
    );
    const queues = Array.isArray(o.queues) ? o.queues : [];
    fill(
      $("#queues tbody"),
      queues.map((q) => el("tr", {}, el("td", {}, q.name), el("td", {}, fmt(q.ready)), el("td", {}, fmt(q.delayed)), el("td", {}, fmt(q.leased)))),
    );
    $("#chart").replaceChildren(chart(history));
  };
  api("GET", "/v1/overview")
    .then((o) => {
      history = o.history || [];
      render(o);
    })
    .catch(failed);
  return stream("/v1/live", (name, data) => {
    if (name !== "overview") return;
    const o = JSON.parse(data);
    if (o.last_second && (!history.length || history[history.length - 1].t !== o.last_second.t)) {
      history.push(o.last_second);
      if (history.length > 3600) history.shift();
    }
    render(o);
  });
}

const SERIES = [
  ["received", "series-received"],
  ["delivered", "series-delivered"],
  ["failed", "series-failed"],
  ["retried", "series-retried"],
];

// A line per series over the last hour; x is time, y messages per second.
function chart(history) {
  const ns = "http://www.w3.org/2000/svg";
  const W = 900, H = 220, L = 50, B = 20;
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", "messages per second over the last hour");
  const add = (tag, attrs, text) => {
    const e = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    svg.append(e);
    return e;
  };
  const now = history.length ? history[history.length - 1].t : Math.floor(Date.now() / 1000);
  const max = Math.max(1, ...history.map((s) => Math.max(s.received, s.delivered, s.failed, s.retried)));
  const x = (t) => L + ((W - L - 10) * (3600 - (now - t))) / 3600;
  const y = (v) => H - B - ((H - B - 10) * v) / max;
  add("line", { x1: L, y1: H - B, x2: W - 10, y2: H - B, class: "axis" });
  add("line", { x1: L, y1: 10, x2: L, y2: H - B, class: "axis" });
  add("text", { x: L - 6, y: 16, class: "label", "text-anchor": "end" }, fmt(max));
  add("text", { x: L - 6, y: H - B, class: "label", "text-anchor": "end" }, "0");
  add("text", { x: L, y: H - 4, class: "label" }, "−60 min");
  add("text", { x: W - 10, y: H - 4, class: "label", "text-anchor": "end" }, "now");
  for (const [key, cls] of SERIES) {
    const pts = history.filter((s) => now - s.t < 3600).map((s) => `${x(s.t).toFixed(1)},${y(s[key]).toFixed(1)}`);
    if (pts.length) add("polyline", { points: pts.join(" "), class: "series " + cls });
  }
  let lx = L + 10;
  for (const [key, cls] of SERIES) {
    add("rect", { x: lx, y: 14, width: 10, height: 3, class: "legend " + cls });
    add("text", { x: lx + 14, y: 19, class: "label" }, key);
    lx += 90;
  }
  return svg;
}

// Destinations: the pause form, pauses in force, the busiest destinations
// with their limits; refreshed every 2 s.
function destinations() {
  let alive = true;
  const pauseBody = (p) => {
    const b = {};
    for (const k of ["mta", "domain", "ip", "tag"]) if (p[k]) b[k] = p[k];
    return b;
  };
  const refresh = async () => {
    try {
      const [pauses, dest] = await Promise.all([api("GET", "/v1/pauses"), api("GET", "/v1/destinations")]);
      fill(
        $("#pauses tbody"),
        pauses.map((p) =>
          el(
            "tr",
            {},
            el("td", {}, shown(p.domain)),
            el("td", {}, shown(p.mta)),
            el("td", {}, shown(p.ip)),
            el("td", {}, shown(p.tag)),
            el("td", {}, shown(p.expire)),
            el("td", {}, shown(p.reason)),
            el("td", {}, el("button", { type: "button", class: "resume", onclick: () => resume(pauseBody(p)) }, "Resume")),
          ),
        ),
      );
      fill(
        $("#destinations tbody"),
        dest.destinations.map((d) =>
          el(
            "tr",
            { class: d.paused ? "paused" : "" },
            el("td", {}, el("a", { href: "#destinations", onclick: () => limits(d.domain, d.localip) }, d.domain)),
            el("td", {}, shown(d.localip)),
            el("td", {}, fmt(d.open_connections)),
            el("td", {}, fmt(d.messages_last_minute)),
            el("td", {}, fmt(d.connections_last_minute)),
            el("td", {}, d.flood_effects.map((f) => el("div", {}, `${f.rule}: ` + (f.paused_seconds_left != null ? `paused ${f.paused_seconds_left} s` : `reduced ${shown(f.reduced_seconds_left)} s`)))),
            el("td", { class: "replies" }, d.recent_replies.map((r) => el("div", {}, `${r.code} ${r.status || ""} ${r.text}`))),
            el(
              "td",
              {},
              d.paused
                ? el("button", { type: "button", class: "resume", onclick: () => resume(pauseBody({ domain: d.domain, mta: d.localip })) }, "Resume")
                : el("button", { type: "button", class: "pause", onclick: () => pause({ domain: d.domain, mta: d.localip || undefined, reason: "paused from the console" }) }, "Pause"),
            ),
          ),
        ),
      );
      fill(
        $("#routes tbody"),
        dest.routes.map((r) => el("tr", {}, el("td", {}, r.route), el("td", {}, fmt(r.in_flight)))),
      );
    } catch (e) {
      failed(e);
    }
  };
  const pause = async (body) => {
    try {
      await api("POST", "/v1/pauses", body);
      status(`paused ${body.domain}`);
      refresh();
    } catch (e) {
      failed(e);
    }
  };
  const resume = async (body) => {
    try {
      const r = await api("DELETE", "/v1/pauses", body);
      status(`resumed ${body.domain || "all"} (${r.removed} pause${r.removed === 1 ? "" : "s"} removed)`);
      refresh();
    } catch (e) {
      failed(e);
    }
  };
  const limits = async (domain, from) => {
    try {
      const q = new URLSearchParams({ domain });
      if (from) q.set("from", from);
      const p = await api("GET", "/v1/policy?" + q);
      $("#limits").replaceChildren(
        el("h3", {}, `Limits for ${p.domain}` + (p.from ? ` from ${p.from}` : "")),
        el(
          "table",
          {},
          el("thead", {}, el("tr", {}, el("th", {}, "limit"), el("th", {}, "value"), el("th", {}, "set by"))),
          el("tbody", {}, Object.entries(p.limits).map(([k, v]) => el("tr", {}, el("td", {}, k), el("td", {}, shown(v.value)), el("td", {}, v.from)))),
        ),
      );
    } catch (e) {
      failed(e);
    }
  };
  $("#pause-form").onsubmit = (ev) => {
    ev.preventDefault();
    pause(formData(ev.target));
  };
  refresh();
  const timer = setInterval(() => alive && refresh(), 2000);
  return {
    stop: () => {
      alive = false;
      clearInterval(timer);
    },
  };
}

// Results: trace lookup, and the live stream of attempts with filters.
function results() {
  let live = null;
  let pending = [];
  let skipped = 0;
  const rows = $("#results tbody");
  const row = (r) => {
    const id = r["message-id"];
    return el(
      "tr",
      { class: "verdict-" + (r.verdict || "") },
      el("td", {}, shown(r.time)),
      el("td", {}, shown(r.recipient)),
      el("td", {}, shown(r.state)),
      el("td", {}, shown(r.result)),
      el("td", {}, shown(r.verdict)),
      el("td", {}, shown(r.code)),
      el("td", {}, shown(r.description)),
      el("td", {}, id ? el("a", { href: "#results", onclick: () => lookup(String(id)) }, String(id)) : "—"),
    );
  };
  // Results are drawn four times a second, the newest 500 only: a burst
  // costs the page a few row inserts, not one per result.
  const draw = () => {
    if (pending.length) {
      const fresh = pending.slice(-500).reverse().map(row);
      pending = [];
      rows.prepend(...fresh);
      while (rows.children.length > 500) rows.lastChild.remove();
    }
    $("#results-note").textContent = skipped ? `${fmt(skipped)} results not shown (more than 100 a second; filter to see them)` : "";
  };
  const timer = setInterval(draw, 250);
  const start = (filter) => {
    if (live) live.stop();
    rows.replaceChildren();
    pending = [];
    skipped = 0;
    const q = new URLSearchParams(filter);
    live = stream("/v1/results/live?" + q, (name, data) => {
      if (name === "result" && pending.push(JSON.parse(data)) > 500) pending.shift();
      else if (name === "skipped" || name === "lagged") skipped += Number(data) || 0;
    });
  };
  const lookup = async (key) => {
    try {
      const events = await api("GET", "/v1/trace/" + encodeURIComponent(key));
      $("#trace").replaceChildren(
        el("h3", {}, `Trace of ${key}`),
        events.length
          ? el(
              "ol",
              { class: "trace" },
              events.map((e) =>
                el(
                  "li",
                  { class: "event-" + e.event },
                  el("b", {}, `${shown(e.time || e.received)} ${e.event}`),
                  el("span", {}, " " + summary(e)),
                  el("details", {}, el("summary", {}, "all fields"), el("code", {}, JSON.stringify(e))),
                ),
              ),
            )
          : el("p", {}, "No events for this message-id or recipient."),
      );
    } catch (e) {
      failed(e);
    }
  };
  $("#lookup-form").onsubmit = (ev) => {
    ev.preventDefault();
    lookup(formData(ev.target).key || "");
  };
  $("#filter-form").onsubmit = (ev) => {
    ev.preventDefault();
    start(formData(ev.target));
  };
  start(formData($("#filter-form")));
  return {
    stop: () => {
      clearInterval(timer);
      if (live) live.stop();
    },
  };
}

// One line for a trace event, as `sluice trace` prints it.
function summary(e) {
  if (e.event === "received") {
    const c = e.connection || {};
    const how = e.http ? "http" : c["remote-ip"] ? "smtp" : "cli";
    return `via ${how}` + (c["remote-ip"] ? ` from ${c["remote-ip"]}` : "") + (c.helo ? ` (helo ${c.helo})` : "") + `, ${fmt(e.size)} bytes, for ${shown(e.recipient)}`;
  }
  const where = [e.mta && `MX ${e.mta}`, e.to && `at ${e.to}`, e.from && `from ${e.from}`].filter(Boolean).join(" ");
  const reply = [e.code, e.status, e.description].filter((x) => x !== undefined && x !== "").join(" ");
  const tls = e.cipher ? `, TLS ${typeof e.cipher === "object" ? JSON.stringify(e.cipher) : e.cipher}` : "";
  return `${e.attempt ? "#" + e.attempt + " " : ""}to ${shown(e.recipient)}${where ? " via " + where : ""}: ${e.state}/${e.result} ${reply}${tls} → ${shown(e.verdict)}`;
}

// Policy: every settings table, listed, added to, edited, deleted.
const RATE = "e.g. 120/min";
const TABLES = {
  capacity: { cols: ["localip", "domain", "message_rate", "connection_rate", "connections", "ip_message_rate", "ip_connection_rate", "ip_connections", "messages_per_connection", "idle_seconds", "queue_size"], hints: { message_rate: RATE, connection_rate: RATE, ip_message_rate: RATE, ip_connection_rate: RATE } },
  flood_responses: { cols: ["name", "type", "pattern", "domain", "localip", "threshold", "pause", "reduce", "message_rate", "connection_rate", "connections", "messages_per_connection"], hints: { type: "regex, fnmatch, substr or exact", threshold: "e.g. 5/min" } },
  pauses: { cols: ["domain", "mta", "ip", "tag", "expire", "reason"], mailerq: true, hints: { expire: "YYYY-MM-DD HH:MM:SS UTC" } },
  suppressions: { cols: ["type", "value", "code", "extended", "description"], mailerq: true, hints: { type: "address or domain" } },
  delegates: { cols: ["localip", "domain", "delegate"] },
  mtanames: { cols: ["localip", "name"] },
  dns: { cols: ["domain", "type", "value"], hints: { type: "mx or a" } },
  dkim_keys: { cols: ["domain", "selector", "privatekey", "headers", "expire"], shownCols: ["domain", "selector", "algorithm", "fingerprint", "headers", "expire"] },
  dkim_patterns: { cols: ["type", "pattern", "key"], hints: { key: "a dkim_keys id" } },
  locals: { cols: ["type", "pattern"] },
};
const NUMERIC = new Set(["connections", "ip_connections", "messages_per_connection", "idle_seconds", "queue_size", "pause", "reduce", "code", "key"]);

function policy() {
  const name = (location.hash.split("/")[1] || "capacity");
  const table = TABLES[name] ? name : "capacity";
  $("#tables").replaceChildren(...Object.keys(TABLES).map((t) => el("a", { href: `#policy/${t}`, class: t === table ? "active" : "" }, t)));
  const spec = TABLES[table];
  const path = "/v1/" + table;
  const view = $("#table-view");
  let editing = null;
  const toBody = (f) => {
    const b = {};
    for (const [k, v] of Object.entries(f)) b[k] = NUMERIC.has(k) && /^\d+$/.test(v) ? Number(v) : v;
    return b;
  };
  const show = async () => {
    let rows;
    try {
      rows = await api("GET", path);
    } catch (e) {
      return failed(e);
    }
    const cols = spec.shownCols || spec.cols;
    const form = el(
      "form",
      { id: "row-form", class: "grid" },
      el("h3", {}, editing ? `Edit ${table} row ${editing.id}` : `Add to ${table}`),
      spec.cols.map((c) =>
        el(
          "label",
          {},
          c,
          c === "privatekey"
            ? [el("textarea", { name: c, rows: 4, placeholder: editing ? "(unchanged)" : "PEM, or choose a file" }), el("input", { type: "file", accept: ".pem,.key,text/plain", onchange: readKey })]
            : el("input", { name: c, value: editing && editing[c] != null ? String(editing[c]) : "", placeholder: (spec.hints || {})[c] || "" }),
        ),
      ),
      el("button", { type: "submit" }, editing ? "Save" : "Add"),
      editing ? el("button", { type: "button", onclick: () => ((editing = null), show()) }, "Cancel") : null,
    );
    form.onsubmit = async (ev) => {
      ev.preventDefault();
      const body = toBody(formData(ev.target));
      try {
        if (editing && !spec.mailerq) await api("PUT", `${path}/${editing.id}`, body);
        else await api("POST", path, body);
        status(editing ? `saved ${table} row ${editing.id}` : `added to ${table}`);
        editing = null;
        show();
      } catch (e) {
        failed(e);
      }
    };
    const del = async (r) => {
      try {
        if (spec.mailerq) {
          const b = {};
          for (const c of spec.cols) if (r[c] !== undefined && c !== "expire" && c !== "reason" && c !== "code" && c !== "extended" && c !== "description") b[c] = r[c];
          await api("DELETE", path, b);
        } else await api("DELETE", `${path}/${r.id}`);
        status(`deleted ${table} row ${r.id}`);
        show();
      } catch (e) {
        failed(e);
      }
    };
    view.replaceChildren(
      el(
        "table",
        { id: "rows" },
        el("thead", {}, el("tr", {}, el("th", {}, "id"), cols.map((c) => el("th", {}, c)), el("th", {}, "problem"), el("th", {}, ""))),
        el(
          "tbody",
          {},
          rows.map((r) =>
            el(
              "tr",
              { class: r.problem ? "problem" : "" },
              el("td", {}, shown(r.id)),
              cols.map((c) => el("td", {}, shown(r[c]))),
              el("td", {}, shown(r.problem)),
              el(
                "td",
                {},
                el("button", { type: "button", onclick: () => ((editing = r), show()) }, "Edit"),
                el("button", { type: "button", class: "danger", onclick: () => del(r) }, "Delete"),
              ),
            ),
          ),
        ),
      ),
      form,
    );
  };
  show();
}

// A private key chosen as a file goes into the form's textarea, never
// anywhere else; it leaves the browser only in the POST to /v1/dkim_keys.
function readKey(ev) {
  const file = ev.target.files[0];
  if (!file) return;
  if (file.size > 16384) return status("a private key is at most 16 KB", true);
  file.text().then((t) => (ev.target.previousSibling.value = t));
}

function plugins() {
  api("GET", "/v1/plugins")
    .then((list) => {
      const rows = [];
      for (const p of list) {
        for (const h of p.hooks) {
          const mean = h.calls ? (1e6 * h.seconds) / h.calls : 0;
          rows.push(el("tr", {}, el("td", {}, p.name), el("td", {}, h.hook), el("td", {}, fmt(h.calls)), el("td", {}, h.seconds.toFixed(6)), el("td", {}, mean.toFixed(1))));
        }
        if (!p.hooks.length) rows.push(el("tr", {}, el("td", {}, p.name), el("td", { colspan: 4 }, "no hooks")));
      }
      if (!list.length) rows.push(el("tr", {}, el("td", { colspan: 5 }, "No plugins loaded (plugin-directory).")));
      fill($("#plugins tbody"), rows);
    })
    .catch(failed);
}

function instances() {
  api("GET", "/v1/instances")
    .then((list) => {
      $("#instances").replaceChildren(
        list.length
          ? el(
              "table",
              {},
              el("thead", {}, el("tr", {}, el("th", {}, "instance"), el("th", {}, "console"), el("th", {}, "version"), el("th", {}, "last seen"))),
              el(
                "tbody",
                {},
                list.map((i) =>
                  el(
                    "tr",
                    { class: i.self ? "self" : "" },
                    el("td", {}, i.hostname + (i.self ? " (this one)" : "")),
                    el("td", {}, i.console ? el("a", { href: i.console, rel: "noreferrer" }, i.console) : "—"),
                    el("td", {}, shown(i.version)),
                    el("td", {}, `${shown(i.seen_seconds_ago)} s ago`),
                  ),
                ),
              ),
            )
          : el("p", {}, "No instances."),
      );
    })
    .catch(failed);
}

const pages = { overview, destinations, results, policy, plugins, instances };

// Start: straight in when the API needs no credentials or the session has them.
tryIn()
  .then((ok) => (ok ? enter() : loggedOut()))
  .catch((e) => {
    loggedOut();
    $("#login-error").textContent = String(e.message || e);
  });
