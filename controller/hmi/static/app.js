// gridwarden HMI. Plain JS, no build step, no network beyond this controller.
// Live values come from /api/live (server-sent events); actions POST JSON with the
// session's CSRF token. Text is always set with textContent (never parsed as HTML).
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  let csrf = null;
  let account = null;
  let last = null;
  let lastAt = 0;
  let pendingAction = null;

  const fmt = (v, d = 1) => (v === null || v === undefined ? "—" : Number(v).toFixed(d));
  const set = (id, text) => { const el = $(id); if (el) el.textContent = text; };
  const clock = (ts) => (ts ? new Date(ts * 1000).toLocaleTimeString() : "—");
  const ago = (s) => (s === null || s === undefined ? "—" : s < 90 ? s.toFixed(0) + " s" : (s / 60).toFixed(0) + " min");

  // --- views ----------------------------------------------------------------------------
  function show() {
    const view = (location.hash || "#status").slice(1);
    for (const v of ["status", "log", "setup"]) {
      $("view-" + v).hidden = v !== view;
      const a = document.querySelector('nav a[data-view="' + v + '"]');
      if (a) a.classList.toggle("on", v === view);
    }
    if (view === "log") { loadTrend(); loadEvents(); }
    if (view === "setup") loadSetup();
  }
  window.addEventListener("hashchange", show);

  // --- live status ----------------------------------------------------------------------
  function bar(el, value, limit, trim) {
    if (!el) return;
    const full = limit ? limit * 1.2 : 1;
    const pct = value === null || !limit ? 0 : Math.max(0, Math.min(100, (100 * value) / full));
    el.style.width = pct + "%";
    el.className = value !== null && limit && value > limit ? "over" : value !== null && trim && value > trim ? "near" : "";
  }

  function render(st) {
    last = st;
    lastAt = Date.now();
    set("site", st.site.name || st.site.id);
    const state = $("state");
    state.textContent = st.state;
    state.className = "state s-" + st.state;
    set("reason", st.reason || st.state);
    set("scheme", st.scheme);
    const c = st.constraint;
    set("constraint-value", fmt(c.value));
    set("constraint-unit", c.unit + (c.phase ? " (L" + c.phase + ")" : ""));
    set("constraint-limit", fmt(c.limit) + " " + c.unit);
    set("constraint-trim", fmt(c.trim) + " " + c.unit);
    bar($("constraint-bar"), c.value, c.limit, c.trim);
    const mark = $("trim-mark");
    mark.style.left = c.trim && c.limit ? Math.min(100, (100 * c.trim) / (c.limit * 1.2)) + "%" : "0";
    renderPhases(st);
    const ev = st.ev_limit;
    set("ev-limit", fmt(ev.limit_kw));
    set("ev-sent", fmt(ev.sent_kw));
    set("ev-sent-at", ev.sent_at ? "at " + clock(ev.sent_at) + " (#" + ev.sequence + ")" : "never");
    set("ev-ack", st.cpo === null ? "no CPO link configured"
      : ev.sequence === null ? "—"
      : ev.acked_sequence === ev.sequence ? "acknowledged"
      : ev.acked_sequence === null ? "not acknowledged" : "acked #" + ev.acked_sequence + ", not the latest");
    set("demand", st.cpo ? fmt(st.cpo.demand_kw) : "—");
    set("demand-age", st.cpo ? ago(st.cpo.demand_age_s) : "—");
    set("cpo-link", st.cpo ? (st.cpo.reachable ? "up" : "DOWN") : "none");
    const br = st.breaker;
    set("breaker-status", br.status);
    set("breaker-wanted", br.wanted || "—");
    set("breaker-aux", br.aux || "—");
    $("central-card").hidden = !st.central;
    if (st.central) {
      set("central-state", st.central.connected ? "connected" : "DISCONNECTED");
      set("central-lease", st.central.lease_limit_kw === null ? "none"
        : fmt(st.central.lease_limit_kw) + " kW, " + fmt(st.central.lease_remaining_s, 0) + " s left");
    }
    const ul = $("alarms");
    ul.replaceChildren();
    for (const a of st.alarms) { const li = document.createElement("li"); li.textContent = a; ul.append(li); }
    if (!st.alarms.length) { const li = document.createElement("li"); li.className = "none"; li.textContent = "none"; ul.append(li); }
    set("unacked", st.unacked ? st.unacked + " to acknowledge" : "");
    set("updated", clock(st.wall_time));
    set("uptime", fmt(st.uptime_s, 0));
    set("tick-p99", fmt(st.tick.lateness_p99_ms, 2));
    $("btn-reset").disabled = false;
  }

  function renderPhases(st) {
    const box = $("phases");
    box.replaceChildren();
    const amps = st.meter && st.meter.currents_a;
    if (st.constraint.unit !== "A" || !amps) return;
    amps.forEach((a, i) => {
      const name = document.createElement("span"); name.textContent = "L" + (i + 1);
      const b = document.createElement("div"); b.className = "bar";
      const fill = document.createElement("i"); b.append(fill);
      bar(fill, a, st.constraint.limit, st.constraint.trim);
      const val = document.createElement("span"); val.textContent = fmt(a) + " A";
      box.append(name, b, val);
    });
  }

  function connect() {
    const es = new EventSource("/api/live");
    es.addEventListener("status", (e) => { try { render(JSON.parse(e.data)); } catch (err) { console.error(err); } });
    es.onerror = () => $("live").classList.remove("ok");
  }
  setInterval(() => $("live").classList.toggle("ok", Date.now() - lastAt < 3000), 1000);

  // --- session and actions --------------------------------------------------------------
  async function api(method, url, body) {
    const headers = { "Content-Type": "application/json" };
    if (csrf) headers["X-CSRF-Token"] = csrf;
    const resp = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: "same-origin" });
    let data = {};
    try { data = await resp.json(); } catch (e) { /* empty body */ }
    return { status: resp.status, data };
  }

  function setAccount(name, token) {
    account = name; csrf = token;
    $("btn-login").textContent = name ? "Log out " + name : "Log in";
  }

  async function refreshSession() {
    const r = await fetch("/api/session", { credentials: "same-origin" });
    const d = await r.json();
    setAccount(d.account, d.csrf);
  }

  function result(text, ok) {
    const el = $("action-result");
    el.textContent = text;
    el.className = "result " + (ok ? "ok" : "bad");
  }

  function askLogin(why, then) {
    pendingAction = then || null;
    set("login-why", why || "");
    set("login-error", "");
    $("login-password").value = "";
    $("login-dialog").showModal();
    $("login-account").focus();
  }

  $("login-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const r = await api("POST", "/api/login", { account: $("login-account").value, password: $("login-password").value });
    $("login-password").value = "";
    if (r.status !== 200) { set("login-error", r.data.error || "log-in failed (" + r.status + ")"); return; }
    setAccount(r.data.account, r.data.csrf);
    $("login-dialog").close();
    const then = pendingAction; pendingAction = null;
    if (then) then();
  });
  $("login-cancel").addEventListener("click", () => { pendingAction = null; $("login-dialog").close(); });
  $("btn-login").addEventListener("click", async () => {
    if (!account) { askLogin("", null); return; }
    await api("POST", "/api/logout", {});
    setAccount(null, null);
  });

  async function command(kind) {
    result(kind + "…", true);
    const r = await api("POST", "/api/command", { kind });
    if (r.status === 401 || (r.status === 403 && !account)) {
      result(kind + " refused: " + (r.data.error || "log in first"), false);
      setAccount(null, null);
      askLogin("Log in to " + kind.replace("_", " ") + ".", () => command(kind));
      return;
    }
    if (r.data.accepted === true) result(kind + ": accepted", true);
    else if (r.data.accepted === false) result(kind + " refused: " + r.data.reason, false);
    else result(kind + ": " + (r.data.reason || r.data.error || "status " + r.status), false);
    if (!$("view-log").hidden) loadEvents();
  }
  $("btn-reset").addEventListener("click", () => command("reset"));
  $("btn-maint-on").addEventListener("click", () => command("maintenance_on"));
  $("btn-maint-off").addEventListener("click", () => command("maintenance_off"));

  // --- trend and event log ------------------------------------------------------------
  let plot = null;
  async function loadTrend() {
    const r = await fetch("/api/trend?hours=24");
    const d = await r.json();
    const rows = d.rows;
    const t = rows.map((x) => x.minute * 60);
    const data = [t, rows.map((x) => x.constraint_avg), rows.map((x) => x.limit_avg),
      rows.map((x) => x.ev_limit_avg), rows.map((x) => x.ev_demand_avg)];
    const box = $("trend");
    const width = Math.max(280, box.clientWidth || 760);
    const unit = d.unit;
    const opts = {
      width, height: Math.min(260, Math.max(160, Math.round(window.innerHeight * 0.4))),
      scales: { x: { time: true } },
      series: [{},
        { label: "constraint " + unit, stroke: "#dc2626", width: 2, scale: unit },
        { label: "limit " + unit, stroke: "#111", dash: [6, 4], scale: unit },
        { label: "EV limit kW", stroke: "#2563eb", width: 2, scale: "kW" },
        { label: "EV demand kW", stroke: "#16a34a", scale: "kW" }],
      axes: [{}, { scale: unit, label: unit }, { scale: "kW", side: 1, label: "kW", grid: { show: false } }],
    };
    if (unit === "kW") { opts.axes.pop(); opts.axes[1].label = "kW"; }
    if (plot) plot.destroy();
    box.replaceChildren();
    if (!t.length) { box.textContent = "no trend yet: the first point appears after one full minute"; return; }
    plot = new uPlot(opts, data, box);
  }

  async function loadEvents() {
    const p = new URLSearchParams({ limit: "200" });
    if ($("f-severity").value) p.set("severity", $("f-severity").value);
    if ($("f-code").value.trim()) p.set("code", $("f-code").value.trim());
    if ($("f-unacked").checked) p.set("unacked", "1");
    const rows = await (await fetch("/api/events?" + p)).json();
    const tbody = $("event-table").tBodies[0];
    tbody.replaceChildren();
    for (const e of rows) {
      const tr = document.createElement("tr");
      tr.dataset.id = e.id;
      tr.dataset.code = e.code;
      const cells = [new Date(e.ts * 1000).toLocaleString(), e.severity, e.code, e.message];
      cells.forEach((text, i) => {
        const td = document.createElement("td"); td.textContent = text;
        if (i === 1) td.className = "sev-" + e.severity;
        tr.append(td);
      });
      const td = document.createElement("td");
      if (e.acked_by) td.textContent = e.acked_by;
      else if (e.severity !== "info") {
        const b = document.createElement("button"); b.type = "button"; b.textContent = "Ack";
        b.addEventListener("click", () => ack("/api/events/" + e.id + "/ack"));
        td.append(b);
      }
      tr.append(td);
      tbody.append(tr);
    }
  }

  async function ack(url) {
    const r = await api("POST", url, {});
    if (r.status === 401 || (r.status === 403 && !account)) { askLogin("Log in to acknowledge alarms.", () => ack(url)); return; }
    if (r.status !== 200) result("acknowledge refused: " + (r.data.error || r.status), false);
    loadEvents();
  }
  $("btn-ack-all").addEventListener("click", () => ack("/api/events/ack-all"));
  $("event-filter").addEventListener("submit", (e) => { e.preventDefault(); loadEvents(); });

  // --- commissioning --------------------------------------------------------------------
  function kvRows(tbody, obj, prefix) {
    for (const [k, v] of Object.entries(obj || {})) {
      if (v && typeof v === "object" && !Array.isArray(v)) { kvRows(tbody, v, prefix + k + "."); continue; }
      const tr = document.createElement("tr");
      const a = document.createElement("td"); a.textContent = prefix + k;
      const b = document.createElement("td"); b.textContent = Array.isArray(v) ? v.map((x) => fmt(x, 2)).join("  ") : v === null ? "—" : String(v);
      tr.append(a, b); tbody.append(tr);
    }
  }
  async function loadSetup() {
    const d = await (await fetch("/api/commissioning")).json();
    const m = $("meter-table").tBodies[0]; m.replaceChildren(); kvRows(m, d.meter || { meter: "no reading yet" }, "");
    const l = $("links-table").tBodies[0]; l.replaceChildren(); kvRows(l, d.links, "");
    set("config", JSON.stringify(d.config, null, 2));
  }

  refreshSession().catch(() => {});
  connect();
  show();
})();
