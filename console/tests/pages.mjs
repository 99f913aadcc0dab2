// The console's pages beyond fleet and instance (console/src/pages) in a real browser (Debian's
// chromium, driven by playwright-core): run by e2e/tests/console.rs (console_pages.rs) against
// a real stack whose agent is running, or by hand:
//
//   CONSOLE_URL=https://127.0.0.1:8443 ADMIN_PASSWORD=… VIEWER_PASSWORD=… INSTANCE_ID=1 \
//     MARKER=console_pages_marker node tests/pages.mjs
//
// The monitored instance must hold the `shop` schema of e2e/tests/console_pages.rs and have run
// a statement containing MARKER. Prints one JSON line of facts for the caller to check; exits 1
// with the failed expectation otherwise. Screenshots go to ARTIFACTS.
import { account, BrowserTest, env, expect } from './lib.mjs';
import { readFileSync } from 'node:fs';

const url = env('CONSOLE_URL').replace(/\/$/, '');
const admin = account('ADMIN', 'admin');
const viewer = account('VIEWER', 'viewer');
const instanceId = env('INSTANCE_ID');
const marker = env('MARKER');
const artifacts = process.env.ARTIFACTS;
// Runs go through the agent: each wait is bounded, none is a sleep.
const TIMEOUT = 30_000;

// Refusals the scenario provokes on purpose: the schema before its first snapshot (404) and
// the viewer opening the audit log (403).
const expected = (p) =>
  (p.step === 'schema' && /404/.test(p.text) && /\/schema(\?| |$)/.test(p.text)) ||
  (p.step === 'viewer-audit' && /403 .*\/api\/v1\/audit/.test(p.text)) ||
  (p.step === 'viewer-audit' && p.kind === 'console' && /403/.test(p.text));

const t = await BrowserTest.open({ timeout: TIMEOUT, artifacts, options: { acceptDownloads: true } });
const { page, facts, problems, signOut } = t;
try {
  // Each page shown is checked by axe-core, then photographed.
  const shot = async (name) => {
    await t.axe(name);
    await t.shot(name);
  };
  const go = async (hash) => {
    await page.evaluate((h) => (location.hash = h), hash);
  };
  const text = async (locator) => (await locator.innerText()).replace(/\s+/g, ' ').trim();

  // Signed out, the page already shows the form: no navigation (it would cut the sign-out's
  // answer short and count as a failed request).
  async function signIn(who, load = false) {
    if (load) await page.goto(`${url}/`);
    await t.signIn(who);
    await page.getByRole('button', { name: `${who.user} ▾` }).waitFor();
  }

  t.step = 'sign-in';
  await signIn(admin, true);

  t.step = 'statements';
  await go(`#/statements?instance=${instanceId}`);
  const statementRow = page.getByTestId('statements').locator('tr', { hasText: marker }).first();
  await statementRow.waitFor();
  facts.statementRow = await text(statementRow);
  await shot('statements');
  await statementRow.getByRole('link').click();
  const statementText = page.getByTestId('statement-text');
  await page.getByText(marker).first().waitFor();
  await page.locator('.chart canvas').first().waitFor();
  facts.statementText = await text(statementText);
  // Its auto_explain plans, the newest shown as a plan tree.
  const statementTree = page.getByTestId('plan-tree');
  await statementTree.waitFor();
  facts.statementPlans = await page.getByTestId('statement-plans').locator('tbody tr').count();
  facts.statementPlanNodes = await statementTree
    .locator('.node')
    .evaluateAll((ns) => ns.map((n) => n.dataset.nodeType));
  await shot('statement');
  // Its text handed to the SQL editor, with a field for its parameter.
  await page.getByRole('link', { name: 'EXPLAIN in the SQL editor' }).click();
  await page.getByLabel('Parameter 1').waitFor();
  facts.handedOver = await page.getByLabel(/^Statement/).inputValue();

  t.step = 'sql';
  await go(`#/sql?instance=${instanceId}`);
  const editor = page.getByLabel(/^Statement/);
  await editor.fill('SELECT id, name FROM shop.customers WHERE id <= $1 ORDER BY id');
  await page.getByLabel('Parameter 1').fill('3');
  await page.getByRole('button', { name: 'Run', exact: true }).click();
  const grid = page.getByTestId('result-grid');
  await grid.waitFor();
  facts.sqlColumns = await grid.locator('thead th').evaluateAll((ths) =>
    ths.map((th) => [th.firstChild.textContent.trim(), th.querySelector('.type').textContent.trim()]),
  );
  facts.sqlRows = await grid
    .locator('tbody tr')
    .evaluateAll((trs) => trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent.trim())));
  const [download] = await Promise.all([
    page.waitForEvent('download'),
    page.getByRole('button', { name: 'Export CSV' }).click(),
  ]);
  facts.csv = readFileSync(await download.path(), 'utf8');
  await shot('sql');

  t.step = 'explain';
  await editor.fill(
    'SELECT c.name, count(*) FROM shop.customers c JOIN shop.orders o ON o.customer_id = c.id GROUP BY c.name',
  );
  await page.getByRole('button', { name: 'Explain analyze' }).click();
  const tree = page.getByTestId('plan-tree');
  await tree.waitFor();
  facts.planNodes = await tree.locator('.node').evaluateAll((ns) => ns.map((n) => n.dataset.nodeType));
  facts.hotNodes = await tree.locator('.node.hot').count();
  await page.getByTestId('run-history').waitFor();
  await shot('sql-explain');
  await t.narrow(async () => {
    await tree.waitFor();
    await shot('sql-narrow');
  });

  // A long statement shows its run at once, with Cancel for its requester.
  t.step = 'cancel';
  await editor.fill('SELECT pg_sleep(60)');
  await page.getByRole('button', { name: 'Run', exact: true }).click();
  await page.getByRole('button', { name: 'Cancel', exact: true }).click();
  const cancelled = page.locator('[data-testid="run-outcome"][data-status="cancelled"]');
  await cancelled.waitFor();
  facts.cancelledRun = await text(cancelled);
  await shot('sql-cancelled');

  t.step = 'schema';
  await go(`#/schema?instance=${instanceId}`);
  await page.getByText(/No schema snapshot/).waitFor();
  await page.getByRole('button', { name: 'Take snapshot' }).click();
  await page.getByTestId('snapshot-info').waitFor();
  await page.getByRole('button', { name: 'Foreign keys' }).click();
  const diagram = page.getByTestId('fk-diagram');
  await diagram.waitFor();
  facts.diagramTables = await diagram.locator('[data-table]').evaluateAll((gs) => gs.map((g) => g.dataset.table));
  facts.diagramEdges = await diagram
    .locator('path.edge')
    .evaluateAll((ps) => ps.map((p) => `${p.dataset.from}->${p.dataset.to}`));
  await shot('schema-fk');
  // A box opens its table; its rows come 50 at a time by primary key.
  await diagram.locator('[data-table="shop.customers"]').click();
  await page.getByTestId('schema-object').waitFor();
  await page.getByRole('button', { name: 'Rows', exact: true }).click();
  const rows = page.getByTestId('table-rows');
  await rows.locator('tbody tr').first().waitFor();
  const firstAndLast = () =>
    rows.locator('tbody tr').evaluateAll((trs) => [
      trs[0].querySelector('td').textContent.trim(),
      trs[trs.length - 1].querySelector('td').textContent.trim(),
    ]);
  facts.rowsPage1 = await firstAndLast();
  await page.getByRole('button', { name: 'Next 50' }).click();
  await page.getByText('page 2,').waitFor();
  await rows.locator('tbody tr td', { hasText: /^51$/ }).waitFor();
  facts.rowsPage2 = await firstAndLast();
  await shot('schema');

  // Writes: refused by the read-only transaction unless "Allow writes" (an admin's) is ticked.
  t.step = 'sql-write';
  await go(`#/sql?instance=${instanceId}`);
  const outcome = (status, not) =>
    page.locator(`[data-testid="run-outcome"][data-status="${status}"]${not ? `:not([data-run-id="${not}"])` : ''}`);
  await page.getByLabel(/^Statement/).fill('ALTER TABLE shop.products DROP COLUMN price');
  await page.getByRole('button', { name: 'Run', exact: true }).click();
  await outcome('failed').waitFor();
  facts.readOnlyError = await text(page.getByTestId('run-outcome').getByRole('alert'));
  await page.getByLabel('Allow writes').check();
  await page.getByRole('button', { name: 'Run', exact: true }).click();
  await outcome('succeeded').waitFor();
  const first = await page.getByTestId('run-outcome').getAttribute('data-run-id');
  await page.getByLabel(/^Statement/).fill('ALTER TABLE shop.notes ADD COLUMN author text');
  await page.getByRole('button', { name: 'Run', exact: true }).click();
  await outcome('succeeded', first).waitFor();
  await shot('sql-write');

  // A second snapshot: what changed, each change marked.
  t.step = 'schema-changes';
  await go(`#/schema?instance=${instanceId}`);
  await page.getByTestId('snapshot-info').waitFor();
  await page.getByRole('button', { name: 'Take snapshot' }).click();
  await page.getByRole('button', { name: /^Changes \([1-9]/ }).click();
  const changes = page.getByTestId('schema-changes');
  await changes.waitFor();
  facts.schemaChanges = await changes
    .locator('tbody tr')
    .evaluateAll((trs) => trs.map((tr) => [...tr.querySelectorAll('td')].slice(2, 5).map((td) => td.textContent.trim())));
  await shot('schema-changes');

  t.step = 'runs';
  await go('#/runs');
  const runs = page.getByTestId('runs');
  await runs.waitFor();
  facts.runKinds = [...new Set(await runs.locator('tbody tr td:nth-child(2)').allInnerTexts())];
  await shot('runs');
  await runs.locator('tbody tr').first().getByRole('link').click();
  await page.getByTestId('run-status').waitFor();
  await shot('run');

  t.step = 'migrations';
  await go('#/migrations');
  // The script uploaded as a file; its name becomes the migration's.
  await page.getByLabel('Or upload a .sql file').setInputFiles({
    name: 'add-probe-table.sql',
    mimeType: 'text/plain',
    buffer: Buffer.from('CREATE TABLE shop.probe (id int);\nINSERT INTO shop.probe VALUES (1);\n'),
  });
  await page.getByText('Loaded add-probe-table.sql').waitFor();
  await page.getByLabel('these instances').check();
  await page.getByLabel('Target instances').selectOption(instanceId);
  expect(await page.getByRole('checkbox', { name: /Dry run/ }).isChecked(), 'dry run is the default');
  await page.getByRole('button', { name: 'Start dry run' }).click();
  const migrationStatus = page.getByTestId('migration-status');
  await migrationStatus.waitFor();
  await page.getByTestId('migration-status').filter({ hasNotText: 'running' }).waitFor();
  facts.migrationStatus = (await migrationStatus.innerText()).trim();
  facts.migrationTitle = await text(page.getByRole('heading', { level: 1 }));
  facts.migrationTarget = (
    await page.getByTestId('migration-targets').locator('tbody tr td:nth-child(3)').first().innerText()
  ).trim();
  await shot('migration');
  await go('#/migrations');
  await page.getByTestId('migrations').waitFor();
  await shot('migrations');

  t.step = 'agents';
  await go('#/agents');
  await page.getByTestId('agents').waitFor();
  await page.getByRole('button', { name: 'Create enrollment token' }).click();
  const token = page.getByTestId('new-enrollment-token');
  await token.waitFor();
  facts.enrollmentToken = (await token.locator('.secret').innerText()).trim();
  await page.getByTestId('enrollment-tokens').waitFor();
  await shot('agents');
  // The newest token (listed first), revoked: it says so.
  const newest = page.getByTestId('enrollment-tokens').locator('tbody tr').first();
  await newest.getByRole('button', { name: 'Revoke' }).click();
  await newest.getByText('revoked').waitFor();
  facts.revokedEnrollmentToken = await text(newest);

  t.step = 'users';
  await go('#/users');
  await page.getByTestId('users').waitFor();
  await page.getByLabel('Username').fill('pages-operator');
  await page.getByLabel('Password', { exact: true }).fill('an operator password long enough');
  await page.getByLabel('Global role').selectOption('user');
  await page.getByRole('button', { name: 'Create user' }).click();
  const operatorRow = page.locator('tr[data-user="pages-operator"]');
  await operatorRow.waitFor();
  // A role by label added to the global one.
  await operatorRow.getByRole('button', { name: 'Roles' }).click();
  await operatorRow.getByLabel('Roles by label').fill('team=dba:admin');
  await operatorRow.getByRole('button', { name: 'Save' }).click();
  await operatorRow.getByText('team=dba:admin').waitFor();
  facts.operatorRow = await text(operatorRow);
  await shot('users');

  t.step = 'tokens';
  await go('#/tokens');
  await page.getByLabel('Name').fill('deploy pipeline');
  await page.getByRole('button', { name: 'Create token' }).click();
  const apiToken = page.getByTestId('new-api-token');
  await apiToken.waitFor();
  facts.apiToken = (await apiToken.locator('.secret').innerText()).trim();
  await page.getByTestId('tokens').waitFor();
  await shot('tokens');
  const tokenRow = page.getByTestId('tokens').locator('tr', { hasText: 'deploy pipeline' });
  await tokenRow.getByRole('button', { name: 'Revoke' }).click();
  await tokenRow.getByText(/^revoked/).waitFor();
  facts.revokedApiToken = await text(tokenRow);

  t.step = 'audit';
  await go('#/audit');
  const audit = page.getByTestId('audit');
  await audit.waitFor();
  facts.auditRows = (await audit.locator('tbody tr').allInnerTexts()).map((r) => r.replace(/\s+/g, ' '));
  await shot('audit');

  t.step = 'sign-out';
  await signOut(admin);

  // The user made above: runs SQL, but no writes (admins only).
  t.step = 'operator';
  const operator = { user: 'pages-operator', password: 'an operator password long enough' };
  await signIn(operator);
  await go(`#/sql?instance=${instanceId}`);
  await page.getByRole('button', { name: 'Run', exact: true }).waitFor();
  facts.operatorButtons = await page
    .getByRole('button', { name: /^(Run|Explain|Explain analyze)$/ })
    .allInnerTexts();
  facts.operatorWriteBoxes = await page.getByLabel('Allow writes').count();
  await shot('sql-operator');
  await signOut(operator);

  t.step = 'viewer';
  await signIn(viewer);
  facts.viewerNav = await page.getByRole('navigation', { name: 'Main' }).getByRole('link').allInnerTexts();
  await go(`#/sql?instance=${instanceId}`);
  const notice = page.getByTestId('sql-readonly');
  await notice.waitFor();
  facts.viewerNotice = await text(notice);
  facts.viewerRunButtons = await page
    .getByRole('button', { name: /^(Run|Explain|Explain analyze)$/ })
    .allInnerTexts();
  await shot('sql-viewer');

  t.step = 'viewer-audit';
  await go('#/audit');
  const refusal = page.getByTestId('api-error');
  await refusal.waitFor();
  facts.viewerAuditError = await text(refusal);
  await shot('audit-viewer');

  await t.finish(expected);
} catch (e) {
  console.error(`failed at step ${t.step}: ${e.stack ?? e}`);
  console.error(`problems so far: ${JSON.stringify(problems)}`);
  process.exitCode = 1;
} finally {
  await t.close();
}
