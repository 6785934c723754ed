// The admin console's intake and export page (#/intake, web/src/views/
// Intake.vue) in headless Debian Chromium, driven by playwright-core: a
// system administrator signs in, follows the navigation link, sees the
// intake source and the export rule with their counters in Chinese (the
// default), waits for the refreshed counter to reach what the server
// stored, and switches to English.
//
// Run by tests/integration/test_smb_intake.py (`node --test intake.mjs`),
// which sets:
//   INTAKE_URL        the console's base URL
//   INTAKE_USER       a user holding metrics.read, and INTAKE_PASSWORD
//   SOURCE_NAME       an intake source, and SOURCE_STORED its stored count
//   EXPORT_NAME       an export rule
//   CHROMIUM          the browser (default /usr/bin/chromium)
//   SCREENSHOT_DIR    where the screenshots go (default a temp dir)
//   INTAKE_TIMEOUT_MS how long one step may wait (default 20000)
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';

import pw from 'playwright-core';

const { chromium } = pw;
const env = process.env;
const base = env.INTAKE_URL;
const timeout = Number(env.INTAKE_TIMEOUT_MS || 20000);
const shots = env.SCREENSHOT_DIR || fs.mkdtempSync(path.join(os.tmpdir(), 'intake-'));

const ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

async function shot(page, name) {
  const file = path.join(shots, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  console.log(`screenshot: ${file}`);
}

test('the intake page', { timeout: timeout * 8, skip: !base }, async (t) => {
  const browser = await chromium.launch({
    executablePath: env.CHROMIUM || '/usr/bin/chromium', headless: true, args: ARGS,
  });
  try {
    const page = await (await browser.newContext({ viewport: { width: 1400, height: 900 } }))
      .newPage();
    page.setDefaultTimeout(timeout);
    page.on('pageerror', (e) => console.log(`pageerror: ${e.message}`));

    await t.test('signed in, the navigation leads to it', async () => {
      await page.goto(base, { waitUntil: 'domcontentloaded' });
      await page.waitForURL(/#\/signin/);
      await page.locator('#username').fill(env.INTAKE_USER);
      await page.locator('#password').fill(env.INTAKE_PASSWORD);
      await page.getByTestId('signin-submit').click();
      await page.getByTestId('nav-intake').click();
      await page.waitForURL(/#\/intake$/);
    });

    await t.test('the source and the rule with their counters, in Chinese', async () => {
      const source = page.locator(`[data-testid=intake-source][data-name="${env.SOURCE_NAME}"]`);
      await source.waitFor();
      assert.match(await page.locator('h1').textContent(), /影像接收与导出/);
      assert.match(await source.textContent(), /正常/);
      // The page refreshes by itself until the counter shows what was stored.
      await page.waitForFunction(([name, want]) => {
        const row = document.querySelector(
          `[data-testid=intake-source][data-name="${name}"] [data-testid=intake-stored]`);
        return row && row.textContent.trim() === want;
      }, [env.SOURCE_NAME, env.SOURCE_STORED]);
      const rule = page.locator(`[data-testid=intake-export][data-name="${env.EXPORT_NAME}"]`);
      await rule.waitFor();
      assert.match(await rule.textContent(), /报告发布/);
      await shot(page, 'intake-zh');
    });

    await t.test('in English', async () => {
      await page.getByTestId('locale').selectOption('en');
      await page.getByText('Intake sources').waitFor();
      const rule = page.locator(`[data-testid=intake-export][data-name="${env.EXPORT_NAME}"]`);
      assert.match(await rule.textContent(), /Report released/);
      await shot(page, 'intake-en');
    });
  } finally {
    await browser.close();
  }
});
