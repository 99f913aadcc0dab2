// The console in a real browser (Debian's chromium, driven by playwright-core): run by
// e2e/tests/console.rs against a real stack, or by hand:
//
//   CONSOLE_URL=https://127.0.0.1:8443 ADMIN_PASSWORD=… VIEWER_PASSWORD=… node tests/console.mjs
//
// The instance page's view (family, column, a 30-day or zoomed range) is read from and written
// to the URL. Env: CONSOLE_URL, ADMIN_USER (admin), ADMIN_PASSWORD, VIEWER_USER (viewer), VIEWER_PASSWORD,
// INSTANCE (the instance the fleet must show), CHROMIUM (/usr/bin/chromium), ARTIFACTS (where
// screenshots go; none without it). Prints one JSON line of facts on success for the caller to
// check; exits 1 with the failed expectation otherwise.
import { account, BrowserTest, env, expect } from './lib.mjs';

const url = env('CONSOLE_URL');
const admin = account('ADMIN', 'admin');
const viewer = account('VIEWER', 'viewer');
const instance = env('INSTANCE');
const artifacts = process.env.ARTIFACTS;
// Every wait is bounded; the stack is already up and holds data when this runs.
const TIMEOUT = 15_000;

const t = await BrowserTest.open({ timeout: TIMEOUT, artifacts });
const { page, facts, shot, signIn } = t;
try {
  async function signOut(who) {
    await t.signOut(who);
    expect((await page.evaluate(() => sessionStorage.length)) === 0, 'no token kept after sign-out');
  }

  t.step = 'load';
  const response = await page.goto(url);
  facts.csp = response.headers()['content-security-policy'] ?? null;
  expect(facts.csp && facts.csp.includes("frame-ancestors 'none'"), `a CSP header, got ${facts.csp}`);
  await page.getByRole('heading', { name: 'Sign in to Lasect' }).waitFor();
  await shot('sign-in');

  t.step = 'wrong-password';
  await signIn({ user: admin.user, password: 'not the password at all' });
  const alert = page.getByRole('alert');
  await alert.waitFor();
  facts.wrongPasswordMessage = (await alert.textContent()).trim();
  expect(/wrong username or password/.test(facts.wrongPasswordMessage), `the API's message, got ${facts.wrongPasswordMessage}`);
  await shot('wrong-password');

  t.step = 'sign-in';
  await signIn(admin);
  const row = page.locator(`tr[data-instance="${instance}"]`);
  await row.waitFor();
  t.step = 'fleet';
  facts.fleetRow = (await row.innerText()).replace(/\s+/g, ' ').trim();
  expect(/\bup\b/.test(facts.fleetRow), `the instance is up: ${facts.fleetRow}`);
  expect(/\d+ s ago/.test(facts.fleetRow), `a recent sample: ${facts.fleetRow}`);
  expect(/primary/.test(facts.fleetRow), `its role: ${facts.fleetRow}`);
  await page.getByRole('searchbox').fill('no-such-instance-anywhere');
  await page.getByText('No instance matches.').waitFor();
  await page.getByRole('searchbox').fill(instance);
  await row.waitFor();
  await shot('fleet');
  await t.narrow(async () => {
    await row.waitFor();
    await shot('fleet-narrow');
  });

  // A reload loses the access token (memory only): the refresh token brings the session back.
  t.step = 'reload';
  await page.reload();
  await row.waitFor();
  facts.signedInAfterReload = await page.getByRole('button', { name: `${admin.user} ▾` }).isVisible();

  t.step = 'instance';
  await row.getByRole('link', { name: instance }).click();
  await page.getByRole('heading', { name: instance, level: 1 }).waitFor();
  // A gauge, so the first sample already is a point.
  await page.getByLabel('Column').selectOption('numbackends');
  const chart = page.locator('.chart[data-points]');
  await chart.locator('canvas').waitFor();
  facts.chartPoints = Number(await chart.getAttribute('data-points'));
  expect(facts.chartPoints > 0, `chart points, got ${facts.chartPoints}`);
  facts.chartLegend = (await chart.locator('.u-legend').innerText()).replace(/\s+/g, ' ');
  const range = page.locator('[data-step]');
  facts.chart = {
    family: await range.getAttribute('data-family'),
    column: await range.getAttribute('data-column'),
    from: await range.getAttribute('data-from'),
    to: await range.getAttribute('data-to'),
    step: Number(await range.getAttribute('data-step')),
    digest: JSON.parse(await chart.getAttribute('data-digest')),
  };
  expect(facts.chartLegend.includes('postgres'), `a series per database: ${facts.chartLegend}`);
  await page.getByRole('heading', { name: 'Activity' }).waitFor();
  await page.getByText(/^Sessions$/).waitFor();
  facts.adminActions = await page.getByTestId('instance-actions').getByRole('button').allInnerTexts();
  expect(facts.adminActions.includes('Remove instance'), `an admin sees Remove: ${facts.adminActions}`);
  await shot('instance');

  // The chart's family, column and range are in the URL: a link or a reload shows the same.
  t.step = 'range-in-url';
  const hash = () => new URL(page.url()).hash;
  facts.instanceHash = hash();
  expect(/[?&]family=database\b/.test(facts.instanceHash) && /[?&]column=numbackends\b/.test(facts.instanceHash) && /[?&]range=1h\b/.test(facts.instanceHash), `the view in the URL: ${facts.instanceHash}`);
  const instancePath = facts.instanceHash.split('?')[0];
  const shown = async () => {
    const el = page.locator('[data-step]');
    return {
      family: await el.getAttribute('data-family'),
      column: await el.getAttribute('data-column'),
      from: await el.getAttribute('data-from'),
      to: await el.getAttribute('data-to'),
      step: Number(await el.getAttribute('data-step')),
      pressed: await page.locator('[aria-label="Range"] button[aria-pressed="true"]').allInnerTexts(),
    };
  };
  // 30 days: 3-hour buckets (the automatic step), `from` moved down to the start of its bucket.
  const DAY = 86_400_000;
  for (const how of ['link', 'reload']) {
    if (how === 'link') await page.goto(`${url}${instancePath}?family=database&column=numbackends&range=30d`);
    else await page.reload();
    await page.locator('[data-step="10800"] .chart[data-points] canvas').waitFor();
    const got = await shown();
    const span = Date.parse(got.to) - Date.parse(got.from);
    facts[`range30d_${how}`] = got;
    expect(got.family === 'database' && got.column === 'numbackends', `30 d ${how}: ${JSON.stringify(got)}`);
    expect(got.pressed.length === 1 && got.pressed[0] === '30 d', `30 d selected (${how}): ${JSON.stringify(got)}`);
    expect(span >= 30 * DAY && span < 30 * DAY + got.step * 1000, `30 days of data-from/data-to (${how}): ${JSON.stringify(got)}`);
    expect(Math.abs(Date.parse(got.to) - Date.now()) < 5 * 60_000, `ending now (${how}): ${JSON.stringify(got)}`);
  }
  // A zoomed range: exactly the from/to of the URL (whole minutes, so on a bucket start).
  const zoomTo = new Date(Math.ceil(Date.now() / 60_000) * 60_000 + 60_000);
  const zoomFrom = new Date(zoomTo.getTime() - 30 * 60_000);
  const zoomQuery = new URLSearchParams({ family: 'database', column: 'numbackends', from: zoomFrom.toISOString(), to: zoomTo.toISOString() });
  for (const how of ['link', 'reload']) {
    if (how === 'link') await page.goto(`${url}${instancePath}?${zoomQuery}`);
    else await page.reload();
    await page.waitForFunction(
      ([from, to]) => {
        const el = document.querySelector('[data-step]');
        return el && Date.parse(el.getAttribute('data-from')) === from && Date.parse(el.getAttribute('data-to')) === to;
      },
      [zoomFrom.getTime(), zoomTo.getTime()],
    );
    const got = await shown();
    facts[`zoomed_${how}`] = got;
    expect(got.pressed.length === 0, `no preset pressed when zoomed (${how}): ${JSON.stringify(got)}`);
  }
  // Choosing a range writes it back.
  await page.getByRole('button', { name: '7 d', exact: true }).click();
  await page.locator('[data-step="3600"]').waitFor();
  facts.hashAfter7d = hash();
  expect(/[?&]range=7d\b/.test(facts.hashAfter7d) && !/[?&]from=/.test(facts.hashAfter7d), `7 d in the URL: ${facts.hashAfter7d}`);

  t.step = 'sign-out';
  await signOut(admin);

  t.step = 'viewer';
  await signIn(viewer);
  await row.waitFor();
  await row.getByRole('link', { name: instance }).click();
  await page.getByRole('heading', { name: instance, level: 1 }).waitFor();
  // The family chart (the waits' stacked chart may be drawn too once waits were sampled).
  await page.locator('.chart[data-points] canvas').waitFor();
  facts.viewerActions = await page.getByTestId('instance-actions').getByRole('button').allInnerTexts();
  expect(facts.viewerActions.length === 0, `a viewer sees no action, got ${facts.viewerActions}`);
  await shot('instance-viewer');

  t.step = 'password-change';
  const newPassword = `${viewer.password} changed`;
  await page.getByRole('button', { name: `${viewer.user} ▾` }).click();
  await page.getByRole('menuitem', { name: 'Change password' }).click();
  await page.getByLabel('Current password').fill(viewer.password);
  await page.getByLabel('New password (12 characters or more)').fill(newPassword);
  await page.getByLabel('New password again').fill(newPassword);
  await page.getByRole('button', { name: 'Change password' }).click();
  await page.getByRole('heading', { name: 'Change password' }).waitFor({ state: 'detached' });
  t.step = 'viewer-sign-out';
  await signOut(viewer);
  t.step = 'viewer-new-password';
  await signIn({ user: viewer.user, password: newPassword });
  await row.waitFor();
  facts.passwordChanged = true;
  await signOut(viewer);

  // The one refusal expected is the wrong password's 401 (and the browser's note of it).
  await t.finish((p) => p.step === 'wrong-password' && /401/.test(p.text));
} finally {
  await t.close();
}
