// console.mjs drives the IT staff's console (the node's admin listener) in
// headless Chromium (playwright-core), as an engineer would: sign in with the
// token, watch a series sent with `anomalynode send` appear and complete on
// the Overview without a reload, open its Series page, run the rule tester on
// files, find the failed destination's dead letters and replay them from the
// page (with its confirmation), check and reload the configuration.
//
// usage: node console.mjs BASE_URL ARTIFACT_DIR RESULTS.json
// Environment (set by run.sh): PLAYWRIGHT_CORE, CHROMIUM (default
// /usr/bin/chromium), CONSOLE_TOKEN, SEND (sends the series), BACKUP_UP
// (starts the failed destination), ROUTE_FILE (an MR file), CT_FILE.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';

const [base, artifacts, resultsPath] = process.argv.slice(2);
if (!resultsPath) {
  console.error('usage: node console.mjs BASE_URL ARTIFACT_DIR RESULTS.json');
  process.exit(2);
}
const { chromium } = await import(process.env.PLAYWRIGHT_CORE || 'playwright-core');
fs.mkdirSync(artifacts, { recursive: true });

const results = [];
function record(name, pass, detail) {
  results.push({ name, pass, detail });
  console.log(`TEST ${pass ? 'PASS' : 'FAIL'} ${name}: ${detail}`);
}
// step runs one check; an exception fails it (with a screenshot) and the
// run goes on, so one broken page does not hide the others.
async function step(name, fn) {
  try {
    const detail = await fn();
    record(name, true, detail || 'ok');
    return true;
  } catch (e) {
    await shot(`${name}-failure`).catch(() => {});
    record(name, false, String(e && e.message ? e.message : e).split('\n')[0]);
    return false;
  }
}

const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'e2e-console-chromium-'));
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  viewport: { width: 1400, height: 900 },
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
});
const page = context.pages()[0] || (await context.newPage());
page.setDefaultTimeout(15000);
const consoleErrors = [];
page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
const shot = (name) => page.screenshot({ path: path.join(artifacts, `${name}.png`), fullPage: true });
const run = (file) => execFileSync(file, { stdio: ['ignore', 'pipe', 'pipe'], timeout: 60000 }).toString();
const text = (sel) => page.locator(sel).first().innerText();

let uid = '';
let seg = '';
const state = () => page.locator(`#recent tr[data-uid="${uid}"]`).getAttribute('data-state', { timeout: 1000 }).catch(() => '');

async function waitFor(what, seconds, fn) {
  const until = Date.now() + seconds * 1000;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > until) throw new Error(`timed out after ${seconds}s waiting for ${what}`);
    await page.waitForTimeout(250);
  }
}

try {
  await step('sign-in', async () => {
    await page.goto(base + '/');
    if (!page.url().endsWith('/login')) throw new Error(`not sent to /login without the token (at ${page.url()})`);
    await page.fill('input[name=token]', 'not-the-token-at-all');
    await page.click('#login button');
    if (!(await text('#error')).includes('wrong token')) throw new Error('a wrong token was not refused');
    await page.fill('input[name=token]', process.env.CONSOLE_TOKEN);
    await page.click('#login button');
    await page.waitForSelector('h1:has-text("Overview")');
    return 'redirected to /login, wrong token refused, signed in with the token';
  });

  await step('series-appears-live', async () => {
    await page.waitForSelector('#live #readiness');
    await page.evaluate(() => { window.__noReload = 'still-here'; });
    const before = await page.locator('tr.series').count();
    if (before !== 0) throw new Error(`${before} series before sending`);
    run(process.env.SEND);
    uid = await waitFor('the series on the Overview', 60, async () => page.locator('tr.series').first().getAttribute('data-uid', { timeout: 500 }).catch(() => ''));
    await shot('overview-receiving');
    return `series ${uid} shown`;
  });

  await step('series-completes-live', async () => {
    const st = await waitFor('the series to complete with findings', 180, async () => {
      const s = await state();
      return ['delivering', 'delivered', 'failed'].includes(s) ? s : '';
    });
    const row = await page.locator(`#recent tr[data-uid="${uid}"]`).innerText();
    if (!/\d+ finding\(s\) in \d+ slices|\d+ of \d+ slices anomalous/.test(row)) throw new Error(`no findings in the row: ${row}`);
    if (!row.includes('MRSCANNER') || !row.includes('MR')) throw new Error(`source AE or modality missing: ${row}`);
    if (!row.includes('archive')) throw new Error(`archive not shown as delivered: ${row}`);
    if ((await page.evaluate(() => window.__noReload)) !== 'still-here') throw new Error('the page was reloaded');
    await shot('overview-completed');
    return `state ${st}; no reload; ${row.replace(/\s+/g, ' ').slice(0, 160)}`;
  });

  await step('destination-fails-live', async () => {
    await waitFor('the backup destination to fail (dead letter)', 60, async () => (await state()) === 'failed');
    if ((await page.evaluate(() => window.__noReload)) !== 'still-here') throw new Error('the page was reloaded');
    const row = await page.locator(`#recent tr[data-uid="${uid}"]`).innerText();
    if (!row.includes('backup: dead-lettered')) throw new Error(`row does not name the dead-lettered destination: ${row}`);
    return 'backup dead-lettered, shown live';
  });

  await step('series-page', async () => {
    await page.click(`#recent a[href="/series/${uid}"]`);
    await page.waitForSelector('#timeline');
    const tl = await text('#timeline');
    for (const want of ['first instance received', 'ingest: series complete', 'output: series finalised', 'export: delivered', 'export: gave up, job dead-lettered']) {
      if (!tl.includes(want)) throw new Error(`timeline lacks "${want}"`);
    }
    seg = (await text('#seg')).trim();
    if (!/^[0-9.]+$/.test(seg)) throw new Error(`no SEG UID (${seg})`);
    const facts = await text('dl.facts');
    if (!facts.includes('mr-brain')) throw new Error('rule/model missing');
    await shot('series');
    return `timeline complete, SEG ${seg}`;
  });

  await step('rule-tester', async () => {
    await page.goto(base + '/routing');
    await page.setInputFiles('#route-file', process.env.ROUTE_FILE);
    await page.fill('input[name=calling_ae]', 'MRSCANNER');
    await page.click('#route-test button');
    await page.waitForSelector('#decision');
    const d = await text('#decision');
    if (!d.includes('rule mr-brain') || !d.includes('model mr-brain')) throw new Error(`MR file: ${d.slice(0, 200)}`);
    const failedRules = await text('#failed');
    if (!failedRules.includes('ct-not-here') || !failedRules.includes('modality')) throw new Error(`earlier rule not explained: ${failedRules}`);
    await shot('routing');
    await page.setInputFiles('#route-file', process.env.CT_FILE);
    await page.click('#route-test button');
    await page.waitForSelector('#decision');
    const ct = await text('#decision p.decision');
    if (!ct.includes('ignored (ct-not-here)')) throw new Error(`CT file: ${ct}`);
    return `MR → mr-brain (ct-not-here failed on modality); CT → ${ct}`;
  });

  await step('replay-from-page', async () => {
    await page.goto(base + '/dead-letters');
    const rows = page.locator('#dead tr[data-seq]');
    const n = await rows.count();
    if (n === 0) throw new Error('no dead letters listed');
    const listing = await text('#dead');
    if (!listing.includes('backup')) throw new Error('the dead letters do not name the backup destination');
    await shot('dead-letters');
    run(process.env.BACKUP_UP);
    const segRow = page.locator('#dead tr[data-seq]', { hasText: seg });
    if ((await segRow.count()) !== 1) throw new Error(`the SEG ${seg} is not among the dead letters`);
    if ((await segRow.locator(`a[href="/series/${uid}"]`).count()) !== 1) throw new Error('the SEG\'s dead letter does not link to its series');
    await segRow.locator('button.replay').click();
    await page.waitForSelector('#confirm');
    await shot('replay-confirm');
    await page.click('#confirm-replay');
    const flash1 = await text('#flash');
    if (!flash1.includes('replayed 1 job(s)')) throw new Error(`replay one: ${flash1}`);
    let rest = 0;
    if ((await page.locator('#replay-all').count()) > 0) {
      rest = await page.locator('#dead tr[data-seq]').count();
      await page.click('#replay-all');
      await page.waitForSelector('#confirm');
      await page.click('#confirm-replay');
      const flash2 = await text('#flash');
      if (!flash2.includes('replayed')) throw new Error(`replay all: ${flash2}`);
    }
    if ((await page.locator('#dead tr[data-seq]').count()) !== 0) throw new Error('dead letters left after replaying all');
    return `${n} dead letter(s): the SEG's replayed, then the other ${rest}`;
  });

  await step('delivered-after-replay', async () => {
    await page.goto(base + '/');
    await page.evaluate(() => { window.__noReload = 'still-here'; });
    await waitFor('the series to be delivered everywhere', 60, async () => (await state()) === 'delivered');
    if ((await page.evaluate(() => window.__noReload)) !== 'still-here') throw new Error('the page was reloaded');
    await page.setViewportSize({ width: 1400, height: 760 });
    await page.screenshot({ path: path.join(artifacts, 'overview.png') });
    const row = await page.locator(`#recent tr[data-uid="${uid}"]`).innerText();
    return `delivered, live: ${row.replace(/\s+/g, ' ').slice(0, 160)}`;
  });

  await step('configuration', async () => {
    await page.goto(base + '/config');
    const eff = await text('#effective');
    if (!eff.includes('e2e-console') || !eff.includes('token_file')) throw new Error('effective configuration missing');
    const bad = path.join(os.tmpdir(), `bad-${process.pid}.yaml`);
    fs.writeFileSync(bad, 'node: {name: x}\nlog:\n  level: loud\nadmin: {listen: "0.0.0.0:1"}\n');
    await page.setInputFiles('#config-check input[type=file]', bad);
    await page.click('#config-check button');
    const check = await text('#check');
    fs.unlinkSync(bad);
    if (!check.includes(`${path.basename(bad)}:3: log.level`) || !check.includes(`${path.basename(bad)}:4: admin.listen`)) throw new Error(`check: ${check}`);
    await page.click('#config-reload button');
    await page.waitForSelector('#confirm');
    await page.click('#confirm-reload');
    const flash = await text('#flash');
    if (!flash.includes('configuration reloaded')) throw new Error(`reload: ${flash}`);
    await shot('configuration');
    return 'effective config shown; bad file problems with file:line; reload confirmed';
  });

  await step('no-script-errors', async () => {
    const csp = consoleErrors.filter((e) => /Content Security Policy|Refused/.test(e));
    if (csp.length) throw new Error(csp[0]);
    return `${consoleErrors.length} console error(s), none from the CSP${consoleErrors.length ? ' (first: ' + consoleErrors[0].slice(0, 120) + ')' : ''}`;
  });
} finally {
  fs.writeFileSync(resultsPath, JSON.stringify({ tests: results }, null, 2));
  await context.close();
}
