// The reading workbench served by cloudpacs at / (beside the admin console),
// in headless Debian Chromium driven by playwright-core: one order from the
// clinic's request to the released, signed report.
//
//   1. The radiologist, on a phone-sized page, signs in and opens the pool
//      from the folded navigation (nothing there yet).
//   2. The clinic's technician, on a desktop, finds the study in the
//      request form (QIDO-RS, searched by patient ID), gives the body part,
//      the priority and the notes, and sends the request: the order's page
//      shows it.
//   3. The order appears in the radiologist's pool without a reload (the
//      event stream, or the 10 s poll); they grab it and land on the reading
//      page, where the viewer is a link (a phone), write the findings and
//      the impression, see the draft saved by itself, and submit.
//   4. The reviewer, on a desktop, finds it in the review queue, reads the
//      submitted version and returns it with a reason; the radiologist
//      finds it returned in "my orders", sees the reason, changes the
//      impression and submits again; the reviewer approves version 2.
//   5. The technician's order page turns, without a reload, into the
//      released report: findings, impression, doctor, reviewer, and the
//      signature badge saying valid; printed, the report stands alone.
//   6. The centre's admin sees the statistics (a row and a bar for the
//      read, a CSV download).
//   7. The technician requests a read of a second study; the centre's admin
//      sees it on the board (live), offers it to the radiologist and puts
//      them on duty; the radiologist accepts the offer in the pool (phone)
//      and gives the order back with a reason; the technician's page shows
//      it back in the pool, and the technician withdraws it.
//   8. On a phone, the technician's orders, the report and the request form
//      fit the screen.
//
// Run by tests/integration/test_workbench.py (`node --test workbench.mjs`),
// which starts `cloudpacs serve`, makes the institutions, users, contract
// and study, and sets:
//   WORKBENCH_URL      the server's address (http://127.0.0.1:PORT/)
//   STUDY_UID, STUDY2_UID, PATIENT_ID  the two stored studies and their patient
//   FINDINGS, IMPRESSION           the report's text to type (the final one)
//   REJECT_REASON                  why the reviewer returns the first version
//   GIVE_BACK_REASON               why the second order is given back
//   TECH_USER, TECH_PASSWORD       a technician of the clinic
//   RAD_USER, RAD_PASSWORD         a radiologist of the centre (CR:CHEST, contracted)
//   REVIEWER_USER, REVIEWER_PASSWORD  a reviewer of the centre
//   CENTRE_USER, CENTRE_PASSWORD   an institution admin of the centre
//   CHROMIUM           the browser (default /usr/bin/chromium)
//   SCREENSHOT_DIR     where the screenshots go (PNG; default a temp dir)
//   CONSOLE_LOG        where the browser's console and failed requests go
//   CONSOLE_TIMEOUT_MS how long one step may wait (default 20000)
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';

import pw from 'playwright-core';

const { chromium } = pw;
const env = process.env;
const base = env.WORKBENCH_URL;
const timeout = Number(env.CONSOLE_TIMEOUT_MS || 20000);
const shots = env.SCREENSHOT_DIR || fs.mkdtempSync(path.join(os.tmpdir(), 'workbench-'));
// The pool refreshes from the event stream, or at worst every 10 s.
const LIVE_TIMEOUT = Math.max(timeout, 30000);

const ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

const logs = [];

function watch(page, who) {
  page.setDefaultTimeout(timeout);
  page.on('console', (m) => logs.push(`${who} console.${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => logs.push(`${who} pageerror: ${e.message}`));
  page.on('response', (r) => {
    if (r.status() >= 400)
      logs.push(`${who} http ${r.status()} ${r.request().method()} ${r.url()}`);
  });
  page.on('dialog', (d) => d.dismiss());
}

function saveLogs() {
  if (env.CONSOLE_LOG)
    fs.writeFileSync(env.CONSOLE_LOG, logs.join('\n') + '\n');
}

async function shot(page, name) {
  const file = path.join(shots, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  console.log(`screenshot: ${file}`);
}

// Signs in on the page the address leads to (the sign-in form, which then
// goes on to where the address pointed); a page already showing the form
// (after signing out) is used as it is.
async function signInAt(page, hash, user, password) {
  if (!/#\/signin/.test(page.url())) {
    await page.goto(`${base}${hash}`, { waitUntil: 'domcontentloaded' });
    await page.waitForURL(/#\/signin/);
  }
  await page.locator('#username').fill(user);
  await page.locator('#password').fill(password);
  await page.getByTestId('signin-submit').click();
  await page.getByTestId('who').waitFor({ state: 'attached' });
}

async function assertNoSidewaysScroll(page, what) {
  const { scroll, inner } = await page.evaluate(() => ({
    scroll: document.documentElement.scrollWidth, inner: window.innerWidth,
  }));
  assert.ok(scroll <= inner + 1, `${what}: the page is ${scroll}px wide on a ${inner}px screen`);
}

test('the reading workbench', { timeout: timeout * 30, skip: !base }, async (t) => {
  for (const name of ['STUDY_UID', 'STUDY2_UID', 'TECH_USER', 'TECH_PASSWORD', 'RAD_USER', 'RAD_PASSWORD',
    'REVIEWER_USER', 'REVIEWER_PASSWORD', 'CENTRE_USER', 'CENTRE_PASSWORD'])
    assert.ok(env[name], `${name} is not set`);
  const study = env.STUDY_UID;
  const findings = env.FINDINGS || 'No consolidation.';
  const impression = env.IMPRESSION || 'Normal chest.';
  // The first version's impression, which the reviewer sends back.
  const firstImpression = `${impression}（待复核）`;
  const rejectReason = env.REJECT_REASON || 'Please be definite.';

  const browser = await chromium.launch({
    executablePath: env.CHROMIUM || '/usr/bin/chromium', headless: true, args: ARGS,
  });
  try {
    const phone = await browser.newContext({
      viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true,
      hasTouch: true,
    });
    const rad = await phone.newPage();
    watch(rad, 'radiologist');
    const desk = await browser.newContext({ viewport: { width: 1280, height: 860 } });
    const tech = await desk.newPage();
    watch(tech, 'technician');
    let orderId = '';

    await t.test('the radiologist opens the pool on a phone', async () => {
      await signInAt(rad, '#/', env.RAD_USER, env.RAD_PASSWORD);
      const toggle = rad.getByTestId('menu-toggle');
      await toggle.waitFor();
      await toggle.click();
      await rad.getByTestId('nav-pool').waitFor({ state: 'visible' });
      assert.equal(await rad.getByTestId('nav-request').count(), 0,
        'a radiologist is offered the clinic pages');
      assert.equal(await rad.getByTestId('nav-board').count(), 0,
        'a radiologist is offered the board');
      await rad.getByTestId('nav-pool').click();
      await rad.getByRole('heading', { name: '待读池', level: 1 }).waitFor();
      await rad.getByTestId('pool-empty').waitFor();
      await assertNoSidewaysScroll(rad, 'pool');
    });

    await t.test('the technician requests a read', async () => {
      await signInAt(tech, '#/', env.TECH_USER, env.TECH_PASSWORD);
      assert.equal(await tech.getByTestId('nav-pool').count(), 0,
        'a technician is offered the pool');
      await tech.getByTestId('nav-request').click();
      await tech.locator('#rq-patient').fill(env.PATIENT_ID || '');
      await tech.getByTestId('study-find').click();
      const row = tech.locator(`tr[data-testid="study-row"][data-study="${study}"]`);
      await row.waitFor();
      assert.match(await row.textContent(), /CR/);
      await row.getByTestId('study-pick').check();
      await tech.locator('#rq-body').fill('CHEST');
      await tech.getByTestId('priority-urgent').check();
      await tech.getByTestId('notes').fill('咳嗽两周，发热，请排除肺炎。');
      await shot(tech, '01-request');
      await tech.getByTestId('request-submit').click();
      await tech.waitForURL(/#\/orders\/\d+$/);
      orderId = tech.url().match(/#\/orders\/(\d+)$/)[1];
      await tech.getByTestId('order-facts').waitFor();
      assert.match(await tech.getByTestId('order-facts').textContent(), /CR\s+CHEST/);
      await shot(tech, '02-order-requested');
    });

    await t.test('the order appears in the pool; the radiologist grabs it', async () => {
      const card = rad.locator(`li[data-testid="pool-card"][data-order-id="${orderId}"]`);
      await card.waitFor({ timeout: LIVE_TIMEOUT });
      const text = await card.textContent();
      assert.match(text, /CR/);
      assert.match(text, /CHEST/);
      assert.match(text, /急诊/);
      assert.match(text, /肺炎/);
      assert.match(await card.getByTestId('countdown').textContent(), /剩余 \d/);
      await assertNoSidewaysScroll(rad, 'pool with a card');
      await shot(rad, '03-pool-phone');
      await card.getByTestId('grab').click();
      await rad.waitForURL(new RegExp(`#/read/${orderId}$`));
    });

    await t.test('reads on the phone: the viewer a link, the draft saved, submitted', async () => {
      const link = rad.getByTestId('viewer-link');
      await link.waitFor();
      assert.match(await link.getAttribute('href'),
        new RegExp(`^/viewer/viewer\\?StudyInstanceUIDs=${study.replace(/\./g, '\\.')}$`));
      assert.equal(await rad.getByTestId('viewer-frame').count(), 0,
        'a phone gets the viewer in a frame');
      await rad.getByTestId('findings').fill(findings);
      await rad.getByTestId('impression').fill(firstImpression);
      await rad.getByTestId('critical').check();
      // Saved by itself a few seconds after typing.
      await rad.locator('[data-testid="save-state"][data-state="saved"]').waitFor();
      await assertNoSidewaysScroll(rad, 'reading');
      await shot(rad, '04-reading-phone');
      await rad.getByTestId('report-submit').click();
      await rad.getByTestId('submitted').waitFor();
      assert.equal(await rad.getByTestId('report-submit').count(), 0);
      await shot(rad, '05-submitted-phone');
    });

    await t.test('the clinic follows the state', async () => {
      await tech.getByTestId('nav-orders').click();
      const row = tech.locator(`tr[data-testid="order-row"][data-order-id="${orderId}"]`);
      await row.waitFor();
      assert.equal(await row.getAttribute('data-state'), 'reported');
      // Taken: no longer to be withdrawn.
      assert.equal(await row.getByTestId('order-cancel').count(), 0);
      await row.getByTestId('order-open').click();
      await tech.waitForURL(new RegExp(`#/orders/${orderId}$`));
      await tech.getByTestId('order-facts').waitFor();
    });

    const desk2 = await browser.newContext({ viewport: { width: 1280, height: 860 } });
    const rev = await desk2.newPage();
    watch(rev, 'reviewer');

    await t.test('the reviewer returns the first version with a reason', async () => {
      await signInAt(rev, '#/', env.REVIEWER_USER, env.REVIEWER_PASSWORD);
      await rev.getByTestId('nav-review').click();
      const row = rev.locator(`tr[data-testid="review-row"][data-order-id="${orderId}"]`);
      await row.waitFor({ timeout: LIVE_TIMEOUT });
      await row.getByTestId('review-open').click();
      await rev.waitForURL(new RegExp(`#/review/${orderId}$`));
      const version = rev.getByTestId('review-version');
      await version.waitFor();
      assert.equal((await version.getByTestId('report-findings').textContent()).trim(), findings);
      assert.equal((await version.getByTestId('report-impression').textContent()).trim(),
        firstImpression);
      assert.ok(await version.getByTestId('critical-flag').isVisible());
      // On a desktop the study shows in a frame beside the report.
      await rev.getByTestId('viewer-frame').waitFor({ state: 'attached' });
      await shot(rev, '06-review');
      await rev.getByTestId('reject').click();
      await rev.getByTestId('reject-reason').fill(rejectReason);
      await rev.getByTestId('reject-confirm').click();
      await rev.getByTestId('review-done').waitFor();
    });

    await t.test('the radiologist finds it returned and writes it again', async () => {
      await rad.getByTestId('menu-toggle').click();
      await rad.getByTestId('nav-mine').click();
      const card = rad.locator(`[data-testid="mine-card"][data-order-id="${orderId}"]`);
      await card.waitFor({ timeout: LIVE_TIMEOUT });
      assert.equal(await card.getAttribute('data-state'), 'returned');
      await card.getByTestId('mine-open').click();
      await rad.waitForURL(new RegExp(`#/read/${orderId}$`));
      const why = rad.getByTestId('rejection');
      await why.waitFor();
      assert.ok((await why.textContent()).includes(rejectReason), await why.textContent());
      // The draft is still there, to be changed.
      assert.equal(await rad.getByTestId('findings').inputValue(), findings);
      await rad.getByTestId('impression').fill(impression);
      await rad.locator('[data-testid="save-state"][data-state="saved"]').waitFor();
      await shot(rad, '06b-rewrite-phone');
      await rad.getByTestId('report-submit').click();
      await rad.getByTestId('submitted').waitFor();
    });

    await t.test('the reviewer approves the second version', async () => {
      await rev.getByTestId('nav-review').click();
      const row = rev.locator(`tr[data-testid="review-row"][data-order-id="${orderId}"]`);
      await row.waitFor({ timeout: LIVE_TIMEOUT });
      await row.getByTestId('review-open').click();
      const version = rev.getByTestId('review-version');
      await version.waitFor();
      assert.match(await version.locator('h2').textContent(), /2/);
      assert.equal((await version.getByTestId('report-impression').textContent()).trim(),
        impression);
      await rev.getByTestId('approve').click();
      await rev.getByTestId('review-done').waitFor();
    });

    await t.test('the clinic sees the released report with a valid signature', async () => {
      const report = tech.getByTestId('report-view');
      await report.waitFor({ timeout: LIVE_TIMEOUT });
      assert.equal((await report.getByTestId('report-findings').textContent()).trim(), findings);
      assert.equal((await report.getByTestId('report-impression').textContent()).trim(),
        impression);
      const badge = report.getByTestId('signature');
      assert.equal(await badge.getAttribute('data-valid'), 'yes', await badge.textContent());
      assert.match(await badge.textContent(), /电子签名有效/);
      await report.getByTestId('report-author').waitFor();
      await report.getByTestId('report-reviewer').waitFor();
      // The report names its author and reviewer, not their ids.
      if (env.RAD_NAME) {
        assert.match(await report.getByTestId('report-author').textContent(),
          new RegExp(env.RAD_NAME));
        assert.match(await report.getByTestId('report-reviewer').textContent(),
          new RegExp(env.REVIEWER_NAME));
        assert.match(await report.getByTestId('report-reading').textContent(),
          new RegExp(env.CENTRE_NAME));
      }
      // The critical finding waits for the clinic's acknowledgement.
      await report.getByTestId('critical-flag').waitFor();
      await report.getByTestId('critical-ack').click();
      await report.getByTestId('critical-acked').waitFor();
      await shot(tech, '07-report');

      await tech.emulateMedia({ media: 'print' });
      assert.equal(await tech.locator('.topbar').isVisible(), false, 'the header is printed');
      assert.equal(await tech.getByTestId('print').isVisible(), false, 'buttons are printed');
      assert.equal(await report.isVisible(), true);
      await tech.pdf({ path: path.join(shots, '08-report-print.pdf') }).catch(() => {});
      await tech.emulateMedia({ media: 'screen' });
    });

    await t.test('the centre sees the statistics', async () => {
      await rev.getByTestId('sign-out').click();
      await rev.waitForURL(/#\/signin/);
      await signInAt(rev, '#/', env.CENTRE_USER, env.CENTRE_PASSWORD);
      assert.equal(await rev.getByTestId('nav-pool').count(), 0,
        'the centre\'s admin is offered the pool');
      await rev.getByTestId('nav-stats').click();
      await rev.getByTestId('stats-form').waitFor();
      const href = await rev.getByTestId('stats-csv').getAttribute('href');
      assert.match(href, /^\/api\/stats\?.*format=csv/);
      const res = await rev.request.get(new URL(href, base).toString());
      assert.equal(res.status(), 200);
      assert.match(res.headers()['content-type'], /csv/);
      // The released read counts for the radiologist: a row and a bar.
      await rev.getByTestId('stats-table').locator('tbody tr').first().waitFor();
      assert.ok(await rev.getByTestId('stats-chart').locator('rect').count() >= 1);
      await shot(rev, '09-stats');
    });

    let order2 = '';
    await t.test('a second request, offered from the board', async () => {
      await tech.getByTestId('nav-request').click();
      await tech.locator('#rq-patient').fill(env.PATIENT_ID || '');
      await tech.getByTestId('study-find').click();
      const row = tech.locator(`tr[data-testid="study-row"][data-study="${env.STUDY2_UID}"]`);
      await row.waitFor();
      await row.getByTestId('study-pick').check();
      await tech.locator('#rq-body').fill('CHEST');
      await tech.getByTestId('notes').fill('体检复查。');
      await tech.getByTestId('request-submit').click();
      await tech.waitForURL(/#\/orders\/\d+$/);
      order2 = tech.url().match(/#\/orders\/(\d+)$/)[1];
      assert.notEqual(order2, orderId);

      await rev.getByTestId('nav-board').click();
      const line = rev.locator(`tr[data-testid="board-row"][data-order-id="${order2}"]`);
      await line.waitFor({ timeout: LIVE_TIMEOUT });
      assert.match(await line.getByTestId('countdown').textContent(), /剩余 \d/);
      await line.getByTestId('assign-doctor').selectOption({ index: 1 });
      await line.getByTestId('assign').click();
      await line.locator('[data-testid="state"][data-state="offered"]')
        .waitFor({ timeout: LIVE_TIMEOUT });
      const duty = rev.locator(`li[data-doctor="${env.RAD_USER}"]`);
      await duty.getByTestId('duty-toggle').check();
      await duty.getByText(/值班至/).waitFor();
      await shot(rev, '10-board');
    });

    await t.test('the radiologist accepts the offer and gives the order back', async () => {
      await rad.getByTestId('menu-toggle').click();
      await rad.getByTestId('nav-pool').click();
      const offer = rad.locator(`[data-testid="offer-card"][data-order-id="${order2}"]`);
      await offer.waitFor({ timeout: LIVE_TIMEOUT });
      await shot(rad, '11-offer-phone');
      await offer.getByTestId('offer-accept').click();
      await rad.waitForURL(new RegExp(`#/read/${order2}$`));
      await rad.getByTestId('give-back').click();
      await rad.locator('#r-give-back').fill(env.GIVE_BACK_REASON || 'no time');
      await rad.getByTestId('give-back-confirm').click();
      await rad.waitForURL(/#\/pool$/);
    });

    await t.test('the technician withdraws it', async () => {
      // The order page follows the state: back in the pool, so it may be withdrawn.
      await tech.locator('[data-testid="order-facts"] [data-testid="state"][data-state="pooled"]')
        .waitFor({ timeout: LIVE_TIMEOUT });
      await tech.getByTestId('cancel').click();
      await tech.getByTestId('cancel-reason').fill('患者已转院');
      await tech.getByTestId('cancel-confirm').click();
      await tech.locator('[data-testid="order-facts"] [data-testid="state"][data-state="cancelled"]')
        .waitFor();
      assert.equal(await tech.getByTestId('cancel').count(), 0);
      await shot(tech, '12-withdrawn');
    });

    await t.test('the clinic\'s pages on a phone', async () => {
      // A context of its own: the radiologist's phone keeps its cookie.
      const phone2 = await browser.newContext({
        viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true,
        hasTouch: true,
      });
      const mob = await phone2.newPage();
      watch(mob, 'technician-phone');
      await signInAt(mob, '#/orders', env.TECH_USER, env.TECH_PASSWORD);
      await mob.waitForURL(/#\/orders$/);
      const row = mob.locator(`tr[data-testid="order-row"][data-order-id="${orderId}"]`);
      await row.waitFor();
      assert.equal(await row.getAttribute('data-state'), 'released');
      await assertNoSidewaysScroll(mob, 'orders');
      await shot(mob, '13-orders-phone');
      await row.getByTestId('order-open').click();
      await mob.getByTestId('report-view').waitFor();
      await mob.getByTestId('critical-acked').waitFor();
      await assertNoSidewaysScroll(mob, 'report');
      await shot(mob, '14-report-phone');
      await mob.getByTestId('menu-toggle').click();
      await mob.getByTestId('nav-request').click();
      await mob.locator(`tr[data-testid="study-row"][data-study="${study}"]`).waitFor();
      await assertNoSidewaysScroll(mob, 'request');
      await shot(mob, '15-request-phone');
      await phone2.close();
    });

    await t.test('no script error on any page', () => {
      assert.deepEqual(logs.filter((l) => l.includes('pageerror')), []);
    });
  } finally {
    saveLogs();
    await browser.close();
  }
});
