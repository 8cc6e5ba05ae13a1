// Dashboard end-to-end check in headless Chromium (run by tests/api/dashboard.rs): log in
// through a session, the figures, one receipt approved, a phone's width, and log out.
// Usage: node tests/e2e/dashboard.mjs URL ADMIN_KEY OUTSTANDING_POINTS PENDING_RECEIPTS
// playwright-core comes from target/e2e/node_modules (`.ci/run` installs it there), so the
// repository itself carries no node_modules.
import { createRequire } from 'node:module';
import { mkdirSync } from 'node:fs';
import path from 'node:path';

const [url, key, outstanding, pendingReceipts] = process.argv.slice(2);
if (!url || !key || !outstanding || !pendingReceipts) {
  console.error('usage: dashboard.mjs URL KEY OUTSTANDING_POINTS PENDING_RECEIPTS');
  process.exit(2);
}
const out = path.resolve('target/e2e');
mkdirSync(out, { recursive: true });
const require = createRequire(path.join(out, 'package.json'));
const { chromium } = require('playwright-core');

function check(condition, message) {
  if (!condition) throw new Error(`FAILED: ${message}`);
  console.log(`ok - ${message}`);
}

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  timeout: 30_000,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  context.setDefaultTimeout(10_000);
  const page = await context.newPage();

  // Without a key the dashboard sends us to the login form.
  await page.goto(url);
  check(new URL(page.url()).pathname === '/login', 'no key redirects to /login');
  await page.fill('#key', key);
  await Promise.all([page.waitForURL(`${url}/`), page.click('button[type=submit]')]);
  check((await page.textContent('#outstanding-points')).trim() === outstanding,
    `outstanding points shown = GetLiability's ${outstanding}`);
  const session = (await context.cookies()).find((c) => c.name === 'omo_session');
  check(session && session.httpOnly && session.sameSite === 'Strict', 'HttpOnly, SameSite=Strict session cookie');
  check(session.value !== key && /^[0-9a-f]{64}$/.test(session.value), 'the cookie is a session id, not the key');
  check(!(await page.content()).includes(key), 'the key is not in the page');
  check(/^[0-9a-f]{64}$/.test(await page.inputValue('form.logout input[name=csrf]')),
    'the logout form carries a CSRF token');
  check(await page.locator('svg.chart.expiry rect').count() > 0, 'expiry chart has bars');
  check(await page.locator('svg.chart.earned rect').count() > 0, 'earned-per-day chart has bars');
  check(await page.locator('#activity-table tbody tr').count() > 0, 'activity by channel and store');
  check(await page.locator('.campaign').count() > 0, 'a campaign funnel');
  check(/p = \d/.test(await page.textContent('.verdict')), 'A/B verdict with a p-value');
  check(await page.locator('#receipt-queue tbody tr').count() === Number(pendingReceipts),
    `receipt queue lists ${pendingReceipts} receipt(s) waiting`);
  await page.screenshot({ path: path.join(out, 'dashboard-desktop.png'), fullPage: true });

  // Approve the first receipt in the queue: the page comes back without it (the Rust side then
  // checks that the member's balance moved by its points).
  const queued = await page.locator('#receipt-queue tbody tr').count();
  const approved = await page.getAttribute('#receipt-queue tbody tr >> nth=0', 'data-receipt-id');
  await Promise.all([
    page.waitForURL((u) => u.hash === '#receipts'),
    page.click('#receipt-queue tbody tr >> nth=0 >> form.approve button'),
  ]);
  check(await page.locator(`#receipt-queue tbody tr[data-receipt-id="${approved}"]`).count() === 0,
    `receipt ${approved} left the queue after Approve`);
  check(await page.locator('#receipt-queue tbody tr').count() === queued - 1,
    `the queue lists ${queued - 1} receipt(s) after one approval`);
  console.log(`approved ${approved}`);

  // A phone: nothing wider than the screen.
  await page.setViewportSize({ width: 390, height: 844 });
  await page.reload();
  const overflow = await page.evaluate(() =>
    document.documentElement.scrollWidth - document.documentElement.clientWidth);
  check(overflow <= 0, `no horizontal overflow at 390x844 (overflow ${overflow}px)`);
  await page.screenshot({ path: path.join(out, 'dashboard-phone.png'), fullPage: true });

  // Logging out ends the session on the server: the dashboard sends us to the login form,
  // even when the old session cookie is put back.
  await Promise.all([page.waitForURL(`${url}/login`), page.click('form.logout button[type=submit]')]);
  check(!(await context.cookies()).some((c) => c.name === 'omo_session'), 'logout removes the cookie');
  await page.goto(url);
  check(new URL(page.url()).pathname === '/login', 'after logout the dashboard redirects to /login');
  await context.addCookies([{ name: session.name, value: session.value, url }]);
  await page.goto(url);
  check(new URL(page.url()).pathname === '/login', 'the ended session is refused by the server');
  await context.close();
} finally {
  await browser.close();
}
