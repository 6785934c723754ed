// The patient's page with a patient-scope link (two studies) on a phone in
// headless Debian Chromium, driven by playwright-core: after the birth
// date the studies are listed, the other study's report is shown when
// chosen, and a follow-up read is asked for and then shown as requested.
//
// Run by tests/integration/test_kiosk.py (`node --test film_followup.mjs`),
// which releases two studies of one patient and sets:
//   FILM_URL        the patient-scope link
//   BIRTH_DATE      the right answer, YYYY-MM-DD
//   QUESTION        the question to ask
//   CHROMIUM        the browser (default /usr/bin/chromium)
//   SCREENSHOT_DIR  where the screenshots go (default a temp dir)
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';

import pw from 'playwright-core';

const { chromium } = pw;
const env = process.env;
const url = env.FILM_URL;
const timeout = Number(env.FILM_TIMEOUT_MS || 20000);
const shots = env.SCREENSHOT_DIR || fs.mkdtempSync(path.join(os.tmpdir(), 'film-followup-'));

const ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

async function shot(page, name) {
  const file = path.join(shots, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  console.log(`screenshot: ${file}`);
}

test('studies and a follow-up read on a phone', { timeout: timeout * 10, skip: !url },
  async () => {
    const browser = await chromium.launch({
      executablePath: env.CHROMIUM || '/usr/bin/chromium', headless: true, args: ARGS,
    });
    try {
      const ctx = await browser.newContext({
        viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true,
      });
      const page = await ctx.newPage();
      page.setDefaultTimeout(timeout);
      await page.goto(url);
      await page.getByTestId('answer').fill(env.BIRTH_DATE);
      await page.getByTestId('verify-submit').click();

      // Two studies: the link's own first; the other one's report on a tap.
      const studies = page.getByTestId('study');
      await studies.first().waitFor();
      assert.equal(await studies.count(), 2);
      const other = page.waitForResponse((r) => /\/report\?study=/.test(r.url()));
      await studies.nth(1).click();
      assert.equal((await other).status(), 200);
      await page.getByTestId('impression').waitFor();
      await shot(page, 'film-studies');

      // The follow-up read, for the study shown.
      await page.getByTestId('followup-ask').click();
      await page.getByTestId('followup-question').fill(env.QUESTION);
      const asked = page.waitForResponse((r) => /\/followup\?study=/.test(r.url()) &&
        r.request().method() === 'POST');
      await page.getByTestId('followup-send').click();
      assert.equal((await asked).status(), 201);
      const item = page.getByTestId('followup-item');
      await item.first().waitFor();
      assert.match(await item.first().textContent(), new RegExp(env.QUESTION));
      assert.match(await item.first().textContent(), /已申请/);
      await shot(page, 'film-followup');
    } finally {
      await browser.close();
    }
  });
