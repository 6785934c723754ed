// The OHIF viewer served by cloudpacs at /viewer/, in headless Debian
// Chromium driven by playwright-core: it opens a stored study and checks
// that the image is drawn, by reading back the pixels of the viewport's
// canvas and of a screenshot of the viewport.
//
// Run by tests/integration/test_viewer.py, which starts `cloudpacs serve`,
// stores the study and sets:
//   VIEWER_URL     the page to open (.../viewer/?StudyInstanceUIDs=...)
//   SCREENSHOT     where the screenshot of the page goes (PNG)
//   CHROMIUM       the browser (default /usr/bin/chromium)
//   VIEWER_TIMEOUT_MS  how long the image may take (default 90000)
//   TRANSFER_SYNTAX    when set, the frames must come in this syntax (the
//                      viewer decoding them itself, in the browser)
//   VIEWER_USER, VIEWER_PASSWORD  when set, the page first signs in with
//                      POST /api/session, whose cookie then carries the
//                      viewer's DICOMweb requests
'use strict';

const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { test } = require('node:test');
const { chromium } = require('playwright-core');

const url = process.env.VIEWER_URL;
const screenshot = process.env.SCREENSHOT ||
  path.join(os.tmpdir(), 'cloudpacs-viewer.png');
const timeout = Number(process.env.VIEWER_TIMEOUT_MS || 90000);

// The flags that keep Chromium off the (closed) network and quiet here;
// SwiftShader gives WebGL without a GPU, as cornerstone3D renders with it.
const ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--enable-unsafe-swiftshader', '--use-angle=swiftshader',
];

// Gray levels and lit share of the middle of the first viewport's canvas:
// the middle, because the corners carry the overlay text in OHIF.
function canvasStats() {
  const canvas = document.querySelector('.cornerstone-canvas') ||
    document.querySelector('[data-viewport-uid] canvas');
  if (!canvas || canvas.width < 16 || canvas.height < 16)
    return null;
  const ctx = canvas.getContext('2d');
  if (!ctx)
    return { error: 'the viewport canvas has no 2d context' };
  const w = canvas.width, h = canvas.height;
  const x0 = Math.floor(w / 4), y0 = Math.floor(h / 4);
  const data = ctx.getImageData(x0, y0, Math.floor(w / 2), Math.floor(h / 2)).data;
  const levels = new Set();
  let lit = 0;
  for (let i = 0; i < data.length; i += 4) {
    levels.add((data[i] << 16) | (data[i + 1] << 8) | data[i + 2]);
    if (data[i] + data[i + 1] + data[i + 2] > 30)
      lit++;
  }
  return { width: w, height: h, levels: levels.size, lit: lit / (data.length / 4) };
}

// The same measure on a PNG (the screenshot), decoded by the browser.
async function pngStats(page, png) {
  return page.evaluate(async (b64) => {
    const img = new Image();
    img.src = 'data:image/png;base64,' + b64;
    await img.decode();
    const c = document.createElement('canvas');
    c.width = img.width;
    c.height = img.height;
    const ctx = c.getContext('2d');
    ctx.drawImage(img, 0, 0);
    const w = c.width, h = c.height;
    const data = ctx.getImageData(Math.floor(w / 4), Math.floor(h / 4),
      Math.floor(w / 2), Math.floor(h / 2)).data;
    const levels = new Set();
    for (let i = 0; i < data.length; i += 4)
      levels.add((data[i] << 16) | (data[i + 1] << 8) | data[i + 2]);
    return { width: w, height: h, levels: levels.size };
  }, png.toString('base64'));
}

test('the viewer draws the stored study', { timeout: timeout + 60000 }, async () => {
  assert.ok(url, 'VIEWER_URL is not set');
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ARGS,
  });
  const logs = [];
  // The transfer syntax of each frames answer, from its first part's headers.
  const frameTypes = new Set();
  const pending = [];
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    page.on('console', (m) => logs.push(`console.${m.type()}: ${m.text()}`));
    page.on('pageerror', (e) => logs.push(`pageerror: ${e.message}`));
    page.on('response', (r) => {
      if (r.url().includes('/frames/')) {
        pending.push(r.body().then((b) => {
          const m = /transfer-syntax=([0-9.]+)/i.exec(b.subarray(0, 1024).toString('latin1'));
          frameTypes.add(m ? m[1] : 'none');
        }).catch((e) => logs.push(`frames body: ${e.message}`)));
      }
      if (r.status() >= 400)
        logs.push(`http ${r.status()} ${r.url()}`);
    });

    if (process.env.VIEWER_USER) {
      // The page's request context shares the browser context's cookies.
      const origin = new URL(url).origin;
      const login = await page.request.post(origin + '/api/session', {
        data: { username: process.env.VIEWER_USER, password: process.env.VIEWER_PASSWORD },
        headers: { 'X-Requested-With': 'cloudpacs' },
      });
      assert.equal(login.status(), 200, `sign-in: ${login.status()} ${await login.text()}`);
    }
    await page.goto(url, { waitUntil: 'domcontentloaded', timeout });
    assert.equal(await page.evaluate(() => window.crossOriginIsolated), true,
      'the viewer page is not cross-origin isolated (COOP/COEP)');

    let stats = null;
    const deadline = Date.now() + timeout;
    while (Date.now() < deadline) {
      stats = await page.evaluate(canvasStats).catch(() => null);
      if (stats && stats.levels > 16 && stats.lit > 0.05)
        break;
      await page.waitForTimeout(500);
    }
    // Once the first pixels are in, give the viewport a moment to settle.
    await page.waitForTimeout(1500);
    stats = await page.evaluate(canvasStats).catch(() => stats);
    await page.screenshot({ path: screenshot });
    console.log(`screenshot: ${screenshot}`);
    console.log(`canvas: ${JSON.stringify(stats)}`);

    const viewport = page.locator('[data-viewport-uid]').first();
    let shot = null;
    if (await viewport.count()) {
      shot = await pngStats(page, await viewport.screenshot());
      console.log(`viewport screenshot: ${JSON.stringify(shot)}`);
    }

    const why = 'the viewport shows no image\n' + logs.slice(-40).join('\n');
    assert.ok(stats && !stats.error, why);
    assert.ok(stats.levels > 16, `${stats.levels} colours in the canvas middle; ${why}`);
    assert.ok(stats.lit > 0.05, `${stats.lit} of the canvas middle lit; ${why}`);
    assert.ok(shot && shot.levels > 16, `viewport screenshot: ${JSON.stringify(shot)}`);
    await Promise.all(pending);
    console.log(`frames in: ${JSON.stringify([...frameTypes])}`);
    const ts = process.env.TRANSFER_SYNTAX;
    if (ts)
      assert.ok(frameTypes.has(ts),
        `no frames in ${ts}: ${JSON.stringify([...frameTypes])}`);
  } finally {
    if (process.env.VIEWER_LOG)
      fs.writeFileSync(process.env.VIEWER_LOG, logs.join('\n') + '\n');
    await browser.close();
  }
});
