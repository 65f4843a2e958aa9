// What every browser test of the clew UI shares: its arguments, headless Debian chromium
// driven by playwright-core (from the cache scripts/setup-browser fills), the screenshot
// directory, the problems the page reports (script errors, console errors — CSP
// violations among them — and dialogs), and the numbered steps.
//   node tests/ui/<name>.test.mjs <base-url> <expected-json>
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir, homedir } from 'node:os';
import path from 'node:path';

/**
 * Starts the browser for the test `name`. `settle()` runs after each step, before the
 * check that no problem was reported (a test that asks for HTTP errors drops those).
 */
export async function start(name, { settle = () => {} } = {}) {
  const [base, expectedJson] = process.argv.slice(2);
  if (!base || !expectedJson) {
    console.error(`usage: node tests/ui/${name}.test.mjs <base-url> <expected-json>`);
    process.exit(2);
  }
  const expected = JSON.parse(expectedJson);
  const cache = process.env.CLEW_CACHE || path.join(homedir(), '.cache', 'clew');
  const require = createRequire(path.join(cache, 'node', 'package.json'));
  const { chromium } = require('playwright-core');
  // The README's screenshots are refreshed only on request (CLEW_UPDATE_SCREENSHOTS=1), so
  // that an ordinary test run does not rewrite tracked files; otherwise they go to a temp dir.
  const shots = process.env.CLEW_UPDATE_SCREENSHOTS === '1'
    ? path.join('docs', 'screenshots')
    : mkdtempSync(path.join(tmpdir(), 'clew-screenshots-'));
  mkdirSync(shots, { recursive: true });

  const profile = mkdtempSync(path.join(tmpdir(), 'clew-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run'],
    viewport: { width: 1400, height: 900 },
  });
  const page = context.pages()[0] ?? await context.newPage();
  page.setDefaultTimeout(15000);
  const problems = [];
  page.on('pageerror', (e) => problems.push('page error: ' + e.message));
  page.on('console', (m) => { if (m.type() === 'error') problems.push('console error: ' + m.text()); });
  page.on('dialog', (d) => { problems.push('a dialog opened: ' + d.message()); d.dismiss(); });

  let failed = false;
  /** Runs one step unless an earlier one failed; a failure leaves a screenshot behind. */
  async function step(title, fn) {
    if (failed) return;
    try {
      await fn();
      settle(problems);
      assert.deepEqual(problems, [], 'no script errors, dialogs or CSP violations');
      console.log('ok -', title);
    } catch (e) {
      failed = true;
      console.error('not ok -', title);
      console.error(e && e.stack ? e.stack : e);
      try { await page.screenshot({ path: path.join(tmpdir(), `clew-ui-${name}-failure.png`), fullPage: true }); } catch {}
    }
  }

  /** Closes the browser; exits 1 if a step failed. */
  async function finish(done) {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
    if (failed) process.exit(1);
    console.log(done);
  }

  const ready = () => page.waitForSelector('body[data-state="ready"]');
  return { base, expected, context, page, problems, shots, step, finish, ready };
}
