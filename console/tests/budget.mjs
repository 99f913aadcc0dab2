// The console's performance budget, run by bench/console.sh (`make bench`) against a real
// lasect-api whose store holds 30 days of loadgen samples:
//
// - first_page_gzip_bytes: index.html and the assets it loads (scripts, module preloads,
//   styles), gzip-compressed as the API serves them; lazily loaded chunks are not counted.
//   Over BUDGET_BYTES (300 KB) the script exits 1 after writing its figures;
// - fleet_drawn_ms: from navigation to the fleet table's first instance row, in Debian's
//   chromium, beside fleet_api_ms: `GET /api/v1/instances` alone;
// - chart_drawn_ms: from choosing "30 d" on the instance page to the drawn 30-day chart,
//   beside chart_api_ms: the same `GET …/metrics/database` alone.
// Medians of ROUNDS (5) rounds. Env: CONSOLE_URL, CA_FILE, ADMIN_PASSWORD, API_TOKEN, AGENT
// (the agent whose instance is charted), CHROMIUM, OUT (the JSON file written).
import { readFileSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import { gunzipSync } from 'node:zlib';
import { env, launchBrowser, signIn, WIDE } from './lib.mjs';
const url = env('CONSOLE_URL').replace(/\/$/, '');
const ca = readFileSync(env('CA_FILE'));
const token = env('API_TOKEN');
const agent = env('AGENT');
const rounds = Number(env('ROUNDS', '5'));
const BUDGET_BYTES = 300 * 1024;
const TIMEOUT = 120_000;

/** GET `path`: status, headers, the bytes as they came over the wire, and the time taken. */
function fetchRaw(path, headers = {}) {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const req = https.get(`${url}${path}`, { ca, headers }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () =>
        resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks), ms: performance.now() - started }),
      );
      res.on('error', reject);
    });
    req.on('error', reject);
  });
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const round1 = (x) => Math.round(x * 10) / 10;

// 1. The first page's compressed bytes.
const gzip = { 'accept-encoding': 'gzip' };
const index = await fetchRaw('/', gzip);
if (index.status !== 200) throw new Error(`GET / answered ${index.status}`);
const html = (index.headers['content-encoding'] === 'gzip' ? gunzipSync(index.body) : index.body).toString('utf8');
const assets = [...html.matchAll(/(?:src|href)="(\/assets\/[^"]+\.(?:js|css))"/g)].map((m) => m[1]);
const files = [{ path: '/', bytes: index.body.length, encoding: index.headers['content-encoding'] ?? 'identity' }];
for (const path of new Set(assets)) {
  const r = await fetchRaw(path, gzip);
  if (r.status !== 200) throw new Error(`GET ${path} answered ${r.status}`);
  files.push({ path, bytes: r.body.length, encoding: r.headers['content-encoding'] ?? 'identity' });
}
const firstPage = files.reduce((s, f) => s + f.bytes, 0);

// 2. The API calls alone.
const bearer = { authorization: `Bearer ${token}`, accept: 'application/json' };
const list = await fetchRaw('/api/v1/instances', bearer);
const instance = JSON.parse(list.body.toString('utf8')).instances.find((i) => i.agent_id === agent);
if (!instance) throw new Error(`no instance of agent ${agent}`);
const fleetApi = [];
for (let i = 0; i < rounds; i++) fleetApi.push((await fetchRaw('/api/v1/instances', bearer)).ms);

const browser = await launchBrowser();
const facts = {};
try {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: WIDE });
  context.setDefaultTimeout(TIMEOUT);
  const page = await context.newPage();
  await page.goto(`${url}/`);
  await signIn(page, { user: 'admin', password: env('ADMIN_PASSWORD') });
  await page.locator('tr[data-instance]').first().waitFor();

  // 3. The fleet, from navigation (a reload: the session comes back from its refresh token).
  const fleetDrawn = [];
  for (let i = 0; i < rounds; i++) {
    await page.reload();
    await page.locator('tr[data-instance]').first().waitFor();
    fleetDrawn.push(await page.evaluate(() => performance.now()));
  }

  // 4. The 30-day chart, from the click to the drawn canvas with the 30-day answer.
  await page.goto(`${url}/#/instances/${instance.id}`);
  await page.locator('.chart canvas').first().waitFor();
  const chartDrawn = [];
  const chartApi = [];
  for (let i = 0; i < rounds; i++) {
    await page.getByRole('button', { name: '1 h', exact: true }).click();
    await page.waitForFunction(() => {
      const el = document.querySelector('[data-step]');
      return !el || Number(el.getAttribute('data-step')) < 3600;
    });
    const started = await page.evaluate(() => performance.now());
    await page.getByRole('button', { name: '30 d', exact: true }).click();
    const drawn = await page.waitForFunction(
      () => {
        const el = document.querySelector('[data-step]');
        const from = el && Date.parse(el.getAttribute('data-from'));
        return el && Date.now() - from > 29 * 86400_000 && el.querySelector('canvas') ? performance.now() : false;
      },
      null,
      { polling: 'raf' },
    );
    chartDrawn.push((await drawn.jsonValue()) - started);
    const range = page.locator('[data-step]');
    const q = new URLSearchParams({ from: await range.getAttribute('data-from'), to: await range.getAttribute('data-to') });
    chartApi.push((await fetchRaw(`/api/v1/instances/${instance.id}/metrics/database?${q}`, bearer)).ms);
  }
  facts.chart_points = Number(await page.locator('.chart[data-points]').first().getAttribute('data-points'));
  facts.chart_step_s = Number(await page.locator('[data-step]').getAttribute('data-step'));
  Object.assign(facts, {
    fleet_drawn_ms: round1(median(fleetDrawn)),
    fleet_api_ms: round1(median(fleetApi)),
    chart_drawn_ms: round1(median(chartDrawn)),
    chart_api_ms: round1(median(chartApi)),
  });
} finally {
  await browser.close();
}

Object.assign(facts, {
  first_page_gzip_bytes: firstPage,
  budget_bytes: BUDGET_BYTES,
  first_page_files: files,
  rounds,
  instance: instance.name,
});
writeFileSync(env('OUT'), JSON.stringify(facts, null, 2));
console.log(JSON.stringify(facts));
if (firstPage > BUDGET_BYTES) {
  console.error(`the first page is ${firstPage} bytes compressed, over the budget of ${BUDGET_BYTES}`);
  process.exit(1);
}
