// The patient's cloud film page (/film/<token>, web/src/patient/) on a
// phone-sized screen in headless Debian Chromium, driven by
// playwright-core: the link is opened, a wrong birth date is refused, the
// right one lets the patient in; the report shows its impression and a
// valid signature; the images tab lists the series, the stack viewer
// pages through it by scrolling; the language switches to English.
//
// Run by tests/integration/test_film.py (`node --test film.mjs`), which
// releases a report and sets:
//   FILM_URL        the link the report's QR code holds
//   BIRTH_DATE      the right answer, YYYY-MM-DD
//   WRONG_DATE      a wrong one
//   IMPRESSION      the released report's impression
//   CHROMIUM        the browser (default /usr/bin/chromium)
//   SCREENSHOT_DIR  where the screenshots go (default a temp dir)
//   FILM_TIMEOUT_MS how long one step may wait (default 20000)
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
const shots = env.SCREENSHOT_DIR || fs.mkdtempSync(path.join(os.tmpdir(), 'film-'));

const ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

async function shot(page, name) {
  const file = path.join(shots, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  console.log(`screenshot: ${file}`);
}

// One answer: the verify call's status.
async function answer(page, value) {
  const answered = page.waitForResponse((r) => r.url().endsWith('/verify') &&
    r.request().method() === 'POST');
  await page.getByTestId('answer').fill(value);
  await page.getByTestId('verify-submit').click();
  return (await answered).status();
}

test('the cloud film on a phone', { timeout: timeout * 12, skip: !url }, async (t) => {
  const browser = await chromium.launch({
    executablePath: env.CHROMIUM || '/usr/bin/chromium', headless: true, args: ARGS,
  });
  try {
    const ctx = await browser.newContext({
      viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true,
      deviceScaleFactor: 2,
    });
    const page = await ctx.newPage();
    page.setDefaultTimeout(timeout);
    page.on('pageerror', (e) => console.log(`pageerror: ${e.message}`));

    await t.test('the verification step, in Chinese', async () => {
      await page.goto(url);
      await page.getByTestId('verify').waitFor();
      assert.match(await page.getByTestId('verify').textContent(), /出生日期/);
      assert.equal(await answer(page, env.WRONG_DATE), 403);
      await page.getByTestId('verify-message').waitFor();
      await shot(page, 'film-1-refused');
    });

    await t.test('the right birth date opens the report', async () => {
      // Earlier wrong answers from this address may ask for a wait first.
      let status = 0;
      for (let i = 0; i < 4 && status !== 200; i++) {
        status = await answer(page, env.BIRTH_DATE);
        if (status === 429)
          await page.waitForTimeout(3000);
      }
      assert.equal(status, 200);
      await page.getByTestId('impression').waitFor();
      assert.equal((await page.getByTestId('impression').textContent()).trim(), env.IMPRESSION);
      await page.getByTestId('signature').waitFor();
      assert.match(await page.getByTestId('signature').textContent(), /签名有效/);
      await shot(page, 'film-2-report');
    });

    await t.test('the images: thumbnails and the stack viewer', async () => {
      await page.getByTestId('tab-images').click();
      const first = page.getByTestId('series').first();
      await first.waitFor();
      await first.click();
      const pos = page.getByTestId('viewer-pos');
      await pos.waitFor();
      const total = Number((await pos.textContent()).split('/')[1]);
      assert.ok(total >= 2, `a stack of ${total}`);
      assert.match(await pos.textContent(), /^\s*1 \//);
      await page.waitForFunction(() => {
        const img = document.querySelector('[data-testid=viewer-image]');
        return img && img.complete && img.naturalWidth > 0;
      });
      const stage = page.getByTestId('viewer-stage');
      await stage.hover();
      await page.mouse.wheel(0, 120);
      await page.waitForFunction(() =>
        /^\s*2 \//.test(document.querySelector('[data-testid=viewer-pos]').textContent));
      await page.waitForFunction(() => {
        const img = document.querySelector('[data-testid=viewer-image]');
        return img && img.complete && img.naturalWidth > 0;
      });
      await shot(page, 'film-3-viewer');
      await page.keyboard.press('Escape');
    });

    await t.test('English on request', async () => {
      await page.getByTestId('lang-en').click();
      await page.getByTestId('tab-report').click();
      await page.getByTestId('signature').waitFor();
      assert.match(await page.getByTestId('signature').textContent(), /signature valid/);
      const { scroll, inner } = await page.evaluate(() => ({
        scroll: document.documentElement.scrollWidth, inner: window.innerWidth,
      }));
      assert.ok(scroll <= inner + 1, `the page is ${scroll}px wide on a ${inner}px screen`);
      await shot(page, 'film-4-english');
    });
  } finally {
    await browser.close();
  }
});
