// Browser test of the UI of a clew with [auth]: headless Debian chromium driven by
// playwright-core. Run by tests/ui_browser.rs (which starts clew with tokens and ingests a
// trace with the ingest token):
//   node tests/ui/auth.test.mjs <base-url> <expected-json>
// expected: { order, trace, read_token, ingest_token }
import assert from 'node:assert/strict';
import path from 'node:path';
import { start } from './harness.mjs';

// The browser logs every HTTP error answer to the console; the 401s and 403s asked for
// here are expected.
const dropFailedRequests = (problems) => {
  for (let i = problems.length - 1; i >= 0; i--) {
    if (/the server responded with a status of 40[13]/.test(problems[i])) problems.splice(i, 1);
  }
};
const { base, expected, page, shots, step, finish, ready } = await start('auth', { settle: dropFailedRequests });
const token = () => page.evaluate(() => sessionStorage.getItem('clew.token'));

await step('the page loads without a token and asks for one', async () => {
  await page.goto(`${base}/?key=order_id:${encodeURIComponent(expected.order)}`);
  await page.locator('#auth-form').waitFor();
  assert.equal(await page.locator('#auth-overlay').count(), 1, 'one form for every request that was refused');
  assert.equal(await page.locator('#results .result').count(), 0);
  assert.equal(await token(), null);
  await page.screenshot({ path: path.join(shots, 'auth-token.png') });
});

await step('a wrong token is refused and the form says so, as text', async () => {
  await page.fill('#auth-token', 'not-a-token-<b>bold</b>');
  await page.click('#auth-submit');
  await page.locator('#auth-problem').waitFor();
  assert.match(await page.locator('#auth-problem').textContent(), /not accepted: invalid bearer token/);
  assert.equal(await page.locator('#auth-overlay b').count(), 0);
  assert.equal(await token(), null, 'a refused token is not kept');
});

await step('the read token shows the results, kept in session storage', async () => {
  await page.fill('#auth-token', expected.read_token);
  await page.click('#auth-submit');
  await ready();
  await page.locator('#results .result').first().waitFor();
  assert.equal(await page.locator('#results .result').count(), 1);
  assert.equal(await page.locator('#auth-overlay').count(), 0);
  assert.equal(await token(), expected.read_token);
  assert.equal(await page.evaluate(() => localStorage.length), 0, 'nothing in local storage');
});

await step('the token is asked for once: other pages use it', async () => {
  await page.goto(`${base}/trace/${expected.trace}`);
  await ready();
  assert.equal(await page.locator('#auth-overlay').count(), 0);
  assert.ok(await page.locator('#waterfall .span-row').count() >= 1);
});

await step('a token without the read scope is "not authorised", not an empty result', async () => {
  await page.evaluate((t) => sessionStorage.setItem('clew.token', t), expected.ingest_token);
  await page.goto(`${base}/?key=order_id:${encodeURIComponent(expected.order)}`);
  await page.waitForFunction(() => /not authorised/.test(document.getElementById('status').textContent));
  await ready();
  assert.equal(await page.locator('#results .result').count(), 0);
  assert.equal(await page.locator('#auth-overlay').count(), 0, 'a valid token is not asked for again');
});

await step('"use another token" forgets it and asks again; the read token shows the results', async () => {
  await page.click('#change-token');
  await page.locator('#auth-form').waitFor();
  assert.equal(await token(), null);
  await page.fill('#auth-token', expected.read_token);
  await page.click('#auth-submit');
  await ready();
  await page.locator('#results .result').first().waitFor();
  assert.equal(await page.locator('#results .result').count(), 1);
});

await finish('all browser auth steps passed');
