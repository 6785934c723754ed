// The self-service print kiosk (/kiosk.html, web/src/kiosk/) on a kiosk's
// touch screen in headless Debian Chromium, driven by playwright-core: the
// kiosk is set up with its token, a patient types the accession number and
// birth date, their released report is listed, printed (the browser's
// print is hooked through window.__kioskPrint, which the page calls
// instead of printing its hidden frame) and counted; "Done" ends it; the
// QR code scanned (typed into the focused field, as a scanner does) lists
// the same report again.
//
// Run by tests/integration/test_kiosk.py (`node --test kiosk.mjs`), which
// releases a report and sets:
//   KIOSK_URL       the kiosk page
//   KIOSK_TOKEN     an API token with the role kiosk
//   ACCESSION       the released study's accession number
//   BIRTH_DATE      the patient's birth date, YYYY-MM-DD
//   SCAN_TEXT       what a scanner types for the report's QR code (its URL)
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
const url = env.KIOSK_URL;
const timeout = Number(env.KIOSK_TIMEOUT_MS || 20000);
const shots = env.SCREENSHOT_DIR || fs.mkdtempSync(path.join(os.tmpdir(), 'kiosk-'));

const ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

async function shot(page, name) {
  const file = path.join(shots, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  console.log(`screenshot: ${file}`);
}

test('the print kiosk', { timeout: timeout * 10, skip: !url }, async () => {
  const browser = await chromium.launch({
    executablePath: env.CHROMIUM || '/usr/bin/chromium', headless: true, args: ARGS,
  });
  try {
    const ctx = await browser.newContext({
      viewport: { width: 1080, height: 1920 }, hasTouch: true,
    });
    await ctx.addInitScript(() => {
      window.__printed = [];
      window.__kioskPrint = async (blob) => {
        const head = new Uint8Array(await blob.slice(0, 5).arrayBuffer());
        window.__printed.push(String.fromCharCode(...head));
      };
    });
    const page = await ctx.newPage();
    page.setDefaultTimeout(timeout);
    await page.goto(url);

    // Set up once by staff: a wrong token is refused, the kiosk's is kept.
    await page.getByTestId('setup-token').fill('cpat_not-a-token');
    await page.getByTestId('setup-save').click();
    await page.getByTestId('message').waitFor();
    await page.getByTestId('setup-token').fill(env.KIOSK_TOKEN);
    await page.getByTestId('setup-save').click();
    await page.getByTestId('accession-input').waitFor();
    assert.match(await page.textContent('body'), /扫描报告上的二维码/);
    assert.match(await page.textContent('body'), /Scan the QR code on your report/);
    await shot(page, 'kiosk-home');

    // The patient identifies with the accession number and birth date.
    await page.getByTestId('accession-input').fill(env.ACCESSION);
    await page.getByTestId('birth-input').fill(env.BIRTH_DATE);
    await page.getByTestId('find').click();
    await page.getByTestId('items').waitFor();
    const items = page.getByTestId('item');
    assert.ok(await items.count() >= 1);
    await shot(page, 'kiosk-items');

    // Print: the PDF goes to the (hooked) print, then the print is counted.
    const recorded = page.waitForResponse((r) => r.url().endsWith('/printed') &&
      r.request().method() === 'POST');
    await items.first().getByTestId('print-report').click();
    assert.equal((await recorded).status(), 201);
    await items.first().getByTestId('status').filter({ hasText: '已发送到打印机' }).waitFor();
    assert.deepEqual(await page.evaluate(() => window.__printed), ['%PDF-']);
    assert.match(await items.first().getByTestId('printed').textContent(), /1/);
    await shot(page, 'kiosk-printed');

    // Done: back to the start, the session ended.
    await page.getByTestId('finish').click();
    await page.getByTestId('accession-input').waitFor();

    // The QR code: the scanner types the link's URL and Enter into the focused field.
    if (env.SCAN_TEXT) {
      await page.keyboard.type(env.SCAN_TEXT);
      await page.keyboard.press('Enter');
      await page.getByTestId('items').waitFor();
      assert.match(await page.getByTestId('item').first().getByTestId('printed').textContent(),
        /1/);
      await page.getByTestId('finish').click();
      await page.getByTestId('scan-input').waitFor();
    }
  } finally {
    await browser.close();
  }
});
