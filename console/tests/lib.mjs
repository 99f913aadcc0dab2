// Steps shared by the browser tests (console.mjs, live.mjs, pages.mjs, budget.mjs): reading
// the environment, launching Debian's chromium, a page that records every console error,
// failed request and CSP violation, signing in and out, axe-core checks and screenshots.
import { chromium } from 'playwright-core';
import { mkdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The environment variable `name`, or `fallback`; throws when neither is there. */
export const env = (name, fallback) => {
  const v = process.env[name] ?? fallback;
  if (v === undefined) throw new Error(`${name} is not set`);
  return v;
};

/** A user from `<PREFIX>_USER` (default `name`) and `<PREFIX>_PASSWORD`, e.g. `account('ADMIN', 'admin')`. */
export const account = (prefix, name) => ({ user: env(`${prefix}_USER`, name), password: env(`${prefix}_PASSWORD`) });

/** Fails the test with `what` when `ok` is false. */
export function expect(ok, what) {
  if (!ok) throw new Error(`expected: ${what}`);
}

/** Debian's chromium (or CHROMIUM), headless. */
export function launchBrowser() {
  return chromium.launch({
    executablePath: env('CHROMIUM', '/usr/bin/chromium'),
    headless: true,
    // Root in a container: chromium's sandbox needs user namespaces it may not have.
    args: ['--no-sandbox'],
  });
}

/** The window the tests use, and the phone-wide one for narrow-layout checks. */
export const WIDE = { width: 1280, height: 900 };
export const NARROW = { width: 420, height: 900 };

/**
 * A new context and page that accept the stack's throwaway CA, wait at most `timeout` ms per
 * step, and push every console error, page error, failed request and HTTP error answer onto
 * `problems` as `{ step, kind, text }`, with `step` read from `currentStep()` when it happens.
 * CSP violations are collected in the page (see `cspViolations`). `options` go to
 * `browser.newContext` (colour scheme, downloads…); the viewport is WIDE.
 */
export async function watchedPage(browser, { timeout, problems, currentStep, options = {} }) {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: WIDE, ...options });
  context.setDefaultTimeout(timeout);
  // Violations are reported to the page as events, whatever the console says.
  await context.addInitScript(() => {
    window.__cspViolations = [];
    document.addEventListener('securitypolicyviolation', (e) =>
      window.__cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`),
    );
  });
  const page = await context.newPage();
  const note = (kind, text) => problems.push({ step: currentStep(), kind, text });
  page.on('console', (m) => {
    if (m.type() === 'error') note('console', `${m.text()} at ${m.location().url}`);
  });
  page.on('pageerror', (e) => note('pageerror', String(e)));
  page.on('requestfailed', (r) => note('requestfailed', `${r.method()} ${r.url()} ${r.failure()?.errorText}`));
  page.on('response', (r) => {
    if (r.status() >= 400) note('http', `${r.status()} ${r.url()}`);
  });
  return page;
}

/**
 * The browser (launchBrowser) and its watched page (watchedPage, same arguments). The caller
 * closes the browser; if the page cannot be made, it is closed here.
 */
export async function openBrowser(watch) {
  const browser = await launchBrowser();
  try {
    return { browser, page: await watchedPage(browser, watch) };
  } catch (e) {
    await browser.close();
    throw e;
  }
}

/** Runs `steps` in a NARROW window, then goes back to WIDE. */
export async function inNarrowWindow(page, steps) {
  await page.setViewportSize(NARROW);
  await steps();
  await page.setViewportSize(WIDE);
}

/** The CSP violations the page saw since it was opened. */
export const cspViolations = (page) => page.evaluate(() => window.__cspViolations);

/** A full-page screenshot `name`.png into `artifacts`; nothing when `artifacts` is unset. */
export async function screenshot(page, artifacts, name) {
  if (!artifacts) return;
  mkdirSync(artifacts, { recursive: true });
  await page.screenshot({ path: join(artifacts, `${name}.png`), fullPage: true });
}

const axeSource = readFileSync(
  join(dirname(fileURLToPath(import.meta.url)), '../node_modules/axe-core/axe.min.js'),
  'utf8',
);

/**
 * axe-core on the page as it is (evaluated through the DevTools protocol: the CSP forbids
 * injected script tags). Records `{ violations, serious }` in `facts.axe[name]` and fails on
 * any serious or critical violation.
 */
export async function checkAxe(page, facts, name) {
  await page.evaluate(axeSource);
  const violations = await page.evaluate(async () => {
    const result = await window.axe.run(document, { resultTypes: ['violations'] });
    return result.violations.map((v) => ({
      id: v.id,
      impact: v.impact,
      nodes: v.nodes.slice(0, 3).map((n) => n.target.join(' ')),
    }));
  });
  const bad = violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  (facts.axe ??= {})[name] = { violations: violations.length, serious: bad.length };
  expect(bad.length === 0, `no serious accessibility violation on ${name}: ${JSON.stringify(bad)}`);
}

/**
 * The checks that end every browser test: the page saw no CSP violation (`facts.cspViolations`)
 * and `problems` holds nothing but what `expected(problem)` allows (then
 * `facts.expectedRefusals` counts them all); prints `facts` as one JSON line for the caller.
 */
export async function finish(page, facts, problems, expected) {
  facts.cspViolations = await cspViolations(page);
  expect(facts.cspViolations.length === 0, `no CSP violation: ${facts.cspViolations}`);
  const unexpected = expected ? problems.filter((p) => !expected(p)) : problems;
  expect(unexpected.length === 0, `no console error or failed request: ${JSON.stringify(unexpected)}`);
  if (expected) facts.expectedRefusals = problems.length;
  console.log(JSON.stringify(facts));
}

/** Fills and sends the sign-in form the page shows; does not wait for the answer. */
export async function signIn(page, who) {
  await page.getByLabel('Username').fill(who.user);
  await page.getByLabel('Password').fill(who.password);
  await page.getByRole('button', { name: 'Sign in' }).click();
}

/** Signs `who` out through the user menu and waits for the sign-in form. */
export async function signOut(page, who) {
  await page.getByRole('button', { name: `${who.user} ▾` }).click();
  await page.getByRole('menuitem', { name: 'Sign out' }).click();
  await page.getByRole('heading', { name: 'Sign in to Lasect' }).waitFor();
}

/**
 * One browser test: Debian's chromium and its watched page (see watchedPage), the facts the
 * test reports, and the step it is at (`t.step = 'fleet'`; problems are noted with it). The
 * steps every test takes are bound to its page, so they can be taken apart:
 * `const { page, facts, shot, axe, signIn, signOut } = t`. Close it with `t.close()`.
 */
export class BrowserTest {
  step = 'start';
  problems = [];
  facts = {};

  /** `timeout` bounds every wait; screenshots go to `artifacts` (none when unset); `options`
   * go to `browser.newContext`. */
  static async open({ timeout, artifacts, options = {} }) {
    const t = new BrowserTest();
    t.artifacts = artifacts;
    Object.assign(t, await openBrowser({ timeout, problems: t.problems, currentStep: () => t.step, options }));
    return t;
  }

  shot = (name) => screenshot(this.page, this.artifacts, name);
  axe = (name) => checkAxe(this.page, this.facts, name);
  signIn = (who) => signIn(this.page, who);
  signOut = (who) => signOut(this.page, who);
  narrow = (steps) => inNarrowWindow(this.page, steps);
  /** See finish(): `expected` allows the refusals the test provokes on purpose. */
  finish = (expected) => finish(this.page, this.facts, this.problems, expected);
  close = () => this.browser.close();
}
