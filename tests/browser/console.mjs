// The admin console served by cloudpacs at /, in headless Debian Chromium
// driven by playwright-core. Two tests, each run when its address is set:
//
// "the admin console" (CONSOLE_URL): a system admin signs in (after one
// wrong password, whose API message the form must show), creates a clinic
// under the reading centre and a radiologist in the centre, creates and
// revokes an API token, adds and removes an application entity, switches
// the language to English (remembered over a reload); an institution admin
// records the radiologist's qualifications and a contract with the clinic;
// then, on a phone-sized screen, an audit admin signs in and finds in the
// audit trail the records those actions made (institution_created,
// user_created), filters by event, verifies the chain and fetches the
// export.
//
// "the second factor, locks and disabled accounts" (MFA_URL, a server with
// [auth] mfa_admins = true and lock_after = 2): a disabled user is told so;
// a technician is locked out by wrong passwords; a security admin enrols a
// TOTP second factor at first sign-in (a wrong code first), unlocks the
// technician and grants them the reviewer role; the technician then signs
// in and is offered no admin page; the security admin signs in again with
// password and code (a wrong code first).
//
// Run by tests/integration/test_console.py (`node --test console.mjs`),
// which starts `cloudpacs serve`, creates the institutions and users with
// the CLI and sets:
//   CONSOLE_URL        the console's address (http://127.0.0.1:PORT/)
//   ADMIN_USER, ADMIN_PASSWORD       the system admin
//   AUDITOR_USER, AUDITOR_PASSWORD   the audit admin
//   INST_ADMIN_USER, INST_ADMIN_PASSWORD  an admin of the centre
//   CENTRE_CODE        the reading centre's code
//   CLINIC_CODE        the code of the clinic to create
//   RADIOLOGIST_USER   the username of the radiologist to create
// or
//   MFA_URL            the console's address on the second server
//   SECURITY_USER, SECURITY_PASSWORD  a security admin without a second factor
//   TECH_USER, TECH_PASSWORD          a technician to lock out and unlock
//   DISABLED_USER, DISABLED_PASSWORD  a disabled user
// and for both:
//   CHROMIUM           the browser (default /usr/bin/chromium)
//   SCREENSHOT_DIR     where the screenshots go (PNG; default a temp dir)
//   CONSOLE_LOG        where the browser's console and failed requests go
//   CONSOLE_TIMEOUT_MS how long one step may wait (default 20000)
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';

import pw from 'playwright-core';

const { chromium } = pw;
const env = process.env;
const base = env.CONSOLE_URL;
const timeout = Number(env.CONSOLE_TIMEOUT_MS || 20000);
const shots = env.SCREENSHOT_DIR || fs.mkdtempSync(path.join(os.tmpdir(), 'console-'));
const centre = env.CENTRE_CODE || 'CENTRE';
const clinic = env.CLINIC_CODE || 'CLINIC';
const radiologist = env.RADIOLOGIST_USER || 'radiologist';

// The flags that keep Chromium off the (closed) network and quiet here.
const ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

const logs = [];
// Pages whose next confirm() is to be accepted (any other is dismissed).
const confirming = new WeakSet();

function watch(page, who) {
  page.setDefaultTimeout(timeout);
  page.on('console', (m) => logs.push(`${who} console.${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => logs.push(`${who} pageerror: ${e.message}`));
  page.on('response', (r) => {
    if (r.status() >= 400)
      logs.push(`${who} http ${r.status()} ${r.request().method()} ${r.url()}`);
  });
  // Disabling and revoking ask first; this test confirms nothing it does not mean to.
  page.on('dialog', (d) => {
    const yes = confirming.has(page);
    confirming.delete(page);
    return yes ? d.accept() : d.dismiss();
  });
}

async function shot(page, name) {
  const file = path.join(shots, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  console.log(`screenshot: ${file}`);
}

// Clicks what asks confirm() first, and says yes.
async function clickConfirmed(page, locator) {
  confirming.add(page);
  await locator.click();
}

async function signIn(page, user, password) {
  await page.locator('#username').fill(user);
  await page.locator('#password').fill(password);
  await page.getByTestId('signin-submit').click();
}

// One sign-in attempt: the API's status and the message the form shows.
async function attempt(page, user, password) {
  const answered = page.waitForResponse((r) => r.url().endsWith('/api/session') &&
    r.request().method() === 'POST');
  await signIn(page, user, password);
  const res = await answered;
  await page.waitForFunction(() => {
    const b = document.querySelector('[data-testid=signin-submit]');
    return b && !b.disabled;
  });
  const err = page.getByTestId('form-error');
  return { status: res.status(), text: (await err.count()) ? await err.textContent() : '' };
}

// No page may be wider than the screen: a phone would scroll sideways.
async function assertNoSidewaysScroll(page, what) {
  const { scroll, inner } = await page.evaluate(() => ({
    scroll: document.documentElement.scrollWidth, inner: window.innerWidth,
  }));
  assert.ok(scroll <= inner + 1, `${what}: the page is ${scroll}px wide on a ${inner}px screen`);
}

test('the admin console', { timeout: timeout * 20, skip: !base }, async (t) => {
  for (const name of ['ADMIN_USER', 'ADMIN_PASSWORD', 'AUDITOR_USER', 'AUDITOR_PASSWORD',
    'INST_ADMIN_USER', 'INST_ADMIN_PASSWORD'])
    assert.ok(env[name], `${name} is not set`);

  const browser = await chromium.launch({
    executablePath: env.CHROMIUM || '/usr/bin/chromium', headless: true, args: ARGS,
  });
  try {
    const desk = await browser.newContext({ viewport: { width: 1280, height: 860 } });
    const page = await desk.newPage();
    watch(page, 'desktop');

    await t.test('the sign-in page, in Chinese by default', async () => {
      await page.goto(base, { waitUntil: 'domcontentloaded' });
      await page.waitForURL(/#\/signin/);
      assert.equal(await page.locator('html').getAttribute('lang'), 'zh-CN');
      assert.equal((await page.locator('h1').textContent()).trim(), '登录');
    });

    await t.test('a wrong password shows the API message', async () => {
      await signIn(page, env.ADMIN_USER, `${env.ADMIN_PASSWORD}-wrong`);
      const err = page.getByTestId('form-error');
      await err.waitFor();
      const text = await err.textContent();
      assert.match(text, /用户名或密码错误/, text);
      assert.ok(text.includes('(') || text.includes('（'), `no API message in ${text}`);
      await shot(page, '01-signin-error');
    });

    await t.test('the system admin signs in and sees only what they may', async () => {
      await signIn(page, env.ADMIN_USER, env.ADMIN_PASSWORD);
      await page.getByTestId('nav-institutions').waitFor();
      for (const id of ['nav-users', 'nav-tokens', 'nav-aes'])
        assert.equal(await page.getByTestId(id).count(), 1, `${id} missing`);
      assert.equal(await page.getByTestId('nav-audit').count(), 0,
        'a system admin is offered the audit trail');
      assert.equal(await page.getByTestId('me-username').textContent(), env.ADMIN_USER);
      await shot(page, '02-home');
    });

    await t.test('creates a clinic under the centre', async () => {
      await page.getByTestId('nav-institutions').click();
      await page.getByTestId(`inst-add-child-${centre}`).click();
      await page.locator('#inst-code').fill(clinic);
      await page.locator('#inst-name').fill(`测试诊所 ${clinic}`);
      await page.locator('#inst-kind').selectOption('clinic');
      await page.getByTestId('inst-save').click();
      await page.getByTestId('notice').waitFor();
      // The clinic shows inside the centre's node: the tree has it as a child.
      const node = page.getByTestId(`inst-${centre}`).getByTestId(`inst-${clinic}`);
      await node.waitFor();
      assert.match(await node.textContent(), /诊所/);
      await shot(page, '03-institutions');
    });

    await t.test('the same code again shows the API error', async () => {
      await page.getByTestId(`inst-add-child-${centre}`).click();
      await page.locator('#inst-code').fill(clinic);
      await page.locator('#inst-name').fill('重复');
      await page.getByTestId('inst-save').click();
      const err = page.getByTestId('inst-form').getByTestId('form-error');
      await err.waitFor();
      assert.ok((await err.textContent()).trim().length > 0);
      await page.getByTestId('inst-form').getByRole('button', { name: '取消' }).click();
    });

    await t.test('creates a radiologist in the centre', async () => {
      await page.getByTestId('nav-users').click();
      await page.getByTestId('user-new').click();
      // A system admin grants clinical roles only.
      assert.equal(await page.getByTestId('role-system_admin').count(), 0);
      await page.locator('#new-username').fill(radiologist);
      await page.locator('#new-display').fill('王医生');
      const option = page.locator('#new-institution option', { hasText: `(${centre})` });
      await page.locator('#new-institution').selectOption(await option.getAttribute('value'));
      await page.locator('#new-title').selectOption('2');
      await page.locator('#new-password').fill('Radiologist-pass-1!');
      await page.locator('#new-password2').fill('Radiologist-pass-1!');
      await page.getByTestId('role-radiologist').check();
      await page.getByTestId('user-create').click();
      const row = page.getByTestId(`user-row-${radiologist}`);
      await row.waitFor();
      assert.match(await row.textContent(), /放射科医师/);
      await shot(page, '04-users');
    });

    await t.test('creates an API token, shown once, and revokes it', async () => {
      await page.getByTestId('nav-tokens').click();
      await page.locator('#tok-name').fill(`网关 ${clinic}`);
      const option = page.locator('#tok-inst option', { hasText: `(${clinic})` });
      await page.locator('#tok-inst').selectOption(await option.getAttribute('value'));
      await page.getByTestId('token-create').click();
      const value = page.getByTestId('token-value');
      await value.waitFor();
      assert.match((await value.textContent()).trim(), /^cpat_[A-Za-z0-9_-]{20,}$/);
      await shot(page, '04a-token');
      const live = page.locator('tr[data-token-id][data-revoked="no"]');
      assert.equal(await live.count(), 1);
      await clickConfirmed(page, live.getByTestId('token-revoke'));
      await page.locator('tr[data-token-id][data-revoked="yes"]').waitFor();
      assert.equal(await live.count(), 0);
    });

    await t.test('adds and removes an application entity', async () => {
      await page.getByTestId('nav-aes').click();
      await page.locator('#ae-title').fill('CONSOLE_CT');
      await page.locator('#ae-host').fill('127.0.0.1');
      await page.locator('#ae-port').fill('11112');
      await page.getByTestId('ae-save').click();
      const row = page.getByTestId('ae-row-CONSOLE_CT');
      await row.waitFor();
      assert.match(await row.textContent(), /store/);
      await shot(page, '04b-aes');
      await clickConfirmed(page, row.getByTestId('ae-remove'));
      await row.waitFor({ state: 'detached' });
    });

    await t.test('English on request, remembered over a reload', async () => {
      await page.getByTestId('nav-users').click();
      await page.getByTestId(`user-row-${radiologist}`).waitFor();
      await page.getByTestId('locale').selectOption('en');
      await page.getByRole('heading', { name: 'Users', level: 1 }).waitFor();
      assert.equal(await page.locator('html').getAttribute('lang'), 'en');
      await page.reload({ waitUntil: 'domcontentloaded' });
      await page.getByRole('heading', { name: 'Users', level: 1 }).waitFor();
      await page.getByTestId(`user-row-${radiologist}`).waitFor();
      assert.match(await page.getByTestId(`user-row-${radiologist}`).textContent(), /Radiologist/);
      await shot(page, '05-users-en');
    });

    await t.test('signing out leads back to sign-in, and pages need it again', async () => {
      await page.getByTestId('sign-out').click();
      await page.waitForURL(/#\/signin/);
      await page.goto(`${base}#/users`, { waitUntil: 'domcontentloaded' });
      await page.waitForURL(/#\/signin/);
      assert.equal((await page.locator('h1').textContent()).trim(), 'Sign in');
    });

    await t.test('an institution admin records qualifications and a contract', async () => {
      await signIn(page, env.INST_ADMIN_USER, env.INST_ADMIN_PASSWORD);
      await page.waitForURL(/#\/users$/);
      await page.getByTestId(`user-row-${radiologist}`).getByRole('link').click();
      const quals = page.getByTestId('qualifications');
      await quals.waitFor();
      for (const [modality, part] of [['CT', 'CHEST'], ['CR', '']]) {
        await page.locator('#q-modality').fill(modality);
        await page.locator('#q-body').fill(part);
        await page.getByTestId('qual-add').click();
      }
      await page.getByTestId('qual-save').click();
      await quals.locator('.notice').waitFor();
      const chips = await page.getByTestId('qual-list').locator('li').allTextContents();
      assert.equal(chips.length, 2, JSON.stringify(chips));
      assert.ok(chips.some((c) => /CT/.test(c) && /CHEST/.test(c)), JSON.stringify(chips));

      const form = page.getByTestId('contract-form');
      const option = page.locator('#c-requesting option', { hasText: `(${clinic})` });
      await page.locator('#c-requesting').selectOption(await option.getAttribute('value'));
      await page.locator('#c-end').fill('2030-12-31');
      await form.locator('input[value="CT"]').check();
      await page.locator('#c-parts').fill('chest, head');
      await page.getByTestId('contract-create').click();
      const item = page.getByTestId('contract-item');
      await item.waitFor();
      const text = await item.textContent();
      assert.match(text, new RegExp(clinic));
      assert.match(text, /2030-12-31/);
      assert.match(text, /CHEST, HEAD/);
      await shot(page, '05b-qualifications-contract');
      await page.getByTestId('sign-out').click();
      await page.waitForURL(/#\/signin/);
    });
    await desk.close();

    const phone = await browser.newContext({
      viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true,
      hasTouch: true,
    });
    const mob = await phone.newPage();
    watch(mob, 'phone');

    await t.test('on a phone, the audit admin finds the records', async () => {
      await mob.goto(base, { waitUntil: 'domcontentloaded' });
      await mob.waitForURL(/#\/signin/);
      await assertNoSidewaysScroll(mob, 'sign-in');
      await signIn(mob, env.AUDITOR_USER, env.AUDITOR_PASSWORD);
      const toggle = mob.getByTestId('menu-toggle');
      await toggle.waitFor();
      assert.equal(await mob.getByTestId('nav-audit').isVisible(), false,
        'the navigation is not folded away on a phone');
      await toggle.click();
      await mob.getByTestId('nav-audit').waitFor({ state: 'visible' });
      assert.equal(await mob.getByTestId('nav-users').count(), 0,
        'an audit admin is offered the users');
      await mob.getByTestId('nav-audit').click();
      const table = mob.getByTestId('audit-table');
      await table.waitFor();
      const made = table.locator(`tr[data-type="institution_created"]`);
      const user = table.locator(`tr[data-type="user_created"]`);
      await made.first().waitFor();
      await user.first().waitFor();
      assert.match(await made.first().textContent(), new RegExp(env.ADMIN_USER));
      assert.ok((await user.allTextContents()).some((s) => s.includes(env.ADMIN_USER)),
        'no user_created record by the system admin');
      await assertNoSidewaysScroll(mob, 'audit');
      await shot(mob, '06-audit-phone');
    });

    await t.test('filters by event, verifies the chain, exports', async () => {
      // On a phone the filters start folded away.
      const box = mob.getByTestId('audit-filter-box');
      assert.equal(await box.getAttribute('open'), null, 'the filters are open on a phone');
      await box.locator('summary').click();
      await mob.locator('#a-event').selectOption('user_authentication');
      await mob.getByTestId('audit-search').click();
      const table = mob.getByTestId('audit-table');
      await table.locator('tr[data-type="login"]').first().waitFor();
      const events = await table.locator('tbody tr').evaluateAll(
        (rows) => rows.map((r) => r.getAttribute('data-event')));
      assert.ok(events.length > 0 && events.every((e) => e === 'user_authentication'),
        JSON.stringify(events));

      await mob.getByTestId('audit-verify').click();
      const result = mob.getByTestId('audit-verify-result');
      await result.waitFor();
      assert.match(await result.getAttribute('class'), /\bgood\b/, await result.textContent());

      const href = await mob.getByTestId('audit-export').getAttribute('href');
      assert.match(href, /^\/api\/audit\/export\?event=user_authentication/);
      const res = await mob.request.get(new URL(href, base).toString());
      assert.equal(res.status(), 200);
      assert.match(res.headers()['content-type'], /ndjson/);
      const lines = (await res.text()).trim().split('\n').filter((l) => l);
      assert.ok(lines.length > 0, 'the export is empty');
      JSON.parse(lines[0]);
      await shot(mob, '07-audit-verified-phone');
    });
    await phone.close();

    await t.test('no script error on any page', () => {
      assert.deepEqual(logs.filter((l) => l.includes('pageerror')), []);
    });
  } finally {
    saveLogs();
    await browser.close();
  }
});

// --- the second factor ----------------------------------------------------

// RFC 4648 base32 to bytes.
function base32(text) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = '';
  for (const c of text.replace(/[\s=]/g, '').toUpperCase()) {
    const v = alphabet.indexOf(c);
    assert.ok(v >= 0, `not base32: ${text}`);
    bits += v.toString(2).padStart(5, '0');
  }
  const bytes = [];
  for (let i = 0; i + 8 <= bits.length; i += 8)
    bytes.push(parseInt(bits.slice(i, i + 8), 2));
  return Buffer.from(bytes);
}

// The TOTP code (RFC 6238: HMAC-SHA1, 30 s, 6 digits) for a time step.
function totp(secret, step) {
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(step));
  const h = crypto.createHmac('sha1', base32(secret)).update(counter).digest();
  const o = h[h.length - 1] & 15;
  return String((h.readUInt32BE(o) & 0x7fffffff) % 1000000).padStart(6, '0');
}

const timeStep = () => Math.floor(Date.now() / 30000);

// A code that is surely wrong now (the right one for a far step).
function wrongCode(secret) {
  const right = totp(secret, timeStep());
  for (let k = 1000; ; k++) {
    const c = totp(secret, timeStep() + k);
    if (c !== right && c !== totp(secret, timeStep() - 1) && c !== totp(secret, timeStep() + 1))
      return c;
  }
}

function saveLogs() {
  if (env.CONSOLE_LOG)
    fs.writeFileSync(env.CONSOLE_LOG, logs.join('\n') + '\n');
  else if (logs.length)
    console.log(logs.join('\n'));
}

test('the second factor, locks and disabled accounts',
  { timeout: timeout * 20, skip: !env.MFA_URL }, async (t) => {
    const url = env.MFA_URL;
    const browser = await chromium.launch({
      executablePath: env.CHROMIUM || '/usr/bin/chromium', headless: true, args: ARGS,
    });
    try {
      const ctx = await browser.newContext({ viewport: { width: 1024, height: 800 } });
      const page = await ctx.newPage();
      watch(page, 'mfa');
      let secret = '';
      let enrolStep = 0;

      await t.test('a disabled account is told so', async () => {
        await page.goto(url, { waitUntil: 'domcontentloaded' });
        await page.waitForURL(/#\/signin/);
        const got = await attempt(page, env.DISABLED_USER, env.DISABLED_PASSWORD);
        assert.equal(got.status, 403, got.text);
        assert.match(got.text, /停用/, got.text);
      });

      await t.test('wrong passwords lock the technician out', async () => {
        let got = { status: 0, text: '' };
        for (let i = 0; i < 4 && got.status !== 423; i++)
          got = await attempt(page, env.TECH_USER, `${env.TECH_PASSWORD}-wrong${i}`);
        if (got.status !== 423)
          got = await attempt(page, env.TECH_USER, env.TECH_PASSWORD);
        assert.equal(got.status, 423, got.text);
        assert.match(got.text, /锁定/, got.text);
        await shot(page, '11-locked');
      });

      await t.test('the security admin enrols a second factor', async () => {
        await signIn(page, env.SECURITY_USER, env.SECURITY_PASSWORD);
        const shown = page.getByTestId('enrol-secret');
        await shown.waitFor();
        secret = (await shown.textContent()).trim();
        await shot(page, '12-enrol');
        await page.locator('#enrol-code').fill(wrongCode(secret));
        await page.getByTestId('enrol-form').locator('button[type=submit]').click();
        await page.getByTestId('form-error').waitFor();
        enrolStep = timeStep();
        await page.locator('#enrol-code').fill(totp(secret, enrolStep));
        await page.getByTestId('enrol-form').locator('button[type=submit]').click();
        await page.getByTestId('me-username').waitFor();
      });

      await t.test('unlocks the technician and grants a role', async () => {
        await page.getByTestId('nav-users').click();
        await page.getByTestId(`user-row-${env.TECH_USER}`).getByRole('link').click();
        await page.getByTestId('user-unlock').click();
        await page.locator('.notice').waitFor();
        await page.getByTestId('role-reviewer').check();
        await page.getByTestId('roles-save').click();
        await page.getByTestId('roles-form').locator('.notice').waitFor();
        await shot(page, '13-unlocked');
        await page.getByTestId('sign-out').click();
        await page.waitForURL(/#\/signin/);
      });

      await t.test('who signs in and is offered no admin page', async () => {
        await signIn(page, env.TECH_USER, env.TECH_PASSWORD);
        await page.getByTestId('me-username').waitFor();
        for (const id of ['nav-institutions', 'nav-users', 'nav-tokens', 'nav-aes', 'nav-audit'])
          assert.equal(await page.getByTestId(id).count(), 0, `a technician is offered ${id}`);
        assert.match(await page.locator('main').textContent(), /审核医师/,
          'the reviewer role granted is not shown');
        await page.getByTestId('sign-out').click();
        await page.waitForURL(/#\/signin/);
      });

      await t.test('the security admin signs in with the code', async () => {
        await signIn(page, env.SECURITY_USER, env.SECURITY_PASSWORD);
        await page.locator('#totp').waitFor();
        await page.locator('#totp').fill(wrongCode(secret));
        await page.getByTestId('totp-form').locator('button[type=submit]').click();
        await page.getByTestId('form-error').waitFor();
        assert.match(await page.getByTestId('form-error').textContent(), /验证码/);
        // A code is good once: wait for the step after the one enrolment used.
        while (timeStep() <= enrolStep)
          await page.waitForTimeout(500);
        await page.locator('#totp').fill(totp(secret, timeStep()));
        await page.getByTestId('totp-form').locator('button[type=submit]').click();
        await page.getByTestId('me-username').waitFor();
        assert.equal(await page.getByTestId('me-username').textContent(), env.SECURITY_USER);
        await shot(page, '14-signed-in-with-code');
      });
      await ctx.close();

      await t.test('no script error on any page', () => {
        assert.deepEqual(logs.filter((l) => l.includes('pageerror')), []);
      });
    } finally {
      saveLogs();
      await browser.close();
    }
  });
