// The VES, OB, report and admin views: loaded on first use, so the operator page's first render never waits for them.
let api = null;
let current = null;
const $ = (sel) => document.querySelector(sel);
const cell = (tr, text) => { const td = document.createElement("td"); td.textContent = text ?? ""; tr.append(td); return td; };
const button = (label, onclick, data = {}) => {
  const b = document.createElement("button"); b.type = "button"; b.textContent = label; b.onclick = onclick;
  Object.assign(b.dataset, data); return b;
};
const can = (groups) => groups.includes(api.state.user.group);
const SCIENCE = ["ADMINISTRATOR", "SCIENCE"];

export function show(name, context) {
  api = context; current = name;
  ({ ves: showVes, obs: showObs, reports: showReports, admin: showAdmin })[name]?.();
}

export function planChanged() {
  if (current === "ves" && !$('[data-view="ves"]').hidden) { renderOrder(); loadVes(); }
}

// --- VES ---------------------------------------------------------------------------------------------------
let order = null;   // the waiting OBs as the user arranges them (null: as in the plan)

function showVes() {
  $("#ves-sync").onclick = syncVes;
  $("#ves-apply").onclick = applyOrder;
  order = null;
  renderOrder();
  loadVes();
}

async function loadVes() {
  $("#ves-error").textContent = "";
  try {
    const d = await api.gql(`{ ves { night planId changedAt writtenBy reason
        entries { position p2ObId obId p2Status name targetName start } }
      vesHistory(limit: 20) { time planId writtenBy reason triggerKind alarmId after } }`);
    const rows = $("#ves-rows"); rows.replaceChildren();
    if (!d.ves) {
      $("#ves-summary").textContent = "not written yet";
    } else {
      $("#ves-summary").textContent = `night of ${d.ves.night} · ${d.ves.entries.length} OBs · plan ${d.ves.planId}`
        + ` · written ${api.fmtTime(d.ves.changedAt).slice(11, 16)} UTC by ${d.ves.writtenBy}`;
      for (const e of d.ves.entries) {
        const tr = document.createElement("tr"); tr.dataset.ob = e.obId ?? "";
        for (const t of [e.position, e.obId ?? `P2 ${e.p2ObId}`, e.name, e.targetName,
                         e.start ? api.fmtTime(e.start).slice(11, 16) : "", e.p2Status]) cell(tr, t);
        rows.append(tr);
      }
    }
    const hist = $("#ves-history"); hist.replaceChildren();
    for (const h of d.vesHistory) {
      const tr = document.createElement("tr");
      for (const t of [api.fmtTime(h.time), h.planId, h.writtenBy,
                       h.reason + (h.alarmId ? ` (alarm ${h.alarmId})` : ""), h.after.length]) cell(tr, t);
      hist.append(tr);
    }
  } catch (e) { $("#ves-error").textContent = e.message; }
}

function waiting() {
  const plan = api.state.plan;
  const now = Date.now();
  return plan ? plan.blocks.filter((b) => new Date(b.start).getTime() > now) : [];
}

function renderOrder() {
  const blocks = waiting();
  const byId = new Map(blocks.map((b) => [b.obId, b]));
  if (order && (order.length !== blocks.length || order.some((id) => !byId.has(id)))) order = null;  // a new plan
  const ids = order || blocks.map((b) => b.obId);
  const list = $("#ves-order"); list.replaceChildren();
  ids.forEach((id, i) => {
    const b = byId.get(id);
    const li = document.createElement("li"); li.dataset.ob = id;
    if (order && blocks[i]?.obId !== id) li.classList.add("moved");
    li.append(button("↑", () => move(ids, i, -1), { move: "up" }), button("↓", () => move(ids, i, 1), { move: "down" }),
              `${b.name} · ${b.targetName} · ${b.obType} · planned ${api.fmtTime(b.start).slice(11, 16)}`);
    list.append(li);
  });
  if (!ids.length) list.innerHTML = '<li class="note">no OB waiting in the plan</li>';
  $("#ves-apply").disabled = !order;
}

function move(ids, i, step) {
  const j = i + step;
  if (j < 0 || j >= ids.length) return;
  order = [...ids]; [order[i], order[j]] = [order[j], order[i]];
  renderOrder();
}

async function applyOrder() {
  const reason = prompt("Why this order? (it goes into the plan and the VES history)");
  if (!reason) return;
  try {
    const d = await api.gql(`mutation($o: [String!]!, $r: String!) { reorderVes(order: $o, reason: $r) { planId } }`,
                            { o: order, r: reason });
    $("#ves-error").textContent = "";
    $("#ves-status").textContent = `new order published as ${d.reorderVes.planId}; the VES sync writes it to P2`;
    order = null;
  } catch (e) { $("#ves-error").textContent = e.message; }
}

async function syncVes() {
  const reason = prompt("Write the current plan to the VES again. Why?");
  if (!reason) return;
  try {
    await api.gql(`mutation($r: String!) { syncVes(reason: $r) { planId } }`, { r: reason });
    $("#ves-status").textContent = "sync requested: the VES sync writes the current plan to P2 again";
  } catch (e) { $("#ves-error").textContent = e.message; }
}

// --- OBs ---------------------------------------------------------------------------------------------------
let editing = null;

function showObs() {
  for (const id of ["#obs-state", "#obs-type", "#obs-programme"]) $(id).onchange = loadObs;
  $("#ob-new").hidden = !can(SCIENCE);
  $("#ob-new").onclick = () => openOb(null);
  $("#ob-cancel").onclick = () => $("#ob-dialog").close();
  $("#ob-form").onsubmit = saveOb;
  loadObs();
}

async function loadObs() {
  const state = $("#obs-state").value;
  const vars = { s: state === "" ? ["queued", "scheduled"] : state === "all" ? null : [state],
                 t: $("#obs-type").value || null, p: $("#obs-programme").value || null };
  try {
    const d = await api.gql(`query($s: [String!], $t: String, $p: String) { obs(states: $s, obType: $t, programme: $p) {
      id obType name targetName raDeg decDeg magnitude exposureS priority programme state version maxAirmass
      maxSeeingArcsec timeShare } }`, vars);
    $("#obs-error").textContent = "";
    $("#obs-count").textContent = `${d.obs.length} OBs`;
    const rows = $("#obs-rows"); rows.replaceChildren();
    for (const ob of d.obs) {
      const tr = document.createElement("tr"); tr.dataset.ob = ob.id;
      for (const t of [ob.id, ob.obType, ob.name, ob.targetName, ob.raDeg.toFixed(4), ob.decDeg.toFixed(4),
                       ob.magnitude?.toFixed(2), ob.exposureS, ob.priority, ob.programme, ob.state]) cell(tr, t);
      const actions = cell(tr, ""); actions.className = "actions";
      if (can(SCIENCE) && ["queued", "scheduled"].includes(ob.state)) {
        actions.append(button("edit", () => openOb(ob), { action: "edit" }),
                       button("delete", () => deleteOb(ob), { action: "delete" }));
      }
      rows.append(tr);
    }
  } catch (e) { $("#obs-error").textContent = e.message; }
}

const OB_NUMBERS = ["raDeg", "decDeg", "magnitude", "exposureS", "priority", "maxAirmass", "maxSeeingArcsec"];

function openOb(ob) {
  editing = ob;
  const form = $("#ob-form"); form.reset();
  $("#ob-form-title").textContent = ob ? `edit OB ${ob.id} (${ob.name})` : "new OB";
  $("#ob-form-error").textContent = "";
  for (const name of ["obType", "programme", "timeShare"]) form.elements[name].disabled = Boolean(ob);
  if (ob) {
    for (const name of ["name", "targetName", "programme", "timeShare", ...OB_NUMBERS]) {
      form.elements[name].value = ob[name] ?? "";
    }
  }
  $("#ob-dialog").showModal();
}

async function saveOb(ev) {
  ev.preventDefault();
  const f = ev.target.elements;
  const value = (name) => {
    const v = f[name].value.trim();
    if (v === "") return null;
    return OB_NUMBERS.includes(name) ? (name === "priority" ? parseInt(v, 10) : Number(v)) : v;
  };
  try {
    if (editing) {
      const changes = {};
      for (const name of ["name", "targetName", ...OB_NUMBERS]) {
        const v = value(name);
        if (v !== null && v !== editing[name]) changes[name] = v;
      }
      await api.gql(`mutation($i: Int!, $c: ObChanges!, $v: Int) { updateOb(obId: $i, changes: $c, expectedVersion: $v) { id } }`,
                    { i: editing.id, c: changes, v: editing.version });
    } else {
      const ob = {};
      for (const name of ["obType", "programme", "name", "targetName", "timeShare", ...OB_NUMBERS]) {
        const v = value(name); if (v !== null) ob[name] = v;
      }
      await api.gql(`mutation($ob: ObInput!) { createOb(ob: $ob) { id } }`, { ob });
    }
    $("#ob-dialog").close();
    loadObs();
  } catch (e) { $("#ob-form-error").textContent = e.message; }
}

async function deleteOb(ob) {
  if (!confirm(`Delete OB ${ob.id} (${ob.name})?`)) return;
  try { await api.gql("mutation($i: Int!) { deleteOb(obId: $i) { id } }", { i: ob.id }); loadObs(); }
  catch (e) { $("#obs-error").textContent = e.message; }
}

// --- reports -----------------------------------------------------------------------------------------------
function showReports() {
  if (!$("#report-last").value) {
    const last = new Date(Date.now() - 86400e3);
    $("#report-last").value = last.toISOString().slice(0, 10);
    $("#report-first").value = new Date(last - 6 * 86400e3).toISOString().slice(0, 10);
  }
  $("#report-run").onclick = loadReport;
  loadReport();
}

let reportRequest = 0;  // only the newest request draws: a slower earlier one must not overwrite it

async function loadReport() {
  const mine = ++reportRequest;
  $("#report-error").textContent = "";
  try {
    const d = await api.gql(`query($a: Date!, $b: Date!) { report(firstNight: $a, lastNight: $b) {
      darkHours scienceHours dutyCycle completedProposalsFraction transientHits transientMisses hitRate gtoHours esoHours
      proposals { programme observed total fraction }
      nights { night darkHours scienceHours dutyCycle transientHits transientMisses gtoHours esoHours } } }`,
      { a: $("#report-first").value, b: $("#report-last").value });
    if (mine !== reportRequest) return;
    const r = d.report;
    const pct = (v) => `${(100 * v).toFixed(0)} %`;
    const figures = [["duty cycle", pct(r.dutyCycle)], ["science", `${r.scienceHours.toFixed(1)} h`],
                     ["dark", `${r.darkHours.toFixed(1)} h`], ["transient hit rate", pct(r.hitRate)],
                     ["hits / misses", `${r.transientHits} / ${r.transientMisses}`],
                     ["GTO / ESO", `${r.gtoHours.toFixed(1)} / ${r.esoHours.toFixed(1)} h`],
                     ["proposals complete", pct(r.completedProposalsFraction)]];
    $("#report-figures").innerHTML = figures.map(([k, v]) => `<div><b>${api.esc(v)}</b><span>${k}</span></div>`).join("");
    bars($("#report-duty"), r.nights, [["dutyCycle", "bar"]], (v) => pct(v), 1);
    bars($("#report-hits"), r.nights, [["transientHits", "bar"], ["transientMisses", "bar miss"]], (v) => v.toFixed(0));
    bars($("#report-share"), r.nights, [["gtoHours", "bar gto"], ["esoHours", "bar eso"]], (v) => `${v.toFixed(1)} h`);
    const rows = $("#report-proposals"); rows.replaceChildren();
    for (const p of r.proposals) {
      const tr = document.createElement("tr");
      for (const t of [p.programme, p.observed, p.total, pct(p.fraction)]) cell(tr, t);
      rows.append(tr);
    }
  } catch (e) { if (mine === reportRequest) $("#report-error").textContent = e.message; }
}

// Grouped bars, one group per night; `series` are [field, css class].
function bars(svg, nights, series, label, fixedMax = null) {
  const W = 500, H = 200, pad = 22;
  const values = nights.flatMap((n) => series.map(([f]) => n[f]));
  const max = fixedMax ?? Math.max(1e-9, ...values);
  const group = (W - 2 * pad) / Math.max(1, nights.length);
  const w = Math.max(1, group / (series.length + 0.5));
  let out = `<text x="2" y="12">${api.esc(label(max))}</text>`;
  nights.forEach((n, i) => {
    series.forEach(([f, cls], k) => {
      const h = (H - 2 * pad) * (n[f] / max);
      out += `<rect class="${cls}" data-night="${n.night}" x="${(pad + i * group + k * w).toFixed(1)}" y="${(H - pad - h).toFixed(1)}"
               width="${(w * 0.9).toFixed(1)}" height="${h.toFixed(1)}"><title>${n.night}: ${api.esc(label(n[f]))}</title></rect>`;
    });
    if (nights.length <= 14 || i % Math.ceil(nights.length / 10) === 0) {
      out += `<text x="${(pad + i * group).toFixed(1)}" y="${H - 6}">${n.night.slice(5)}</text>`;
    }
  });
  svg.innerHTML = out;
}

// --- admin -------------------------------------------------------------------------------------------------
let activityCursor = null;

function showAdmin() {
  $("#user-new").onclick = () => { $("#user-form").hidden = !$("#user-form").hidden; };
  $("#user-form").onsubmit = createUser;
  $("#session-form").onsubmit = saveSession;
  $("#activity-run").onclick = () => loadActivity(false);
  $("#activity-more").onclick = () => loadActivity(true);
  loadUsers();
  loadActivity(false);
}

async function loadUsers() {
  try {
    const d = await api.gql("{ users { username fullName group disabled lastLoginAt } sessionDurationHours }");
    $("#session-hours").value = d.sessionDurationHours;
    const rows = $("#user-rows"); rows.replaceChildren();
    for (const u of d.users) {
      const tr = document.createElement("tr"); tr.dataset.user = u.username;
      for (const t of [u.username + (u.disabled ? " (disabled)" : ""), u.fullName, u.group.toLowerCase(),
                       u.lastLoginAt ? api.fmtTime(u.lastLoginAt) : "never"]) cell(tr, t);
      const actions = cell(tr, ""); actions.className = "actions";
      if (u.username !== api.state.user.username) {
        actions.append(button(u.disabled ? "enable" : "disable", () => setDisabled(u, !u.disabled)),
                       button("delete", () => deleteUser(u)));
      }
      rows.append(tr);
    }
    $("#admin-error").textContent = "";
  } catch (e) { $("#admin-error").textContent = e.message; }
}

async function adminCall(query, vars) {
  try { await api.gql(query, vars); await loadUsers(); loadActivity(false); return true; }
  catch (e) { $("#admin-error").textContent = e.message; return false; }
}

async function createUser(ev) {
  ev.preventDefault();
  const f = new FormData(ev.target);
  const user = Object.fromEntries(["username", "fullName", "group", "password"].map((k) => [k, f.get(k)]));
  if (await adminCall("mutation($u: UserInput!) { createUser(user: $u) { username } }", { u: user })) {
    ev.target.reset(); ev.target.hidden = true;
  }
}

const setDisabled = (u, disabled) => adminCall(
  "mutation($n: String!, $d: Boolean!) { updateUser(username: $n, changes: {disabled: $d}) { username } }",
  { n: u.username, d: disabled });

function deleteUser(u) {
  if (confirm(`Delete the account ${u.username}?`)) adminCall("mutation($n: String!) { deleteUser(username: $n) }", { n: u.username });
}

async function saveSession(ev) {
  ev.preventDefault();
  try {
    const d = await api.gql("mutation($h: Float!) { setSessionDuration(hours: $h) }", { h: Number($("#session-hours").value) });
    $("#session-note").textContent = `new logins last ${d.setSessionDuration} h`;
    loadActivity(false);
  } catch (e) { $("#session-note").textContent = e.message; }
}

async function loadActivity(more) {
  const end = new Date(Date.now() + 60e3);
  const start = new Date(end - Number($("#activity-hours").value) * 3600e3);
  const vars = { s: start.toISOString(), e: end.toISOString(), u: $("#activity-user").value || null,
                 a: $("#activity-action").value || null, c: more ? activityCursor : null };
  try {
    const d = await api.gql(`query($s: DateTime!, $e: DateTime!, $u: String, $a: String, $c: String) {
      activity(start: $s, end: $e, user: $u, action: $a, limit: 100, cursor: $c) {
        entries { time user action details } nextCursor } }`, vars);
    const rows = $("#activity-rows");
    if (!more) rows.replaceChildren();
    for (const a of d.activity.entries) {
      const tr = document.createElement("tr");
      for (const t of [api.fmtTime(a.time), a.user, a.action]) cell(tr, t);
      cell(tr, Object.entries(a.details).map(([k, v]) => `${k}=${v}`).join(" ")).className = "details";
      rows.append(tr);
    }
    activityCursor = d.activity.nextCursor;
    $("#activity-more").hidden = !activityCursor;
  } catch (e) { $("#admin-error").textContent = e.message; }
}
