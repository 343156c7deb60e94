// The redcoord dashboard's page: one EventSource (/api/stream) brings snapshots and events;
// the job lists and details are fetched on demand; actions are POSTs. No dependencies.
'use strict';

const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));
const esc = (v) => String(v ?? '').replace(/[&<>"']/g, (c) => ({
  '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));

const state = {
  info: null,
  snap: null,
  snapAt: 0,            // local time the snapshot arrived (TTLs and ages count from it)
  events: [],
  jobs: { state: 'running', fn: '', offset: 0, count: 25, page: null, detail: null },
  token: sessionStorage.getItem('redcoord-token') || '',
};
const JOB_STATES = ['waiting', 'scheduled', 'queued', 'running', 'retrying', 'succeeded', 'failed', 'cancelled'];

// ---- formatting ----------------------------------------------------------------------------

function duration(ms) {
  if (ms == null || ms < 0) return '—';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.floor(s % 60)} s`;
  const h = Math.floor(m / 60);
  return h < 48 ? `${h} h ${m % 60} min` : `${Math.floor(h / 24)} d ${h % 24} h`;
}
function micros(us) {
  if (!us) return '—';
  if (us < 1000) return `${us} µs`;
  return us < 10000 ? `${(us / 1000).toFixed(2)} ms` : duration(us / 1000);
}
function time(ms, zone) {
  if (!ms) return '—';
  const opts = { year: 'numeric', month: 'short', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false };
  try {
    return new Intl.DateTimeFormat(undefined, zone ? { ...opts, timeZone: zone } : opts).format(new Date(ms));
  } catch { return new Date(ms).toISOString(); }
}
function clock(ms) { return ms ? new Date(ms).toLocaleTimeString(undefined, { hour12: false }) : '—'; }
function ago(ms) { return ms ? `${duration(Date.now() - ms)} ago` : '—'; }
function pill(text, cls = text) { return `<span class="pill ${esc(cls)}">${esc(text)}</span>`; }
function rows(tbody, html, cols, empty) {
  tbody.innerHTML = html || `<tr class="empty"><td colspan="${cols}">${esc(empty)}</td></tr>`;
}
function toast(text, bad = false) {
  const t = document.createElement('div');
  t.className = `toast${bad ? ' bad' : ''}`;
  t.textContent = text;
  document.body.appendChild(t);
  setTimeout(() => t.remove(), 3500);
}

// A TTL that counts down in the browser between snapshots.
function ttlCell(ttl, total) {
  if (ttl < 0) return '<span class="muted">no TTL</span>';
  const deadline = state.snapAt + ttl;
  return `<span class="ttl" data-deadline="${deadline}" data-total="${Math.max(total || ttl, 1)}"><span class="bar"><i></i></span><span class="t"></span></span>`;
}
function tick() {
  const now = Date.now();
  for (const el of $$('[data-deadline]')) {
    const left = Math.max(0, Number(el.dataset.deadline) - now);
    const frac = Math.min(1, left / Number(el.dataset.total));
    const bar = $('i', el);
    bar.style.width = `${(frac * 100).toFixed(0)}%`;
    bar.className = left === 0 ? 'gone' : frac < 0.3 ? 'low' : '';
    $('.t', el).textContent = left === 0 ? 'expired' : duration(left);
  }
  for (const el of $$('[data-age-base]')) {
    el.textContent = duration(Number(el.dataset.ageBase) + (now - state.snapAt));
  }
}
// The largest TTL seen per lease, so a bar shows how much of its lease is left.
const ttlSeen = new Map();
function ttlTotal(key, ttl) {
  const seen = Math.max(ttlSeen.get(key) || 0, ttl);
  ttlSeen.set(key, seen);
  return seen;
}

// ---- tabs ----------------------------------------------------------------------------------

function currentTab() { return (location.hash || '#overview').slice(1).split('/')[0]; }
function showTab() {
  const tab = currentTab();
  for (const a of $$('#tabs a')) a.classList.toggle('active', a.dataset.tab === tab);
  for (const s of $$('.tab')) s.hidden = s.id !== `tab-${tab}`;
  if (tab === 'queues') loadQueues();
  if (tab === 'jobs') {
    const id = decodeURIComponent(location.hash.split('/')[1] || '');
    loadJobs();
    if (id) openJob(id);
  }
  if (tab === 'charts') renderCharts();
}

// ---- overview ------------------------------------------------------------------------------

function renderOverview() {
  const s = state.snap;
  const nodes = s.nodes || [];
  const alive = nodes.filter((n) => n.alive).length;
  const counts = s.job_counts || {};
  const card = (n, label, cls = '') => `<div class="card ${cls}"><div class="n">${esc(n)}</div><div class="l">${esc(label)}</div></div>`;
  $('#cards').innerHTML = [
    card(alive, 'nodes alive', alive ? 'ok' : 'bad'),
    card(nodes.length - alive, 'nodes dead', nodes.length - alive ? 'bad' : ''),
    card((s.leaders || []).length, 'leaders'),
    card((s.holders || []).length, 'held leases'),
    card(counts.running ?? '—', 'jobs running'),
    card(counts.queued ?? '—', 'jobs queued'),
    card(counts.failed ?? '—', 'jobs failed', counts.failed ? 'bad' : ''),
  ].join('');

  rows($('#nodes-table tbody'), nodes.map((n) => `<tr data-node="${esc(n.id)}" class="${n.alive ? 'alive' : 'dead'}">
    <td class="mono">${esc(n.id)}</td>
    <td>${n.alive ? pill('alive') : pill('dead')}</td>
    <td>${n.heartbeat_age_ms >= 0 ? `<span data-age-base="${n.heartbeat_age_ms}"></span>` : '—'}</td>
    <td>${esc(n.host || '—')}</td><td class="mono">${esc(n.pid || '—')}</td>
    <td>${n.started_at ? esc(ago(n.started_at)) : '—'}</td></tr>`).join(''), 6, 'no nodes registered');

  const h = s.health;
  if (h) {
    $('#health-status').className = `pill ${h.status}`;
    $('#health-status').textContent = h.status;
    $('#health-checks').innerHTML = (h.checks || []).map((c) =>
      `<li>${pill(c.status)}<b>${esc(c.name)}</b><span class="muted">${esc(c.description)}</span></li>`).join('');
  }
  rows($('#overview-leaders tbody'), (s.leaders || []).map((l) => `<tr>
    <td>${esc(l.name)}</td><td class="mono">${esc(l.node)}</td><td class="mono">${esc(l.term)}</td></tr>`).join(''),
  3, 'no leaderships held');
}

// ---- locks and leases ----------------------------------------------------------------------

function renderLocks() {
  const s = state.snap;
  const holders = s.holders || [];
  $('#holders-count').textContent = `(${holders.length})`;
  const canAct = state.info && !state.info.read_only;
  rows($('#holders-table tbody'), holders.map((h) => {
    const key = `${h.kind}/${h.name}/${h.owner}`;
    return `<tr data-kind="${esc(h.kind)}" data-name="${esc(h.name)}">
      <td><span class="kind">${esc(h.kind)}</span></td>
      <td><b>${esc(h.name)}</b>${h.holds > 1 ? ` <span class="muted">×${esc(h.holds)}</span>` : ''}</td>
      <td class="mono node">${esc(h.node || '—')}</td>
      <td><span class="mono owner" title="${esc(h.owner)}">${esc(h.owner)}</span></td>
      <td class="mono fence">${h.fencing_token ? esc(h.fencing_token) : '—'}</td>
      <td>${ttlCell(h.ttl_ms, ttlTotal(key, h.ttl_ms))}</td>
      <td class="num">${h.waiters ? pill(h.waiters, 'warn') : '0'}</td>
      <td>${h.acquired_at ? esc(ago(h.acquired_at)) : '—'}</td>
      <td>${h.kind === 'mutex' && canAct ? `<button class="danger release" data-name="${esc(h.name)}">Force release</button>` : ''}</td></tr>`;
  }).join(''), 9, 'nothing is held');

  rows($('#contention-table tbody'), (s.contention || []).map((c) => `<tr>
    <td><b>${esc(c.name)}</b></td><td class="kind">${esc(c.kind)}</td>
    <td class="num">${esc(c.acquisitions)}</td>
    <td class="num">${esc(c.contended)}${c.acquisitions ? ` <span class="muted">(${Math.round(100 * c.contended / c.acquisitions)}%)</span>` : ''}</td>
    <td class="num">${esc(c.timeouts)}</td><td class="num">${micros(c.wait_mean_us)}</td>
    <td class="num">${micros(c.wait_p50_us)}</td><td class="num">${micros(c.wait_p99_us)}</td>
    <td class="num">${micros(c.wait_max_us)}</td></tr>`).join(''), 9, 'no statistics reported yet');
}

// ---- leaders -------------------------------------------------------------------------------

function renderLeaders() {
  const s = state.snap;
  rows($('#leaders-table tbody'), (s.leaders || []).map((l) => `<tr data-name="${esc(l.name)}">
    <td><b>${esc(l.name)}</b></td><td class="mono leader-node">${esc(l.node)}</td>
    <td class="mono term">${esc(l.term)}</td><td>${esc(time(l.since))} <span class="muted">(${esc(ago(l.since))})</span></td>
    <td>${ttlCell(l.ttl_ms, ttlTotal(`leader/${l.name}`, l.ttl_ms))}</td>
    <td><span class="mono owner" title="${esc(l.owner)}">${esc(l.owner)}</span></td></tr>`).join(''), 6, 'no leaderships held');
  const history = s.leader_history || {};
  const names = Object.keys(history).sort();
  $('#leader-history').innerHTML = names.length ? names.map((name) => `<h3>${esc(name)}</h3>
    <table class="table history" data-name="${esc(name)}"><thead><tr><th>Term</th><th>Leader</th><th>In office since</th><th>Seen</th></tr></thead><tbody>
    ${history[name].slice().reverse().map((t) => `<tr><td class="mono">${esc(t.term)}</td><td class="mono">${esc(t.node)}</td>
      <td>${esc(time(t.since))}</td><td class="muted">${esc(clock(t.seen_at))}</td></tr>`).join('')}</tbody></table>`).join('')
    : '<p class="muted">No leadership seen yet.</p>';
}

// ---- queues --------------------------------------------------------------------------------

let queuesTimer = 0;
async function loadQueues() {
  clearTimeout(queuesTimer);
  try {
    const r = await api('/api/queues');
    rows($('#queues-table tbody'), r.queues.map((q) => `<tr data-name="${esc(q.name)}">
      <td><b>${esc(q.name)}</b></td><td class="num">${esc(q.length)}</td><td class="num">${esc(q.in_flight)}</td>
      <td class="num">${esc(q.consumers)}</td><td class="num">${esc(q.workers)}</td></tr>`).join(''), 5, 'no queues found');
  } catch (e) { toast(e.message, true); }
  if (currentTab() === 'queues') queuesTimer = setTimeout(loadQueues, 5000);
}

// ---- jobs ----------------------------------------------------------------------------------

function renderJobStates() {
  const counts = (state.snap && state.snap.job_counts) || {};
  $('#job-states').innerHTML = JOB_STATES.map((s) => `<button type="button" class="chip${s === state.jobs.state ? ' active' : ''}" data-state="${s}">
    ${pill(s)}<b>${esc(counts[s] ?? '·')}</b></button>`).join('');
}

async function loadJobs() {
  const j = state.jobs;
  const q = new URLSearchParams({ state: j.state, offset: j.offset, count: j.count });
  if (j.fn) q.set('function', j.fn);
  try {
    j.page = await api(`/api/jobs?${q}`);
  } catch (e) { toast(e.message, true); return; }
  renderJobStates();
  rows($('#jobs-table tbody'), j.page.jobs.map((r) => `<tr class="click" data-id="${esc(r.id)}" data-state="${esc(r.state)}">
    <td class="mono">${esc(r.id)}</td><td>${esc(r.function)}</td><td>${pill(r.state)}</td>
    <td class="num">${esc(r.attempts)}/${esc(r.max_attempts)}</td><td class="mono">${esc(r.node || '—')}</td>
    <td>${esc(r.progress || '')}</td><td>${esc(ago(r.created))}</td><td class="muted">${esc(r.error || '')}</td></tr>`).join(''),
  8, `no ${j.state} jobs${j.fn ? ` of ${j.fn}` : ''}`);
  const last = Math.min(j.offset + j.page.jobs.length, j.page.total);
  $('#page-info').textContent = j.page.total ? `${j.offset + 1}–${last} of ${j.page.total}` : '';
  $('#page-prev').disabled = j.offset === 0;
  $('#page-next').disabled = j.offset + j.count >= j.page.total;
}

async function openJob(id) {
  let r;
  try { r = await api(`/api/jobs/${encodeURIComponent(id)}`); } catch (e) { toast(e.message, true); return; }
  state.jobs.detail = r;
  const canAct = state.info && !state.info.read_only;
  const ended = ['succeeded', 'failed', 'cancelled'].includes(r.state);
  const runnable = ['failed', 'cancelled', 'scheduled', 'retrying', 'waiting'].includes(r.state);
  const field = (k, v) => `<dt>${esc(k)}</dt><dd>${v}</dd>`;
  const el = $('#job-detail');
  el.hidden = false;
  el.dataset.id = r.id;
  el.innerHTML = `<h2>Job <span class="mono">${esc(r.id)}</span> ${pill(r.state)}</h2>
    <dl class="detail">
      ${field('function', esc(r.function))}
      ${field('attempts', `${esc(r.attempts)} of ${esc(r.max_attempts)}`)}
      ${field('node', `<span class="mono">${esc(r.node || '—')}</span>`)}
      ${field('fencing token', `<span class="mono">${esc(r.fencing_token || '—')}</span>`)}
      ${field('priority', esc(r.priority))}
      ${field('progress', esc(r.progress || '—'))}
      ${r.recurring ? field('recurring', esc(r.recurring)) : ''}
      ${r.depends_on.length ? field('depends on', r.depends_on.map((d) => `<a class="mono" href="#jobs/${encodeURIComponent(d)}">${esc(d)}</a>`).join(', ')) : ''}
      ${field('created', esc(time(r.created)))}
      ${field('due', esc(time(r.due)))}
      ${field('started', esc(time(r.started)))}
      ${field('finished', esc(time(r.finished)))}
      ${field('result stored', r.has_result ? 'yes' : 'no')}
    </dl>
    <h3>Payload</h3><pre class="mono">${esc(r.payload || '(empty)')}</pre>
    ${r.error ? `<h3>Error</h3><pre class="mono error">${esc(r.error)}</pre>` : ''}
    ${canAct ? `<div class="actions">
      ${runnable ? `<button class="primary" data-job-action="run-now">${r.state === 'failed' || r.state === 'cancelled' ? 'Retry' : 'Run now'}</button>` : ''}
      ${!ended ? '<button class="danger" data-job-action="cancel">Cancel</button>' : ''}</div>` : ''}
    <h3>History</h3>
    <table class="table"><thead><tr><th>At</th><th>State</th><th>Attempt</th><th>Node</th><th>Note</th></tr></thead><tbody>
    ${r.history.map((h) => `<tr><td>${esc(time(h.at))}</td><td>${pill(h.state)}</td><td class="num">${esc(h.attempt)}</td>
      <td class="mono">${esc(h.node || '—')}</td><td class="muted">${esc(h.error)}</td></tr>`).join('')}</tbody></table>`;
  el.scrollIntoView({ behavior: 'smooth', block: 'nearest' });
}

function renderRecurring() {
  rows($('#recurring-table tbody'), (state.snap.recurring || []).map((r) => `<tr data-name="${esc(r.name)}">
    <td><b>${esc(r.name)}</b></td><td class="mono">${esc(r.cron)}</td><td>${esc(r.time_zone)}</td><td>${esc(r.function)}</td>
    <td>${esc(time(r.last_fired, r.time_zone))}</td><td>${esc(time(r.next, r.time_zone))}</td></tr>`).join(''), 6, 'no recurring jobs');
}

// ---- events --------------------------------------------------------------------------------

function describeEvent(e) {
  if (e.type === 'member') return [e.event === 'dead' ? pill('dead') : pill(e.event, 'ok'), `node <b class="mono">${esc(e.node)}</b> ${esc(e.event)}`];
  if (e.type === 'action') return [pill(e.action, e.status < 300 ? 'ok' : 'bad'), `${esc(e.action)} <span class="mono">${esc(e.target)}</span> (${esc(e.status)})`];
  return [e.progress ? pill('progress', 'running') : pill(e.state), `job <a class="mono" href="#jobs/${encodeURIComponent(e.id)}">${esc(e.id)}</a> ${esc(e.function || '')}${e.attempt ? ` attempt ${esc(e.attempt)}` : ''}${e.node ? ` on <span class="mono">${esc(e.node)}</span>` : ''}${e.progress ? ` — progress <b>${esc(e.progress)}</b>` : ''}${e.error ? ` <span class="muted">— ${esc(e.error)}</span>` : ''}`];
}
function renderEvents() {
  const show = { job: $('#ev-jobs').checked, member: $('#ev-members').checked, action: $('#ev-actions').checked };
  const list = state.events.filter((e) => show[e.type]).slice(-200).reverse();
  $('#event-list').innerHTML = list.length ? list.map((e) => {
    const [badge, text] = describeEvent(e);
    return `<li data-type="${esc(e.type)}"><span class="at">${esc(clock(e.at))}</span><span>${badge}</span><span>${text}</span></li>`;
  }).join('') : '<li class="muted">No events yet: they appear here as they happen.</li>';
}

// ---- charts --------------------------------------------------------------------------------

function lineChart(el, samples, series, unit) {
  const W = 600, H = 220, L = 44, R = 10, T = 10, B = 24;
  if (samples.length < 2) {
    el.innerHTML = `<p class="muted">Collecting samples (one every ${Math.round((state.info?.sample_every_ms || 5000) / 1000)} s)…</p>`;
    return;
  }
  const t0 = samples[0].at, t1 = samples[samples.length - 1].at;
  const max = Math.max(1e-9, ...series.flatMap((s) => samples.map((x) => x[s.key] || 0))) * 1.1;
  const x = (t) => L + (W - L - R) * (t - t0) / Math.max(1, t1 - t0);
  const y = (v) => T + (H - T - B) * (1 - v / max);
  const fmt = (v) => (v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2));
  let svg = `<svg viewBox="0 0 ${W} ${H}" preserveAspectRatio="none" role="img">`;
  for (let i = 0; i <= 4; i++) {
    const v = max * i / 4;
    svg += `<line class="axis" x1="${L}" x2="${W - R}" y1="${y(v)}" y2="${y(v)}"/><text x="${L - 6}" y="${y(v) + 4}" text-anchor="end">${fmt(v)}</text>`;
  }
  svg += `<text x="${L}" y="${H - 6}">${esc(clock(t0))}</text><text x="${W - R}" y="${H - 6}" text-anchor="end">${esc(clock(t1))}</text>`;
  series.forEach((s, i) => {
    const pts = samples.map((p) => `${x(p.at).toFixed(1)},${y(p[s.key] || 0).toFixed(1)}`).join(' ');
    svg += `<polyline class="s${i}" points="${pts}"/>`;
  });
  svg += '</svg>';
  const lastOf = (s) => fmt(samples[samples.length - 1][s.key] || 0);
  el.innerHTML = svg + `<div class="legend">${series.map((s, i) => `<span><i class="s${i}"></i>${esc(s.name)}: <b>${lastOf(s)}</b> ${esc(unit)}</span>`).join('')}</div>`;
}
function renderCharts() {
  if (!state.snap || currentTab() !== 'charts') return;
  const samples = state.snap.charts || [];
  lineChart($('#chart-throughput'), samples, [{ key: 'acquisitions_per_s', name: 'lock acquisitions' },
    { key: 'jobs_succeeded_per_s', name: 'jobs succeeded' }, { key: 'contended_per_s', name: 'contended' }], '/s');
  lineChart($('#chart-wait'), samples, [{ key: 'wait_mean_ms', name: 'mean' }, { key: 'wait_p99_ms', name: 'p99' }], 'ms');
}

// ---- server --------------------------------------------------------------------------------

async function api(path, options = {}) {
  const res = await fetch(path, options);
  const body = await res.json().catch(() => ({ error: `HTTP ${res.status}` }));
  if (!res.ok) {
    const err = new Error(body.error || `HTTP ${res.status}`);
    err.status = res.status;
    err.body = body;
    throw err;
  }
  return body;
}

async function act(path, what) {
  const headers = { 'Content-Type': 'application/json' };
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  try {
    await api(path, { method: 'POST', headers, body: '{}' });
    toast(`${what}: done`);
  } catch (e) {
    if (e.status === 401) {
      const token = prompt('This action needs the dashboard\'s token:');
      if (token) {
        state.token = token;
        sessionStorage.setItem('redcoord-token', token);
        return act(path, what);
      }
    }
    toast(`${what}: ${e.message}`, true);
  }
}

function renderAll() {
  renderOverview();
  renderLocks();
  renderLeaders();
  renderJobStates();
  renderRecurring();
  renderCharts();
  const errors = Object.entries(state.snap.errors || {});
  const banner = $('#banner');
  banner.hidden = errors.length === 0;
  banner.textContent = errors.map(([k, v]) => `${k}: ${v}`).join(' · ');
  tick();
}

let jobsReload = 0;
function onEvents(list) {
  state.events.push(...list);
  if (state.events.length > 500) state.events.splice(0, state.events.length - 500);
  renderEvents();
  if (list.some((e) => e.type === 'job') && currentTab() === 'jobs') {
    clearTimeout(jobsReload);
    jobsReload = setTimeout(() => {
      loadJobs();
      const d = state.jobs.detail;
      if (d && !$('#job-detail').hidden && list.some((e) => e.id === d.id)) openJob(d.id);
    }, 300);
  }
}

function connect() {
  const es = new EventSource('/api/stream');
  es.addEventListener('open', () => { $('#live').classList.remove('off'); });
  es.addEventListener('error', () => {
    $('#live').classList.add('off');
    $('#conn-text').textContent = 'reconnecting…';
  });
  es.addEventListener('info', (m) => {
    // A (re)connection: the server sends its whole event tail next.
    state.info = JSON.parse(m.data);
    state.events = [];
    $('#conn-text').textContent = state.info.url || state.info.prefix;
    $('#scheduler-name').textContent = `scheduler “${state.info.scheduler}”`;
    $('#foot').textContent = `prefix ${state.info.prefix} · ${state.info.read_only ? 'read-only' : 'actions enabled'}${state.info.token_required ? ' (token required)' : ''}`;
  });
  es.addEventListener('snapshot', (m) => {
    state.snap = JSON.parse(m.data);
    state.snapAt = Date.now();
    renderAll();
  });
  es.addEventListener('events', (m) => onEvents(JSON.parse(m.data)));
}

document.addEventListener('DOMContentLoaded', () => {
  window.addEventListener('hashchange', showTab);
  document.addEventListener('click', (ev) => {
    const t = ev.target.closest('button, tr.click');
    if (!t) return;
    if (t.matches('.release')) {
      const name = t.dataset.name;
      if (confirm(`Force release the lock "${name}"? Its holder loses it at its next renewal.`)) {
        act(`/api/locks/${encodeURIComponent(name)}/release`, `release ${name}`);
      }
    } else if (t.matches('.chip')) {
      state.jobs.state = t.dataset.state;
      state.jobs.offset = 0;
      loadJobs();
    } else if (t.matches('tr.click')) {
      location.hash = `jobs/${encodeURIComponent(t.dataset.id)}`;
    } else if (t.dataset.jobAction) {
      const id = $('#job-detail').dataset.id;
      act(`/api/jobs/${encodeURIComponent(id)}/${t.dataset.jobAction}`, `${t.dataset.jobAction} ${id}`).then(() => openJob(id));
    } else if (t.id === 'page-prev') {
      state.jobs.offset = Math.max(0, state.jobs.offset - state.jobs.count);
      loadJobs();
    } else if (t.id === 'page-next') {
      state.jobs.offset += state.jobs.count;
      loadJobs();
    }
  });
  $('#job-filter').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const id = $('#job-id').value.trim();
    state.jobs.fn = $('#job-function').value.trim();
    state.jobs.offset = 0;
    if (id) location.hash = `jobs/${encodeURIComponent(id)}`;
    loadJobs();
  });
  for (const id of ['#ev-jobs', '#ev-members', '#ev-actions']) $(id).addEventListener('change', renderEvents);
  renderEvents();
  showTab();
  connect();
  setInterval(tick, 250);
});
