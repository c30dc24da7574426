// The operator page: GraphQL over HTTP for snapshots, graphql-transport-ws for live updates.
const $ = (sel) => document.querySelector(sel);
const state = { token: sessionStorage.getItem("skyops.token"), user: null, muted: false, alarms: new Map(),
                values: new Map(), trendPoint: null, trendHours: 1, lastAlarmSeq: null, lastLogSeq: null };

function unwrap(body) {
  if (body.errors) throw new Error(body.errors.map((e) => e.message).join("; "));
  return body.data;
}

async function post(query, variables = {}) {
  const headers = { "Content-Type": "application/json" };
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  const r = await fetch("/graphql", { method: "POST", headers, body: JSON.stringify({ query, variables }) });
  return r.json();
}

const gql = async (query, variables = {}) => unwrap(await post(query, variables));

// --- graphql-transport-ws: reconnects with backoff; alarm and log streams resume from their last sequence ---
class Live {
  constructor(onStatus) { this.ops = new Map(); this.next = 1; this.onStatus = onStatus; this.backoff = 500; }
  connect() {
    const proto = location.protocol === "https:" ? "wss" : "ws";
    this.ws = new WebSocket(`${proto}://${location.host}/graphql`, "graphql-transport-ws");
    this.ws.onopen = () => this.ws.send(JSON.stringify({ type: "connection_init", payload: { token: state.token } }));
    this.ws.onmessage = (ev) => this.message(JSON.parse(ev.data));
    this.ws.onclose = (ev) => {
      this.onStatus(false);
      if (ev.code === 4403) { logout("session expired: log in again"); return; }
      setTimeout(() => this.connect(), this.backoff);
      this.backoff = Math.min(this.backoff * 2, 10000);
    };
  }
  message(msg) {
    if (msg.type === "connection_ack") {
      this.onStatus(true); this.backoff = 500;
      for (const [id, op] of this.ops) this.send(id, op);
    } else if (msg.type === "ping") {
      this.ws.send(JSON.stringify({ type: "pong" }));
    } else if (msg.type === "next") {
      this.ops.get(msg.id)?.onData(msg.payload.data);
    } else if (msg.type === "error") {
      console.error("subscription error", msg.payload);
    }
  }
  send(id, op) {
    if (this.ws?.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify({ id, type: "subscribe", payload: { query: op.query, variables: op.variables() } }));
    }
  }
  subscribe(query, variables, onData) {
    const id = String(this.next++);
    const op = { query, variables, onData };
    this.ops.set(id, op); this.send(id, op);
    return id;
  }
  unsubscribe(id) {
    this.ops.delete(id);
    if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify({ id, type: "complete" }));
  }
}

// --- annunciation: a tone for every new or escalated CRITICAL alarm, unless muted ---
let audio = null;
function annunciate() {
  if (state.muted) return;
  audio = audio || new AudioContext();
  for (const [i, f] of [[0, 880], [0.25, 660], [0.5, 880]]) {
    const o = audio.createOscillator(); const g = audio.createGain();
    o.frequency.value = f; g.gain.value = 0.2; o.connect(g); g.connect(audio.destination);
    o.start(audio.currentTime + i); o.stop(audio.currentTime + i + 0.2);
  }
}

const SEVERITY_RANK = { NONE: 0, WARNING: 1, SERIOUS: 2, CRITICAL: 3 };
const fmtTime = (iso) => (iso || "").replace("T", " ").slice(0, 19);
const esc = (text) => String(text).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);

const BOOT = window.SKYOPS_BOOT;

function setAlarms(body) {
  try {
    const list = unwrap(body).alarms;
    state.alarms = new Map(list.map((a) => [a.alarmId, { ...a, time: a.changed }]));
    state.alarmService = true;
  } catch (e) { state.alarmService = false; }   // an HMI without the alarm service shows events only
  renderAlarms();
}

const refreshAlarms = async () => setAlarms(await post(BOOT.queries.alarms));

function onAlarm(event) {
  const prev = state.alarms.get(event.alarmId);
  const rose = !prev || SEVERITY_RANK[event.severity] > SEVERITY_RANK[prev.severity];
  if (event.severity === "CRITICAL" && rose && !event.acked) annunciate();
  if (state.alarmService) { refreshAlarms(); return; }
  state.alarms.set(event.alarmId, { ...prev, ...event, status: event.state });
  renderAlarms();
}

async function alarmAction(a, action) {
  const comment = prompt(`${action} ${a.alarmId}: comment (required)`);
  if (!comment) return;
  const calls = {
    ack: ["mutation($i: String!, $c: String!, $s: String) { ackAlarm(alarmId: $i, comment: $c, seenSeverity: $s) { acked } }",
          { i: a.alarmId, c: comment, s: a.severity }],
    shelve: ["mutation($i: String!, $c: String!) { shelveAlarm(alarmId: $i, comment: $c, hours: 1) { status } }",
             { i: a.alarmId, c: comment }],
    unshelve: ["mutation($i: String!, $c: String!) { unshelveAlarm(alarmId: $i, comment: $c) { status } }",
               { i: a.alarmId, c: comment }],
    comment: ["mutation($i: String!, $c: String!) { commentAlarm(alarmId: $i, comment: $c) { status } }",
              { i: a.alarmId, c: comment }],
  };
  try { await gql(...calls[action]); $("#alarm-error").textContent = ""; }
  catch (e) { $("#alarm-error").textContent = `${a.alarmId}: ${e.message}`; }
  await refreshAlarms();
}

function renderAlarms() {
  const rows = [...state.alarms.values()].sort((a, b) =>
    SEVERITY_RANK[b.severity] - SEVERITY_RANK[a.severity] || (b.time || "").localeCompare(a.time || ""));
  const body = $("#alarm-rows");
  body.replaceChildren();
  const active = rows.filter((a) => a.severity !== "NONE").length;
  $("#alarm-count").textContent = `${active} active`;
  if (!rows.length) {
    body.innerHTML = '<tr class="empty"><td colspan="6">no alarms</td></tr>';
    return;
  }
  for (const a of rows) {
    const tr = document.createElement("tr");
    tr.className = `sev-${a.severity}${a.acked ? "" : " unacked"}`;
    tr.dataset.alarm = a.alarmId;
    const status = a.shelvedUntil ? `SHELVED until ${fmtTime(a.shelvedUntil).slice(11, 16)}` : (a.status || a.state || "");
    for (const text of [a.severity, a.alarmId, status, a.reason, fmtTime(a.time || "")]) {
      const td = document.createElement("td"); td.textContent = text; tr.append(td);
    }
    if (a.guidance) tr.title = `guidance: ${a.guidance}${a.consequence && a.consequence !== "none" ? ` · plan: ${a.consequence}` : ""}`;
    const actions = document.createElement("td"); actions.className = "actions";
    if (state.alarmService) {
      const can = (acts) => ["ADMINISTRATOR", "OPERATOR"].includes(state.user.group) ? acts : [];
      const acts = can([!a.acked && a.severity !== "NONE" ? "ack" : null, a.shelvedUntil ? "unshelve" : "shelve"]);
      for (const act of [...acts, "comment"].filter(Boolean)) {
        const b = document.createElement("button"); b.type = "button"; b.textContent = act;
        b.dataset.action = act; b.onclick = () => alarmAction(a, act); actions.append(b);
      }
    } else if (a.acked) {
      actions.textContent = `acked by ${a.user ?? "?"}`;
    }
    tr.append(actions);
    body.append(tr);
  }
}

// --- live values and trends ---
const GROUPS = { weather: (p) => p.startsWith("lasilla."), telescope: (p) => p.startsWith("ntt.") };

function renderValue(v) {
  const group = Object.keys(GROUPS).find((g) => GROUPS[g](v.point));
  if (!group) return;
  const box = document.querySelector(`.values[data-group="${group}"]`);
  let el = box.querySelector(`[data-point="${CSS.escape(v.point)}"]`);
  if (!el) {
    el = document.createElement("div"); el.className = "value"; el.dataset.point = v.point;
    el.innerHTML = '<div class="name"></div><div class="v"></div>';
    el.querySelector(".name").textContent = v.point.split(".").slice(1).join(".");
    el.onclick = () => showTrend(v.point);
    const items = [...box.children, el].sort((a, b) => a.dataset.point.localeCompare(b.dataset.point));
    box.replaceChildren(...items);
  }
  const shown = v.value === null ? "—" : typeof v.value === "number" ? v.value.toFixed(2) : String(v.value);
  el.querySelector(".v").textContent = shown;
  el.classList.toggle("bad", v.quality === "BAD");
  el.title = `${v.point} · ${v.quality}${v.time ? " · " + fmtTime(v.time) : ""}`;
}

async function showTrend(point) {
  state.trendPoint = point;
  document.querySelectorAll(".value").forEach((e) => e.classList.toggle("selected", e.dataset.point === point));
  const end = new Date(); const start = new Date(end - state.trendHours * 3600e3);
  $("#trend-title").textContent = `${point} · last ${state.trendHours} h`;
  try {
    const d = await gql(`query($p: [String!]!, $s: DateTime!, $e: DateTime!) {
      timeSeries(points: $p, start: $s, end: $e, maxPoints: 500) { times mean min max resolution } }`,
      { p: [point], s: start.toISOString(), e: end.toISOString() });
    drawTrend(d.timeSeries[0], start, end);
  } catch (e) { $("#trend-note").textContent = e.message; }
}

function drawTrend(ts, start, end) {
  const svg = $("#trend-plot"); const W = 1000, H = 220, pad = 24;
  const vals = ts.min.concat(ts.max).filter((v) => v !== null);
  if (!vals.length) { svg.replaceChildren(); $("#trend-note").textContent = "no data in this range"; return; }
  let lo = Math.min(...vals), hi = Math.max(...vals); if (hi === lo) { hi += 1; lo -= 1; }
  const x = (t) => pad + (W - 2 * pad) * (new Date(t) - start) / (end - start);
  const y = (v) => H - pad - (H - 2 * pad) * (v - lo) / (hi - lo);
  let band = "", line = "", pen = false;
  ts.times.forEach((t, i) => {
    if (ts.mean[i] === null) { pen = false; return; }   // gaps stay gaps
    line += `${pen ? "L" : "M"}${x(t).toFixed(1)},${y(ts.mean[i]).toFixed(1)} `; pen = true;
    band += `<rect class="band" x="${x(t).toFixed(1)}" y="${y(ts.max[i]).toFixed(1)}" width="2"
             height="${Math.max(1, y(ts.min[i]) - y(ts.max[i])).toFixed(1)}"/>`;
  });
  svg.innerHTML = `${band}<path class="mean" d="${line}"/>
    <text x="4" y="14">${hi.toFixed(2)}</text><text x="4" y="${H - 6}">${lo.toFixed(2)}</text>`;
  $("#trend-note").textContent = `${ts.times.length} bins from ${ts.resolution} data; bands show min–max`;
}

// --- night timeline ---
const PLAN_FIELDS = `seq planId night created reason triggerAlarm triggerKind triggerUser
  blocks { obId name targetName obType priority start end }`;
state.history = [];   // this night's plan versions: the triggered ones are the re-plan markers

function highlightAlarm(alarmId) {
  showView("ops");
  document.querySelectorAll("#alarm-rows tr").forEach((tr) => tr.classList.toggle("highlight", tr.dataset.alarm === alarmId));
}

function renderPlan(plan) {
  state.plan = plan;
  const svg = $("#plan-timeline"); const W = 1000, H = 120;
  if (!plan) { svg.replaceChildren(); $("#plan-note").textContent = "no plan published yet"; return; }
  // An empty plan (e.g. the dome closed) still shows the hours around now, with the re-plan that emptied it.
  const empty = !plan.blocks.length;
  const t0 = empty ? Date.now() - 2 * 3600e3 : new Date(plan.blocks[0].start) - 15 * 60e3;
  const t1 = empty ? Date.now() + 2 * 3600e3 : new Date(plan.blocks[plan.blocks.length - 1].end).getTime() + 15 * 60e3;
  const x = (t) => (W * (new Date(t) - t0) / (t1 - t0)).toFixed(1);
  let out = "";
  plan.blocks.forEach((b, i) => {
    const kind = b.obType === "ToO" ? "TOO" : ["CTOB", "FUOB", "ESO"].includes(b.obType) ? b.obType : "other";
    out += `<rect class="ob ${kind}" data-ob="${esc(b.obId)}" x="${x(b.start)}" y="${20 + (i % 3) * 28}"
             width="${Math.max(1, x(b.end) - x(b.start))}" height="24"><title>${esc(b.name)} · ${esc(b.targetName)} · ${esc(b.obType)}
${fmtTime(b.start)} – ${fmtTime(b.end).slice(11)} · priority ${b.priority}</title></rect>`;
  });
  for (const r of state.history.filter((h) => h.triggerKind && h.night === plan.night)) {
    const t = new Date(r.created).getTime();
    if (t < t0 || t > t1) continue;
    const why = `${fmtTime(r.created).slice(11)} ${r.reason}${r.triggerAlarm ? ` (alarm ${r.triggerAlarm})` : ""}`;
    out += `<g class="replan-mark${r.triggerAlarm ? " linked" : ""}" data-alarm="${esc(r.triggerAlarm || "")}">
      <line class="replan" x1="${x(t)}" x2="${x(t)}" y1="0" y2="${H}"></line>
      <rect class="hit" x="${x(t) - 5}" y="0" width="10" height="${H}"></rect><title>${esc(why)}</title></g>`;
  }
  const now = Date.now();
  if (now >= t0 && now <= t1) out += `<line class="now" x1="${x(now)}" x2="${x(now)}" y1="0" y2="${H}"><title>now</title></line>`;
  for (let h = Math.ceil(t0 / 3600e3) * 3600e3; h < t1; h += 3600e3) {
    out += `<text x="${x(h)}" y="${H - 4}">${new Date(h).toISOString().slice(11, 16)}</text>`;
  }
  svg.innerHTML = out;
  svg.querySelectorAll(".replan-mark.linked").forEach((g) => g.onclick = () => highlightAlarm(g.dataset.alarm));
  $("#plan-night").textContent = `night of ${plan.night} · ${plan.blocks.length} OBs`;
  const reason = $("#plan-reason"); reason.replaceChildren(`last change ${fmtTime(plan.created).slice(11)} UTC: ${plan.reason}`);
  if (plan.triggerAlarm) {
    const a = document.createElement("a"); a.textContent = ` (${plan.triggerAlarm})`; a.dataset.alarm = plan.triggerAlarm;
    a.onclick = () => highlightAlarm(plan.triggerAlarm);
    reason.append(a);
  }
  $("#plan-note").textContent = (empty ? "nothing planned from now on; " : "colours: classification, follow-up, ESO, ToO; ")
    + "dashed lines: re-plans (click: the alarm); orange: now";
}

// --- log tail ---
let logOp = null;
function subscribeLogs(live) {
  if (logOp) live.unsubscribe(logOp);
  $("#log-lines").replaceChildren();
  const filter = { minLevel: $("#log-level").value };
  if ($("#log-source").value) filter.sources = [$("#log-source").value];
  if ($("#log-text").value) filter.text = $("#log-text").value;
  logOp = live.subscribe(`subscription($f: LiveLogFilter, $a: String) { logEntries(filter: $f, after: $a) {
      seq entry { time level source component message } } }`, () => ({ f: filter, a: null }), (d) => {
    const { entry } = d.logEntries;
    const li = document.createElement("li"); li.className = `lvl-${entry.level}`;
    li.textContent = `${fmtTime(entry.time)} ${entry.level.padEnd(8)} ${entry.source}${entry.component ? "/" + entry.component : ""}: ${entry.message}`;
    const list = $("#log-lines"); list.prepend(li);
    while (list.children.length > 500) list.lastChild.remove();
  });
}

// --- session ---
function logout(reason) {
  if (state.token) gql("mutation { logout }").catch(() => {});
  state.token = null; sessionStorage.removeItem("skyops.token");
  $("#login-error").textContent = reason || "";
  $("#app").hidden = true; $("#nav").hidden = true; $("#logout").hidden = true; $("#who").textContent = "";
  $("#login-dialog").showModal();
}

// Everything the first screen shows in one request (started by index.html before this module loaded, when a
// session existed). If part of it fails (e.g. an HMI without the alarm service), the parts are asked separately.
// `?serial` loads them one request after another instead: the pre-fix way, kept as bench/hmi_page.py's baseline.
function split(body) {
  if (!body.data) return null;
  const { alarms, planHistory, ...main } = body.data;
  return [{ data: main }, { data: { alarms } }, { data: { planHistory } }];
}

async function snapshot() {
  const q = BOOT.queries;
  if (new URLSearchParams(location.search).has("serial")) {
    const part = async (query) => unwrap(await post(query));
    const me = await part("{ me { username group } }");
    const latest = await part("{ latest { point time value quality } }");
    const alarms = await post(q.alarms);
    const plan = await part(`{ plan { ${PLAN_FIELDS} } }`);
    const history = await post(q.history);
    return [{ data: { ...me, ...latest, ...plan } }, alarms, history];
  }
  const pending = BOOT.pending || post(q.all);
  BOOT.pending = null;
  return split(await pending) || Promise.all([post(q.main), post(q.alarms), post(q.history)]);
}

async function start() {
  const [main, alarms, history] = await snapshot();
  const { me, latest, plan } = unwrap(main);
  state.user = me;
  $("#who").textContent = `${me.username} (${me.group.toLowerCase()})`;
  $("#logout").hidden = false; $("#app").hidden = false; $("#nav").hidden = false;
  document.querySelectorAll("#nav [data-group]").forEach((a) => a.hidden = a.dataset.group !== me.group);
  latest.forEach(renderValue);
  setAlarms(alarms);
  try { state.history = unwrap(history).planHistory; } catch (e) { state.history = []; }
  renderPlan(plan);
  setInterval(() => renderPlan(state.plan), 60e3);   // keep the "now" line moving
  showView(location.hash.slice(1) || "ops");

  const live = new Live((up) => { const l = $("#link"); l.textContent = up ? "live" : "reconnecting";
                                   l.className = `link ${up ? "up" : "down"}`; });
  live.connect();
  live.subscribe("subscription { serverTime(intervalS: 1) }", () => ({}),
                 (d) => { $("#utc").textContent = `${d.serverTime.slice(11, 19)} UTC`; });
  live.subscribe(`subscription($a: String) { alarmEvents(after: $a) { seq event {
      alarmId time action severity state acked user reason } } }`, () => ({ a: state.lastAlarmSeq }), (d) => {
    state.lastAlarmSeq = d.alarmEvents.seq; onAlarm(d.alarmEvents.event); });
  const points = latest.map((v) => v.point).filter((p) => Object.values(GROUPS).some((g) => g(p)));
  if (points.length) {
    live.subscribe("subscription($p: [String!]!) { samples(points: $p, maxRateHz: 2) { point time value quality } }",
                   () => ({ p: points }), (d) => d.samples.forEach(renderValue));
  }
  live.subscribe(`subscription($a: String) { planChanges(after: $a) { ${PLAN_FIELDS} } }`,
                 () => ({ a: state.plan ? state.plan.seq : null }), (d) => {
    const plan = d.planChanges;
    state.history.push(plan);
    renderPlan(plan);
    views?.planChanged?.(plan);
  });
  subscribeLogs(live);
  for (const id of ["#log-level", "#log-source", "#log-text"]) $(id).onchange = () => subscribeLogs(live);
  document.querySelectorAll("[data-range]").forEach((b) => b.onclick = () => {
    state.trendHours = Number(b.dataset.range); if (state.trendPoint) showTrend(state.trendPoint); });
  $("#replan").onclick = replan;
}

async function replan() {
  const reason = prompt("Re-plan the rest of the night from now. Why?");
  if (!reason) return;
  try {
    await gql("mutation($r: String!) { replan(reason: $r) { seq } }", { r: reason });
    $("#plan-note").textContent = "re-plan requested; the timeline redraws when the planner publishes it";
  } catch (e) { $("#plan-note").textContent = `re-plan refused: ${e.message}`; }
}

// --- the other views load their code on first use, so the operator page's first render never waits for it ---
let views = null;
async function showView(name) {
  const known = [...document.querySelectorAll("main .view")].map((v) => v.dataset.view);
  if (!known.includes(name)) name = "ops";
  const link = document.querySelector(`#nav a[data-view="${name}"]`);
  if (link?.hidden) name = "ops";
  document.querySelectorAll("main .view").forEach((v) => v.hidden = v.dataset.view !== name);
  document.querySelectorAll("#nav a").forEach((a) => a.classList.toggle("active", a.dataset.view === name));
  if (name === "ops") return;
  views = views || await import("./views.js");
  views.show(name, { gql, state, $, fmtTime, esc, showView });
}
window.addEventListener("hashchange", () => { if (state.user) showView(location.hash.slice(1)); });

$("#login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const f = new FormData(ev.target);
  try {
    const d = await gql(`mutation($u: String!, $p: String!) { login(username: $u, password: $p) { token } }`,
                        { u: f.get("username"), p: f.get("password") });
    state.token = d.login.token; sessionStorage.setItem("skyops.token", state.token);
    $("#login-dialog").close(); await start();
  } catch (e) { $("#login-error").textContent = e.message; }
});
$("#logout").onclick = () => logout();
$("#mute").onclick = () => {
  state.muted = !state.muted;
  $("#mute").textContent = state.muted ? "muted" : "sound on";
  $("#mute").setAttribute("aria-pressed", String(state.muted));
};

if (state.token) start().catch(() => logout()); else $("#login-dialog").showModal();
