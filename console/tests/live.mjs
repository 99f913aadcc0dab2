// The console's live and operations pages in a real browser (Debian's chromium, driven by
// playwright-core): run by e2e/tests/console.rs against a real stack whose agent is running,
// after it created a blocking session and an alert rule that fires, or by hand:
//
//   CONSOLE_URL=https://127.0.0.1:8443 ADMIN_PASSWORD=… WATCHER_PASSWORD=… INSTANCE=… \
//   BLOCKING_PID=… BLOCKED_PID=… ALERT_RULE=… node tests/live.mjs
//
// Checks: the fleet's key figures; a live update arrives on the instance page without a
// reload; the blocking session is in the locks tree under its blocker, with both queries, and
// its lock wait in the waits chart; every instance section; a run's CSV saved through the
// browser's download is the API's answer under its file name; the firing alert on the alerts page; the replication and backups pages;
// the theme toggle (remembered over a reload); keyboard navigation; a narrow window; a viewer
// sees no alert control; axe-core finds no serious or critical violation on any page; no
// console error or failed request. Screenshots go to ARTIFACTS. Prints one JSON line of facts.
import { readFileSync } from 'node:fs';
import { account, BrowserTest, env, expect } from './lib.mjs';

const url = env('CONSOLE_URL');
const admin = account('ADMIN', 'admin');
const watcher = account('WATCHER', 'watcher');
const instance = env('INSTANCE');
const blockingPid = env('BLOCKING_PID');
const blockedPid = env('BLOCKED_PID');
const alertRule = env('ALERT_RULE');
const artifacts = process.env.ARTIFACTS;
const TIMEOUT = 15_000;
// The alert evaluator's round is 15 s by default: a firing alert may take two rounds.
const ALERT_TIMEOUT = 90_000;

// The wait family's window is 10 s: the blocked session's first window, then the live feed
// that moves the waits chart's range to it.
const WAITS_TIMEOUT = 45_000;

const t = await BrowserTest.open({ timeout: TIMEOUT, artifacts, options: { colorScheme: 'light', acceptDownloads: true } });
const { page, facts, shot, axe, signIn, signOut } = t;
try {
  t.step = 'sign-in';
  await page.goto(url);
  await page.getByRole('heading', { name: 'Sign in to Lasect' }).waitFor();
  await axe('sign-in');
  await signIn(admin);
  const row = page.locator(`tr[data-instance="${instance}"]`);
  await row.waitFor();

  t.step = 'fleet';
  // The figures need two database samples: the agent is running, so they come.
  await page.waitForFunction(
    (name) => {
      const cell = document.querySelector(`tr[data-instance="${name}"] td[data-figure="tps"]`);
      return cell && /\d/.test(cell.textContent);
    },
    instance,
    { timeout: 60_000, polling: 1000 },
  ).catch(() => {});
  facts.figures = {};
  for (const f of ['connections', 'tps', 'cache_hit', 'replication_lag', 'disk']) {
    const cell = row.locator(`td[data-figure="${f}"]`);
    facts.figures[f] = (await cell.count()) ? (await cell.innerText()).replace(/\s+/g, ' ').trim() : null;
  }
  expect(/^\d+ ?\/ ?\d+$/.test(facts.figures.connections ?? ''), `connections of max: ${JSON.stringify(facts.figures)}`);
  await axe('fleet');
  await shot('fleet');

  t.step = 'instance';
  await row.getByRole('link', { name: instance }).click();
  await page.getByRole('heading', { name: instance, level: 1 }).waitFor();
  await page.evaluate(() => (window.__sameDocument = true));
  const openedAt = await page.evaluate(() => Date.now());
  const instanceId = /#\/instances\/(\d+)/.exec(page.url())?.[1];
  expect(instanceId, `the instance id in the URL: ${page.url()}`);
  const live = page.getByTestId('live');
  await page.locator('[data-testid="live"][data-state="open"]').waitFor();
  const activity = page.getByTestId('activity');
  await activity.waitFor();
  const firstTime = await activity.getAttribute('data-time');
  t.step = 'live-update';
  // A sample taken after the page was drawn, pushed over the WebSocket.
  await page.waitForFunction(
    (t) => {
      const el = document.querySelector('[data-testid="activity"]');
      return el && el.getAttribute('data-time') > t;
    },
    firstTime,
    { timeout: 30_000 },
  );
  facts.liveUpdate = {
    before: firstTime,
    after: await activity.getAttribute('data-time'),
    events: Number(await live.getAttribute('data-events')),
    sameDocument: await page.evaluate(() => window.__sameDocument === true),
  };
  expect(facts.liveUpdate.sameDocument, 'no reload');
  expect(facts.liveUpdate.events > 0, 'live events counted');

  t.step = 'locks';
  const blocker = page.locator(`[data-testid="lock-tree"] > li[data-pid="${blockingPid}"]`);
  const blocked = blocker.locator(`li[data-pid="${blockedPid}"]`);
  await blocked.waitFor({ timeout: 30_000 });
  facts.lockTree = {
    blocking: (await blocker.locator('.lock-node').first().innerText()).replace(/\s+/g, ' ').trim(),
    blocked: (await blocked.locator('.lock-node').first().innerText()).replace(/\s+/g, ' ').trim(),
  };
  await axe('instance');
  await shot('instance');

  t.step = 'sections';
  facts.sections = {};
  for (const name of ['Waits', 'Tables and indexes', 'WAL and checkpoints', 'Replication', 'Settings', 'Logs', 'Collector events']) {
    await page.getByRole('button', { name, exact: true }).click();
    await page.getByRole('heading', { name, level: 2 }).waitFor({ state: 'attached' });
    // Each section shows its data or says there is none, never only a spinner.
    const panel = page.locator('section.panel').last();
    await page.waitForFunction(
      () => {
        const p = [...document.querySelectorAll('section.panel')].pop();
        return p && p.querySelectorAll('table, canvas, p.muted, dl').length > 0;
      },
      null,
      { timeout: TIMEOUT },
    );
    if (name === 'Waits') {
      // The blocked session's lock wait is in the chart, from a window sampled after the page
      // opened: the range follows the live feed instead of ending when the page was drawn.
      await page.waitForFunction(
        (opened) => {
          const w = document.querySelector('[data-testid="waits"]');
          const bands = w?.querySelector('.chart[data-bands]')?.getAttribute('data-bands') ?? '';
          return w && Date.parse(w.getAttribute('data-to')) > opened + 1000 && bands.split('|').includes('Lock:relation');
        },
        openedAt,
        { timeout: WAITS_TIMEOUT, polling: 500 },
      );
      const waits = page.getByTestId('waits');
      facts.waits = {
        bands: await waits.locator('.chart').getAttribute('data-bands'),
        to: await waits.getAttribute('data-to'),
        openedAt: new Date(openedAt).toISOString(),
      };
    }
    facts.sections[name] = (await panel.innerText()).replace(/\s+/g, ' ').slice(0, 160);
    const slug = name.toLowerCase().replace(/[^a-z]+/g, '-');
    await axe(`instance-${slug}`);
    await shot(`instance-${slug}`);
  }
  await page.getByRole('button', { name: 'Settings', exact: true }).click();
  await page.getByRole('cell', { name: 'max_connections', exact: true }).waitFor();

  t.step = 'download';
  // A CSV export made through the API, saved with the run page's Download: the browser stores
  // the API's bytes under the API's file name.
  const api = page.context().request;
  const at = (path) => new URL(path, url).href;
  const login = await api.post(at('/api/v1/auth/login'), { data: { username: admin.user, password: admin.password } });
  expect(login.ok(), `API sign-in: ${login.status()}`);
  const bearer = { authorization: `Bearer ${(await login.json()).access_token}` };
  const started = await api.post(at(`/api/v1/instances/${instanceId}/export?wait=60`), {
    headers: bearer,
    data: { sql: "SELECT g AS n, 'line ' || g || ', \"quoted\"' AS label FROM generate_series(1, 3) AS g" },
  });
  expect(started.ok(), `export: ${started.status()} ${await started.text()}`);
  const run = await started.json();
  expect(run.status === 'succeeded', `the export succeeded: ${JSON.stringify(run)}`);
  await page.goto(`${url}#/runs/${run.id}`);
  await page.getByTestId('run-status').getByText('succeeded').waitFor();
  const [download] = await Promise.all([page.waitForEvent('download'), page.getByTestId('run-download').click()]);
  const saved = readFileSync(await download.path());
  const direct = await api.get(at(`/api/v1/runs/${run.id}/download`), { headers: bearer });
  expect(direct.ok(), `the API's download: ${direct.status()}`);
  const body = await direct.body();
  facts.download = {
    run: run.id,
    name: download.suggestedFilename(),
    disposition: direct.headers()['content-disposition'] ?? null,
    contentType: direct.headers()['content-type'] ?? null,
    bytes: saved.length,
    same: Buffer.compare(saved, body) === 0,
    text: saved.toString('utf8'),
  };
  expect(facts.download.same, `the saved file is the API's answer: ${facts.download.text} vs ${body.toString('utf8')}`);
  expect(facts.download.name === `run-${run.id}.csv`, `the API's file name: ${JSON.stringify(facts.download)}`);
  await page.getByText(`saved as run-${run.id}.csv`).waitFor();
  await axe('run-download');
  await shot('run-download');

  t.step = 'alerts';
  await page.getByRole('link', { name: 'Alerts' }).click();
  await page.getByRole('heading', { name: 'Alerts', level: 1 }).waitFor();
  const firing = page.locator(`tr[data-alert="${alertRule}"][data-state="firing"]`);
  const deadline = Date.now() + ALERT_TIMEOUT;
  while (!(await firing.count())) {
    expect(Date.now() < deadline, `alert ${alertRule} firing within ${ALERT_TIMEOUT} ms`);
    await page.getByRole('button', { name: 'Reload' }).click();
    await page.waitForTimeout(1000);
  }
  facts.alertRow = (await firing.innerText()).replace(/\s+/g, ' ').trim();
  facts.adminAlertControls = await firing.getByRole('button').allInnerTexts();
  await page.getByTestId('rules').getByRole('cell', { name: alertRule, exact: true }).waitFor();
  await axe('alerts');
  await shot('alerts');

  t.step = 'silence';
  await firing.getByRole('button', { name: 'Silence…' }).click();
  facts.silenceMatchers = await page.getByLabel('Matchers').inputValue();
  await page.getByLabel('Why').fill('the console scenario');
  await page.getByRole('button', { name: 'Add silence' }).click();
  const silence = page.getByTestId('silences').locator('tr', { hasText: `alertname=${alertRule}` });
  await silence.waitFor();
  facts.silenceRow = (await silence.innerText()).replace(/\s+/g, ' ').trim();
  await shot('alerts-silenced');
  await silence.getByRole('button', { name: 'Remove' }).click();
  await silence.getByText('removed', { exact: true }).waitFor();
  facts.silenceRemoved = true;

  t.step = 'replication';
  await page.getByRole('link', { name: 'Replication' }).click();
  await page.getByRole('heading', { name: 'Replication', level: 1 }).waitFor();
  await page.getByRole('heading', { name: 'Topology' }).waitFor();
  facts.replication = (await page.locator('main').innerText()).replace(/\s+/g, ' ').slice(0, 200);
  await axe('replication');
  await shot('replication');

  t.step = 'backups';
  await page.getByRole('link', { name: 'Backups' }).click();
  await page.getByRole('heading', { name: 'Catalogue' }).waitFor();
  await page.getByText('No repository for this instance.').waitFor();
  await page.getByText('No catalogue: the instance has no repository.').waitFor();
  await axe('backups');
  await shot('backups');

  t.step = 'theme';
  const theme = page.getByTestId('theme');
  await theme.click();
  facts.themeAfterToggle = await page.evaluate(() => document.documentElement.dataset.theme ?? null);
  await page.reload();
  await page.getByRole('heading', { name: 'Recovery window' }).waitFor();
  facts.themeAfterReload = await page.evaluate(() => document.documentElement.dataset.theme ?? null);
  facts.darkBackground = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  await page.getByRole('link', { name: 'Fleet' }).click();
  await row.waitFor();
  await axe('fleet-dark');
  await shot('fleet-dark');
  await theme.click();
  facts.themeBack = await page.evaluate(() => document.documentElement.dataset.theme ?? null);

  t.step = 'keyboard';
  // From the top of the page, Tab reaches the Alerts link, Enter follows it.
  await page.evaluate(() => document.activeElement?.blur());
  let reached = false;
  for (let i = 0; i < 20 && !reached; i++) {
    await page.keyboard.press('Tab');
    reached = await page.evaluate(() => document.activeElement?.textContent?.trim() === 'Alerts');
  }
  expect(reached, 'Tab reaches the Alerts link');
  await page.keyboard.press('Enter');
  await page.getByRole('heading', { name: 'Alerts', level: 1 }).waitFor();
  facts.keyboard = true;

  t.step = 'narrow';
  await t.narrow(async () => {
    await page.getByRole('link', { name: 'Fleet' }).click();
    await row.getByRole('link', { name: instance }).click();
    await page.getByRole('heading', { name: instance, level: 1 }).waitFor();
    await page.locator('.chart canvas').first().waitFor();
    facts.narrowOverflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    await shot('instance-narrow');
  });

  t.step = 'viewer';
  await signOut(admin);
  await signIn(watcher);
  await row.waitFor();
  await page.getByRole('link', { name: 'Alerts' }).click();
  await firing.waitFor({ timeout: 30_000 });
  facts.viewerAlertControls = await firing.getByRole('button').allInnerTexts();
  facts.viewerSilenceForm = await page.getByRole('button', { name: 'Add silence' }).count();
  await axe('alerts-viewer');
  await shot('alerts-viewer');
  await signOut(watcher);

  await t.finish();
} finally {
  await t.close();
}
