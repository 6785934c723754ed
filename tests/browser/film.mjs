// The patient's cloud film page (/film/<token>, web/src/patient/) on a
// phone-sized screen in headless Debian Chromium, driven by
// playwright-core: the link is opened, a wrong birth date is refused, the
// right one lets the patient in; the report shows its impression and a
// valid signature; the images tab lists the series, the stack viewer
// pages through it by scrolling, zooms with two fingers, pans with one,
// resets on a double tap, pages by a swipe and carries a watermark; the
// language switches to English; the patient makes a link for a doctor,
// who opens it in another browser and answers, then the patient revokes
// it and the doctor's page is refused.
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

    await t.test('the viewer: pinch, pan, double tap, swipe and the watermark', async () => {
      await page.getByTestId('series').first().click();
      const pos = page.getByTestId('viewer-pos');
      await pos.waitFor();
      const mark = page.getByTestId('viewer-watermark');
      await mark.waitFor();
      assert.match(await mark.textContent(), /本人查看 · \d{4}-\d{2}-\d{2} \d{2}:\d{2}/);
      const stage = page.getByTestId('viewer-stage');
      const box = await stage.boundingBox();
      const cx = box.x + box.width / 2;
      const cy = box.y + box.height / 2;
      const cdp = await ctx.newCDPSession(page);
      const touch = (type, points) => cdp.send('Input.dispatchTouchEvent', {
        type, touchPoints: points.map(([x, y], id) => ({ x, y, id })),
      });
      const scale = async () => Number(await stage.getAttribute('data-scale'));
      const before = await pos.textContent();

      // Two fingers apart: zoomed, not paged.
      await touch('touchStart', [[cx - 20, cy], [cx + 20, cy]]);
      for (let d = 30; d <= 100; d += 10)
        await touch('touchMove', [[cx - d, cy], [cx + d, cy]]);
      await touch('touchEnd', []);
      await page.waitForFunction(() => Number(document.querySelector(
        '[data-testid=viewer-stage]').dataset.scale) > 2);
      assert.equal(await pos.textContent(), before);

      // One finger on a zoomed picture pans it, and does not page either.
      const img = page.getByTestId('viewer-image');
      const moveBefore = await img.evaluate((e) => e.style.transform);
      await touch('touchStart', [[cx, cy]]);
      for (let d = 10; d <= 60; d += 10)
        await touch('touchMove', [[cx + d, cy + d]]);
      await touch('touchEnd', []);
      await page.waitForFunction((t) => document.querySelector(
        '[data-testid=viewer-image]').style.transform !== t, moveBefore);
      assert.equal(await pos.textContent(), before);
      assert.ok(await scale() > 2);
      await shot(page, 'film-3b-zoomed');

      // A double tap resets the zoom.
      await page.touchscreen.tap(cx, cy);
      await page.touchscreen.tap(cx, cy);
      await page.waitForFunction(() => document.querySelector(
        '[data-testid=viewer-stage]').dataset.scale === '1.00');

      // Unzoomed, a swipe up pages on.
      await touch('touchStart', [[cx, cy + 40]]);
      for (let d = 10; d <= 40; d += 10)
        await touch('touchMove', [[cx, cy + 40 - d]]);
      await touch('touchEnd', []);
      await page.waitForFunction((b) => document.querySelector(
        '[data-testid=viewer-pos]').textContent !== b, before);
      assert.ok(Number((await pos.textContent()).split('/')[0]) >
        Number(before.split('/')[0]), 'a swipe up pages on');
      await cdp.detach();
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

    await t.test('a link for a doctor: made, opened elsewhere, revoked, refused', async () => {
      await page.getByTestId('tab-share').click();
      const made = page.waitForResponse((r) => r.url().endsWith('/share') &&
        r.request().method() === 'POST');
      await page.getByTestId('share-make').click();
      const resp = await made;
      assert.equal(resp.status(), 201);
      const child = await resp.json();
      await page.getByTestId('share-url').waitFor();
      assert.equal(await page.locator('[data-testid=share-url] input').inputValue(), child.url);
      const item = page.locator(`[data-testid=share-item][data-id="${child.id}"]`);
      await item.waitFor();

      // The doctor, in a browser of their own.
      const other = await browser.newContext({
        viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true,
      });
      try {
        const doc = await other.newPage();
        doc.setDefaultTimeout(timeout);
        await doc.goto(child.url);
        await doc.getByTestId('verify').waitFor();
        let status = 0;
        for (let i = 0; i < 4 && status !== 200; i++) {
          status = await answer(doc, env.BIRTH_DATE);
          if (status === 429)
            await doc.waitForTimeout(3000);
        }
        assert.equal(status, 200);
        await doc.getByTestId('impression').waitFor();
        await doc.getByTestId('tab-images').click();
        await doc.getByTestId('series').first().click();
        const mark = doc.getByTestId('viewer-watermark');
        await mark.waitFor();
        assert.match(await mark.textContent(), new RegExp(`#${child.id}`));
        await doc.keyboard.press('Escape');

        // The patient revokes it; the doctor's next request is refused.
        const revoked = page.waitForResponse((r) => r.url().endsWith(`/share/${child.id}/revoke`));
        await item.getByTestId('share-revoke').click();
        assert.equal((await revoked).status(), 200);
        await page.waitForFunction((id) => {
          const li = document.querySelector(`[data-testid=share-item][data-id="${id}"]`);
          return li && !li.querySelector('[data-testid=share-revoke]');
        }, child.id);
        assert.match(await item.getByTestId('share-state').textContent(), /revoked/);
        await shot(page, 'film-5-revoked');
        await doc.reload();
        await doc.getByTestId('gone').waitFor();
        await shot(doc, 'film-6-refused');
      } finally {
        await other.close();
      }
    });
  } finally {
    await browser.close();
  }
});
