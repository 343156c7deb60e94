// The dashboard's page in headless Chromium (run by run.sh, which starts the cluster):
// nodes, a held lock with its fencing token, a leader change after the leader is killed, and a
// job going through its states. Exits non-zero, naming the step, on the first failure.
import { chromium } from 'playwright-core';
import path from 'node:path';

const url = process.env.E2E_URL;
const fence = process.env.E2E_FENCE;
const out = process.env.E2E_OUT || '.';
const pids = Object.fromEntries((process.env.E2E_NODE_PIDS || '').split(',').map((p) => p.split('=')));
const started = Date.now();

function log(step) { console.log(`e2e: ${((Date.now() - started) / 1000).toFixed(1)} s: ${step}`); }

// The text content of the first element matching `selector` once it matches the regular
// expression `want` (and is not `not`). No eval in the page: its Content-Security-Policy
// forbids it.
async function waitText(page, selector, want, what, timeout = 30000, not = null) {
  const handle = await page.waitForFunction(([sel, re, no]) => {
    const el = document.querySelector(sel);
    const t = el ? el.textContent.trim() : null;
    return t !== null && new RegExp(re).test(t) && t !== no ? t : null;
  }, [selector, want.source, not], { timeout, polling: 100 }).catch((e) => e);
  if (handle instanceof Error) {
    const now = await page.$eval(selector, (el) => el.textContent.trim()).catch(() => '(no such element)');
    throw new Error(`${what}: '${selector}' is '${now}' (${handle.message.split('\n')[0]})`);
  }
  return handle.jsonValue();
}

const browser = await chromium.launch({
  executablePath: process.env.E2E_CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
});
let failed = false;
const page = await browser.newPage({ viewport: { width: 1360, height: 860 } });
const errors = [];
page.on('pageerror', (e) => errors.push(e.message));
try {
  // 1. Overview: the three nodes, alive.
  await page.goto(`${url}#overview`);
  for (const n of ['node-1', 'node-2', 'node-3']) {
    await waitText(page, `#nodes-table tr[data-node="${n}"] .pill`, /^alive$/, `node ${n}`);
  }
  log('the three nodes are shown alive');

  // 2. Locks: the lock held by the helper, with the fencing token it was granted.
  await page.click('#tabs a[data-tab="locks"]');
  const shown = await waitText(page, '#holders-table tr[data-kind="mutex"][data-name="e2e-report"] .fence',
    /^\d+$/, 'the held lock e2e-report');
  if (shown !== fence) throw new Error(`lock e2e-report: fencing token ${shown} shown, ${fence} granted`);
  await waitText(page, '#holders-table tr[data-name="e2e-report"] .ttl .t', /\d/, 'a TTL countdown');
  await waitText(page, '#holders-table tr[data-kind="leadership"][data-name="scheduler"] .node', /^node-/, 'the leadership among the leases');
  await page.screenshot({ path: path.join(out, 'dashboard.png') });
  log(`lock e2e-report shown with fencing token ${shown}`);

  // 3. Jobs: the demo's long job runs (it was queued first).
  await page.click('#tabs a[data-tab="jobs"]');
  await page.fill('#job-function', 'long-job');
  await page.click('#job-filter button[type="submit"]');
  await page.click('#job-states .chip[data-state="running"]');
  await waitText(page, '#jobs-table tr[data-state="running"] td:nth-child(2)', /^long-job$/, 'the long job running');
  log('the long job is shown running');

  // 4. Leaders: kill the leader, by PID; another node takes over with a higher term.
  await page.click('#tabs a[data-tab="leaders"]');
  const leaderSel = '#leaders-table tr[data-name="scheduler"]';
  const leader = await waitText(page, `${leaderSel} .leader-node`, /^node-/, 'a leader');
  const term = BigInt(await waitText(page, `${leaderSel} .term`, /^\d+$/, 'its term'));
  if (!pids[leader]) throw new Error(`no PID for leader ${leader}`);
  process.kill(Number(pids[leader]), 'SIGKILL');
  log(`killed the leader ${leader} (pid ${pids[leader]}, term ${term})`);
  const next = await waitText(page, `${leaderSel} .leader-node`, /^node-/, 'a new leader', 30000, leader);
  const nextTerm = BigInt(await waitText(page, `${leaderSel} .term`, /^\d+$/, 'the new term'));
  if (nextTerm <= term) throw new Error(`new term ${nextTerm} is not above ${term}`);
  await waitText(page, '#leader-history table[data-name="scheduler"] tbody tr:nth-child(2)', /./, 'two terms in the history');
  log(`${next} leads now (term ${nextTerm})`);

  await page.click('#tabs a[data-tab="overview"]');
  await waitText(page, `#nodes-table tr[data-node="${leader}"] .pill`, /^dead$/, `the killed node ${leader} dead`);
  await page.screenshot({ path: path.join(out, 'dashboard-overview.png') });
  log(`${leader} is shown dead`);

  // 5. The long job ends succeeded (on another node if it ran on the killed one); its detail
  // shows it went through queued, running and succeeded.
  await page.click('#tabs a[data-tab="jobs"]');
  await page.click('#job-states .chip[data-state="succeeded"]');
  await waitText(page, '#jobs-table tr[data-state="succeeded"] td:nth-child(2)', /^long-job$/, 'the long job succeeded', 45000);
  await page.click('#jobs-table tr[data-state="succeeded"]');
  const history = await waitText(page, '#job-detail table tbody', /succeeded/, 'the job\'s history');
  for (const s of ['queued', 'running', 'succeeded']) {
    if (!history.includes(s)) throw new Error(`the long job's history has no '${s}': ${history}`);
  }
  await page.screenshot({ path: path.join(out, 'dashboard-jobs.png'), fullPage: true });
  log('the long job is shown succeeded, with queued and running in its history');

  // 6. Events: the kill shows as a dead node in the live tail.
  await page.click('#tabs a[data-tab="events"]');
  await waitText(page, '#event-list', /dead/, 'the dead node in the events');
  log('the events show the dead node');
  if (errors.length) throw new Error(`page errors: ${errors.join('; ')}`);
} catch (e) {
  failed = true;
  console.error(`e2e: FAILED: ${e.message}`);
  await page.screenshot({ path: path.join(out, 'dashboard-failure.png'), fullPage: true }).catch(() => {});
} finally {
  await browser.close();
}
if (!failed) log('OK');
process.exit(failed ? 1 : 0);
