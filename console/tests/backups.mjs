// The backups page in a real browser (Debian's chromium, driven by playwright-core): run by
// e2e/tests/console_backups.rs against a stack whose instance has a posix repository with one
// full backup and one passed drill, and a second repository (`stuck`) whose backups never
// finish, or by hand:
//
//   CONSOLE_URL=https://127.0.0.1:8443 ADMIN_PASSWORD=… VIEWER_PASSWORD=… INSTANCE_ID=… \
//   REPOSITORY_ID=… STUCK_REPOSITORY_ID=… SCRATCH_DIR=… RESTORE_DIR=… node tests/backups.mjs
//
// Reads what the page shows (the catalogue's rows with their sizes, the recovery window, the
// latest drill with its RTO), then as the admin starts an incremental backup from the page and
// follows it without a reload (running, ended, then in the catalogue); a backup of the stuck
// stanza started from the page is shown running with its progress bar, a second one is refused
// with the API's reason, and the first is cancelled from the page; a drill is started from
// its options form with a check query; the admin restores the full backup from the restore
// form into RESTORE_DIR (after the form refused a relative directory and a time without a
// value by itself, warned about a time outside the recovery window, and showed the API's
// refusal of a malformed transaction id as the API words it), left running for inspection,
// and sees where the restored cluster is and its port and socket; a viewer sees the page without any button or form; axe-core finds no serious
// or critical violation.
// Screenshots go to ARTIFACTS. Prints one JSON line of facts.
import { account, BrowserTest, env, expect } from './lib.mjs';

const url = env('CONSOLE_URL');
const admin = account('ADMIN', 'admin');
const viewer = account('VIEWER', 'viewer');
const instanceId = env('INSTANCE_ID');
const repositoryId = env('REPOSITORY_ID');
const stuckRepositoryId = env('STUCK_REPOSITORY_ID');
// Both owned by the database's OS user: the drill's scratch copy, and where the restore goes.
const scratchDir = env('SCRATCH_DIR');
const restoreDir = env('RESTORE_DIR');
const CHECK_SQL = 'SELECT count(*) AS databases FROM pg_database';
const artifacts = process.env.ARTIFACTS;
// Backups go through the agent and pgBackRest: each wait is bounded, none is a sleep.
const TIMEOUT = 30_000;
const RUN_TIMEOUT = 120_000;

// The refusals the scenario provokes on purpose: a second backup of the stuck stanza (409),
// a restore to a transaction id that is none (422).
const expected = (p) =>
  (p.step === 'refused' && /409/.test(p.text)) || (p.step === 'restore-refused' && /422/.test(p.text));

const t = await BrowserTest.open({ timeout: TIMEOUT, artifacts });
const { page, facts, shot, axe } = t;
const text = async (locator) => (await locator.innerText()).replace(/\s+/g, ' ').trim();
const go = (hash) => page.evaluate((h) => (location.hash = h), hash);

async function signIn(who, load = false) {
  if (load) await page.goto(url);
  await t.signIn(who);
  await page.getByRole('button', { name: `${who.user} ▾` }).waitFor();
}

/** The rows of a repository's catalogue as the page shows them. */
async function catalogueRows(repository) {
  return page.locator(`[data-testid="catalogue"][data-repository="${repository}"] tbody tr`).evaluateAll((rows) =>
    rows.map((tr) => {
      const cell = (c) => tr.querySelector(`td[data-col="${c}"]`);
      const sized = (c) => ({ bytes: cell(c)?.dataset.bytes ?? null, text: cell(c)?.textContent.trim() ?? null });
      return {
        label: tr.dataset.label,
        type: cell('type')?.textContent.trim(),
        prior: tr.children[2]?.textContent.trim(),
        database_size: sized('database_size'),
        repo_size: sized('repo_size'),
        text: tr.textContent.replace(/\s+/g, ' ').trim(),
      };
    }),
  );
}

try {
  t.step = 'sign-in';
  await signIn(admin, true);

  t.step = 'backups';
  await go(`#/backups?instance=${instanceId}`);
  const catalogue = page.locator(`[data-testid="catalogue"][data-repository="${repositoryId}"]`);
  await catalogue.locator('tr[data-type="full"]').waitFor();
  // Runs started from here must be followed live: the stream is subscribed first.
  await page.locator('[data-testid="live-state"][data-state="open"]').waitFor();
  facts.before = await catalogueRows(repositoryId);
  const recovery = page.locator(`[data-testid="recovery-window"][data-repository="${repositoryId}"]`);
  facts.window = {
    earliest: await recovery.locator('time[data-edge="earliest"]').getAttribute('datetime'),
    latest: await recovery.locator('time[data-edge="latest"]').getAttribute('datetime'),
    text: await text(recovery),
  };
  const drill = page.getByTestId('latest-drill');
  facts.drill = {
    run: await drill.getAttribute('data-run'),
    passed: await drill.getAttribute('data-passed'),
    rtoSeconds: await page.getByTestId('drill-rto').getAttribute('data-seconds'),
    text: await text(drill),
  };
  facts.schedules = await page.getByTestId('schedules').locator('tbody tr').evaluateAll((rows) =>
    rows.map((tr) => ({
      next: tr.querySelector('time')?.getAttribute('datetime') ?? null,
      text: tr.textContent.replace(/\s+/g, ' ').trim(),
    })),
  );
  facts.missed = await text(page.getByTestId('missed'));
  facts.firings = await page.getByTestId('firings').locator('tbody tr').evaluateAll((rows) =>
    rows.map((tr) => ({ outcome: tr.dataset.outcome, text: tr.textContent.replace(/\s+/g, ' ').trim() })),
  );
  facts.adminButtons = await catalogue.getByRole('button').allInnerTexts();
  await axe('backups-admin');
  // The lesser violations too, by name (axe is loaded in the page by now).
  facts.axeMinor = await page.evaluate(async () =>
    (await window.axe.run(document, { resultTypes: ['violations'] })).violations.map((v) => `${v.id} ${v.impact}`),
  );
  await shot('backups-admin');

  t.step = 'incremental';
  // Everything the page shows of the new run from here on, as it shows it; and a mark the
  // page would lose on a reload.
  await page.evaluate(() => {
    window.__seen = [];
    window.__notReloaded = true;
    const note = () => {
      for (const li of document.querySelectorAll('[data-testid="running"] li[data-run], [data-testid="ended"] li[data-run]')) {
        const bar = li.querySelector('[role="progressbar"]');
        const seen = `${li.dataset.run} ${li.dataset.status} ${bar?.getAttribute('aria-valuenow') ?? '-'}`;
        if (!window.__seen.includes(seen)) window.__seen.push(seen);
      }
    };
    new MutationObserver(note).observe(document.body, { subtree: true, childList: true, attributes: true });
  });
  await catalogue.getByRole('button', { name: 'Incremental backup' }).click();
  const started = await text(page.getByTestId('action-message').filter({ hasText: 'Incremental backup of main' }));
  const run = /run (\d+)/.exec(started)?.[1];
  expect(run, `the started run in "${started}"`);
  facts.incremental = { run: Number(run), message: started };
  const ended = page.locator(`[data-testid="ended"] li[data-run="${run}"]`);
  await ended.waitFor({ timeout: RUN_TIMEOUT });
  facts.incremental.ended = { status: await ended.getAttribute('data-status'), text: await text(ended) };
  await catalogue.locator('tr[data-type="incr"]').waitFor({ timeout: RUN_TIMEOUT });
  facts.after = await catalogueRows(repositoryId);
  facts.incremental.seen = await page.evaluate((r) => window.__seen.filter((s) => s.startsWith(`${r} `)), run);
  facts.incremental.sameDocument = await page.evaluate(() => window.__notReloaded === true);
  facts.refreshed = await text(recovery.getByTestId('refreshed'));
  await shot('backups-after-incremental');

  t.step = 'drill';
  await catalogue.getByRole('button', { name: 'Run drill' }).click();
  const drillForm = page.getByTestId('drill-form');
  facts.drillForm = {
    expanded: await catalogue.getByRole('button', { name: 'Run drill' }).getAttribute('aria-expanded'),
    amcheckDefault: await drillForm.getByLabel(/amcheck/).isChecked(),
  };
  await drillForm.getByLabel('Check query (optional)').fill(CHECK_SQL);
  await drillForm.getByLabel(/amcheck/).uncheck();
  await drillForm.getByLabel(/^Scratch directory/).fill(scratchDir);
  await axe('backups-drill-form');
  await drillForm.getByRole('button', { name: 'Start drill' }).click();
  await drillForm.waitFor({ state: 'detached' });
  const drillStarted = await text(page.getByTestId('action-message').filter({ hasText: 'Restore drill of main' }));
  const drillRun = /run (\d+)/.exec(drillStarted)?.[1];
  expect(drillRun, `the started run in "${drillStarted}"`);
  const drillEnded = page.locator(`[data-testid="ended"] li[data-run="${drillRun}"]`);
  await drillEnded.waitFor({ timeout: RUN_TIMEOUT });
  // The drills are read again by themselves: the new one is the latest.
  await page.locator(`[data-testid="latest-drill"][data-run="${drillRun}"]`).waitFor();
  facts.pageDrill = {
    run: Number(drillRun),
    ended: await drillEnded.getAttribute('data-status'),
    passed: await drill.getAttribute('data-passed'),
    rtoSeconds: await page.getByTestId('drill-rto').getAttribute('data-seconds'),
    seen: await page.evaluate((r) => window.__seen.filter((s) => s.startsWith(`${r} `)), drillRun),
    sameDocument: await page.evaluate(() => window.__notReloaded === true),
  };

  t.step = 'restore-invalid';
  const restoreButton = catalogue.getByRole('button', { name: 'Restore', exact: true });
  await restoreButton.click();
  const form = page.getByTestId('restore-form');
  const dirInput = form.getByLabel('Target directory on the database host');
  const review = form.getByRole('button', { name: 'Review restore' });
  // Every restore request the page sends from here on.
  let restoreRequests = 0;
  page.on('request', (r) => {
    if (/\/restore$/.test(new URL(r.url()).pathname)) restoreRequests += 1;
  });
  // A relative directory: refused by the form, the field marked and described by the reason.
  await dirInput.fill('restored-here');
  await review.click();
  const dirError = form.getByTestId('restore-dir-error');
  facts.restoreInvalid = {
    dirError: await text(dirError),
    dirInvalid: await dirInput.getAttribute('aria-invalid'),
    dirDescribedBy: await dirInput.getAttribute('aria-describedby'),
    dirErrorId: await dirError.getAttribute('id'),
  };
  await axe('backups-restore-errors');
  // A time without a value: refused too; then a time before the window: warned about.
  await dirInput.fill(`${restoreDir}/never`);
  await form.getByRole('radio', { name: 'A time' }).check();
  await review.click();
  facts.restoreInvalid.targetError = await text(form.getByTestId('restore-target-error'));
  // A relative directory for the other tablespaces: refused by the form as well.
  const tablespacesAll = form.getByLabel('Every other tablespace below');
  await tablespacesAll.fill('tablespaces');
  await review.click();
  facts.restoreInvalid.tablespacesAllError = await text(form.getByTestId('restore-ts-all-error'));
  facts.restoreInvalid.tablespacesAllInvalid = await tablespacesAll.getAttribute('aria-invalid');
  await tablespacesAll.fill('');
  facts.restoreInvalid.window = await text(form.getByTestId('restore-window'));
  await form.getByRole('textbox', { name: 'A time' }).fill('2001-01-01 00:00:00+00');
  facts.restoreInvalid.windowWarning = await text(form.getByTestId('restore-window-warning'));
  facts.restoreInvalid.reviewShown = await form.getByTestId('restore-review').count();
  facts.restoreInvalid.requests = restoreRequests;
  await shot('backups-restore-invalid');

  t.step = 'restore-refused';
  // What the form cannot know is the API's to say, in its words: a transaction id that is none.
  await form.getByRole('radio', { name: 'A transaction id' }).check();
  await form.getByRole('textbox', { name: 'A transaction id' }).fill('last-tuesday');
  await review.click();
  await form.getByRole('button', { name: 'Restore now' }).click();
  facts.restoreInvalid.apiError = await text(form.getByTestId('restore-error'));
  facts.restoreInvalid.requestsAfterRefusal = restoreRequests;

  t.step = 'restore';
  await form.getByRole('radio', { name: 'Latest' }).check();
  await dirInput.fill(`${restoreDir}/from-page`);
  // The backup has no tablespace: the option is passed and does nothing.
  await form.getByLabel('Every other tablespace below').fill(`${restoreDir}/tablespaces`);
  const fullLabel = await catalogue.locator('tr[data-type="full"]').getAttribute('data-label');
  await form.getByLabel('Backup set').selectOption(fullLabel);
  await form.getByLabel(/Delta restore/).check();
  facts.restoreDeltaWarning = await form.locator(`#restore-${repositoryId}-delta-warning`).getAttribute('class');
  await form.getByLabel(/Delta restore/).uncheck();
  // Left running for inspection on a free port (the Rust side stops it).
  await form.getByLabel(/Leave the restored cluster running/).check();
  await review.click();
  const reviewed = form.getByTestId('restore-review');
  facts.restoreReview = await text(reviewed);
  await axe('backups-restore-review');
  await shot('backups-restore-review');
  await form.getByRole('button', { name: 'Restore now' }).click();
  const restoreStarted = await text(page.getByTestId('action-message').filter({ hasText: 'Restore of main' }));
  const restoreRun = /run (\d+)/.exec(restoreStarted)?.[1];
  expect(restoreRun, `the started run in "${restoreStarted}"`);
  const restoreEnded = page.locator(`[data-testid="ended"] li[data-run="${restoreRun}"]`);
  await restoreEnded.waitFor({ timeout: RUN_TIMEOUT });
  const restored = restoreEnded.getByTestId('restored');
  await restored.waitFor();
  facts.restore = {
    run: Number(restoreRun),
    label: fullLabel,
    formGone: await form.count(),
    ended: await restoreEnded.getAttribute('data-status'),
    dir: await restored.getAttribute('data-dir'),
    port: await restored.getByTestId('restored-started').getAttribute('data-port'),
    text: await text(restored),
    seen: await page.evaluate((r) => window.__seen.filter((s) => s.startsWith(`${r} `)), restoreRun),
  };
  await shot('backups-restored');

  t.step = 'stuck';
  const stuckCatalogue = page.locator(`[data-testid="catalogue"][data-repository="${stuckRepositoryId}"]`);
  await stuckCatalogue.getByRole('button', { name: 'Full backup' }).click();
  const stuckStarted = await text(page.getByTestId('action-message').filter({ hasText: 'Full backup of stuck' }));
  const stuckRun = /run (\d+)/.exec(stuckStarted)?.[1];
  expect(stuckRun, `the started run in "${stuckStarted}"`);
  const stuck = page.locator(`[data-testid="running"] li[data-run="${stuckRun}"]`);
  await stuck.filter({ hasText: 'stanza stuck' }).waitFor();
  // The agent reports a running backup's progress every 2 s: pushed to the page.
  await page.locator(`[data-testid="running"] li[data-run="${stuckRun}"][data-progress-at]`).waitFor({ timeout: RUN_TIMEOUT });
  facts.stuck = {
    run: Number(stuckRun),
    progressAt: await stuck.getAttribute('data-progress-at'),
    valueNow: await stuck.getByRole('progressbar').getAttribute('aria-valuenow'),
    running: await text(stuck),
    progressbars: await stuck.getByRole('progressbar').count(),
  };
  await shot('backups-running');

  t.step = 'refused';
  await stuckCatalogue.getByRole('button', { name: 'Full backup' }).click();
  facts.stuck.refusal = await text(page.getByTestId('action-error'));

  t.step = 'cancel';
  await stuck.getByRole('button', { name: 'Cancel' }).click();
  const stuckEnded = page.locator(`[data-testid="ended"] li[data-run="${stuckRun}"]`);
  await stuckEnded.waitFor({ timeout: RUN_TIMEOUT });
  facts.stuck.ended = await stuckEnded.getAttribute('data-status');
  facts.stuck.stillRunning = await stuck.count();

  t.step = 'viewer';
  await t.signOut(admin);
  await signIn(viewer);
  await go(`#/backups?instance=${instanceId}`);
  await catalogue.locator('tr[data-type="incr"]').waitFor();
  await page.getByTestId('latest-drill').waitFor();
  facts.viewer = {
    rows: (await catalogueRows(repositoryId)).length,
    buttons: await page.locator('section.backups').getByRole('button').allInnerTexts(),
    actionGroups: await page.getByRole('group', { name: /^Actions on stanza/ }).count(),
    forms: await page.locator('section.backups form').count(),
  };
  await t.narrow(async () => {
    facts.narrowOverflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    await shot('backups-narrow');
  });
  await axe('backups-viewer');
  await shot('backups-viewer');

  await t.finish(expected);
} catch (e) {
  // Where it stopped, and what the page showed then.
  console.error(`failed at step ${t.step}: ${JSON.stringify(t.problems)}`);
  await shot('backups-failed').catch(() => {});
  throw e;
} finally {
  await t.close();
}
