// The example pet store's session cookie over real HTTP: the flash message
// after adding a pet is shown once, a tampered cookie is an empty session
// and a line in the log, the form's field errors come back with 422 and
// what was typed, and production refuses to load without a secret.
//
// Run from spec/e2e/ with `node --test sessions.test.mjs`.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { postForm, request, serve, startServer } from './helpers.mjs';

const T = { timeout: 30_000 };
const SECRET = 'e2e-secret-e2e-secret-e2e-secret';

// "mw_session=..." from a response's Set-Cookie, for the next request.
function sessionCookie(res) {
  for (const line of res.headers['set-cookie'] ?? []) {
    const m = /^(mw_session=[^;]*)/.exec(line);
    if (m) return { cookie: m[1], line };
  }
  return null;
}

describe('sessions in the pet store', () => {
  test('a flash message after adding a pet is shown once', T, async (t) => {
    const srv = await serve(t, { env: { MOONWIRE_SECRET: SECRET } });
    const added = await postForm(srv.url, '/pets', { name: 'Fido', species: 'dog' });
    assert.equal(added.status, 303);
    const { cookie, line } = sessionCookie(added);
    assert.match(line, /; HttpOnly; SameSite=Lax$/);
    const page = await request(srv.url, added.headers.location, { headers: { cookie } });
    assert.match(page.body, /<p class="flash flash-notice" role="status">Fido the dog was added\.<\/p>/);
    const cleared = sessionCookie(page);
    assert.equal(cleared.cookie, 'mw_session=', 'read: the session is empty again');
    const again = await request(srv.url, added.headers.location, { headers: { cookie: cleared.cookie } });
    assert.doesNotMatch(again.body, /was added/);
  });

  test('a tampered cookie is an empty session, and the log says so', T, async (t) => {
    const srv = await serve(t, { env: { MOONWIRE_SECRET: SECRET } });
    const added = await postForm(srv.url, '/pets', { name: 'Fido', species: 'dog' });
    const { cookie } = sessionCookie(added);
    // The client writes its own message into the session, keeping the signature.
    const [payload, sig] = cookie.slice('mw_session='.length).split('.');
    const forged = Buffer.from(JSON.stringify({ flash: { notice: ['<b>owned</b>'] } })).toString('base64url');
    assert.notEqual(forged, payload);
    const page = await request(srv.url, added.headers.location, { headers: { cookie: `mw_session=${forged}.${sig}` } });
    assert.equal(page.status, 200);
    assert.doesNotMatch(page.body, /owned|was added/);
    assert.match(srv.stderr(), /session: GET \/pets\/\d+ from 127\.0\.0\.1: the mw_session cookie has a bad signature/);
  });

  test('the new-pet form answers 422 with each field\'s message and what was typed', T, async (t) => {
    const srv = await serve(t, { env: { MOONWIRE_SECRET: SECRET } });
    const res = await postForm(srv.url, '/pets', { name: 'A'.repeat(41), species: 'unicorn' });
    assert.equal(res.status, 422);
    assert.match(res.body, new RegExp(`value="${'A'.repeat(41)}"`));
    assert.match(res.body, /id="name-error">Name must be at most 40 characters\.</);
    assert.match(res.body, /id="species-error">Choose a species from the list\.</);
  });

  test('production without MOONWIRE_SECRET: the app does not load, and says why', T, async () => {
    const env = { MOONWIRE_SECRET: '' };
    const srv = await startServer({ args: ['--production'], env });
    const page = await request(srv.url, '/pets');
    assert.equal(page.status, 500);
    await srv.stop();
    assert.match(srv.stderr(), /sessions need a secret in production: set MOONWIRE_SECRET/);
  });
});
