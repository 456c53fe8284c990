// Signing in: an API key, or OIDC (authorization code + PKCE against the configured issuer).
//
// The credentials live in sessionStorage (api.js `credentials`) and go out as a header with every
// API call and map tile, never in a URL. The header's account area shows who is signed in and
// the workspace (as the STAC API's /access answers), and signs out. Every change of who is
// signed in fires `stacube:session` on window (the views are shown again).
import { access, ApiError, config, credentials } from './api.js';
import { errorBox, field, h, replace } from './ui.js';

const PENDING = 'stacube.oidc-pending';
export const session = { principal: { kind: 'anonymous', workspace: null }, name: null, notice: null };

const b64url = (bytes) => btoa(String.fromCharCode(...bytes)).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
const randomString = () => b64url(crypto.getRandomValues(new Uint8Array(32)));
const redirectUri = () => `${location.origin}${location.pathname}`;

async function codeChallenge(verifier) {
  const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier));
  return b64url(new Uint8Array(digest));
}

/** A display name from a JWT's claims (not verified: for display only; the APIs verify). */
function nameOf(jwt) {
  try {
    const part = jwt.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const claims = JSON.parse(new TextDecoder().decode(Uint8Array.from(atob(part), (ch) => ch.charCodeAt(0))));
    return claims.preferred_username || claims.email || claims.name || claims.sub || null;
  } catch {
    return null;
  }
}

async function discover(issuer) {
  const r = await fetch(`${issuer.replace(/\/+$/, '')}/.well-known/openid-configuration`, { headers: { Accept: 'application/json' } });
  if (!r.ok) throw new Error(`the sign-in provider ${issuer} did not answer (${r.status})`);
  return r.json();
}

/** Go to the provider's sign-in page; it comes back to this page with ?code=...&state=... */
async function beginOidc() {
  const { issuer, client_id: clientId, scopes } = config.oidc;
  const meta = await discover(issuer);
  const verifier = randomString();
  const state = randomString();
  sessionStorage.setItem(PENDING, JSON.stringify({ verifier, state, hash: location.hash, tokenEndpoint: meta.token_endpoint }));
  const url = new URL(meta.authorization_endpoint);
  url.search = new URLSearchParams({
    response_type: 'code', client_id: clientId, redirect_uri: redirectUri(), scope: scopes || 'openid', state,
    code_challenge: await codeChallenge(verifier), code_challenge_method: 'S256',
  }).toString();
  location.assign(url.href);
}

/** Back from the provider: trade the code for tokens (the code leaves the address bar at once). */
async function finishOidc() {
  const params = new URLSearchParams(location.search);
  if (!params.has('state') || !(params.has('code') || params.has('error'))) return;
  const pending = JSON.parse(sessionStorage.getItem(PENDING) || 'null');
  sessionStorage.removeItem(PENDING);
  history.replaceState(null, '', `${redirectUri()}${pending ? pending.hash : location.hash}`);
  if (!pending || params.get('state') !== pending.state) throw new Error('the sign-in answer does not match this page’s request: sign in again');
  if (params.has('error')) throw new Error(`sign-in refused: ${params.get('error_description') || params.get('error')}`);
  const r = await fetch(pending.tokenEndpoint, {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded', Accept: 'application/json' },
    body: new URLSearchParams({
      grant_type: 'authorization_code', code: params.get('code'), redirect_uri: redirectUri(),
      client_id: config.oidc.client_id, code_verifier: pending.verifier,
    }),
  });
  const doc = await r.json().catch(() => ({}));
  if (!r.ok || !doc.access_token) throw new Error(`the sign-in provider gave no token: ${doc.error_description || doc.error || r.status}`);
  credentials.set({
    kind: 'oidc', secret: doc.access_token, name: nameOf(doc.id_token || '') || nameOf(doc.access_token),
    expires: doc.expires_in ? Date.now() + Number(doc.expires_in) * 1000 : null,
  });
}

/**
 * Who the APIs say the credentials are. Credentials they refuse (an unknown or revoked key, an
 * expired token) are dropped: the reason is returned (else null).
 */
async function refresh() {
  let dropped = null;
  const c = credentials.get();
  if (c && c.expires && c.expires < Date.now()) {
    credentials.clear();
    dropped = 'the sign-in has expired';
  }
  try {
    session.principal = (await access.mine()).principal;
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 401) || !credentials.get()) throw err;
    credentials.clear();
    dropped = err.message.replace(/^401 /, '');
    session.principal = (await access.mine()).principal;
  }
  const now = credentials.get();
  session.name = now ? (now.name || (now.kind === 'api-key' ? `API key ${session.principal.subject}` : session.principal.subject) || 'signed in') : null;
  return dropped;
}

function changed() {
  window.dispatchEvent(new Event('stacube:session'));
}

function describe(principal) {
  if (principal.kind === 'admin') return principal.workspace ? `admin · workspace ${principal.workspace}` : 'admin (every workspace)';
  return principal.workspace ? `workspace ${principal.workspace}` : 'no workspace (public collections only)';
}

function signInDialog(render) {
  const key = h('input', { type: 'password', id: 'signin-key', autocomplete: 'off', spellcheck: 'false', required: true });
  const problem = h('div', { id: 'signin-problem' });
  const dialog = h('dialog', { class: 'signin', 'aria-labelledby': 'signin-heading' });
  const close = () => { dialog.close(); dialog.remove(); };
  const keyForm = h('form', {
    id: 'signin-key-form',
    onsubmit: async (e) => {
      e.preventDefault();
      credentials.set({ kind: 'api-key', secret: key.value.trim() });
      try {
        const dropped = await refresh();
        if (dropped) throw new Error(dropped);
      } catch (err) {
        credentials.clear();
        replace(problem, errorBox(err, 'Cannot sign in'));
        return;
      }
      session.notice = null;
      close();
      render();
      changed();
    },
  },
  field('API key', key, 'A key of your workspace (stacube key create --workspace …). Kept in this tab until you sign out or close it.'),
  h('div', { class: 'buttons' }, h('button', { type: 'submit' }, 'Sign in with the key')));
  const oidc = config.oidc ? h('div', { class: 'oidc' }, h('p', {}, 'or'),
    h('button', {
      type: 'button', id: 'signin-oidc',
      onclick: () => beginOidc().catch((err) => replace(problem, errorBox(err, 'Cannot sign in'))),
    }, `Sign in with ${new URL(config.oidc.issuer).host}`)) : null;
  dialog.append(h('h2', { id: 'signin-heading' }, 'Sign in'), problem, keyForm, oidc,
    h('div', { class: 'buttons' }, h('button', { type: 'button', class: 'secondary', onclick: close }, 'Cancel')));
  dialog.addEventListener('cancel', () => dialog.remove());
  document.body.append(dialog);
  dialog.showModal();
  key.focus();
}

/** Fill the header's account area (`el`) and keep it current. */
function renderAccount(el) {
  const render = () => {
    const signedIn = !!credentials.get();
    const notice = session.notice ? h('span', { class: 'account-notice', role: 'status' }, session.notice) : null;
    if (!signedIn) {
      replace(el, notice, h('button', { type: 'button', class: 'small', id: 'signin', onclick: () => signInDialog(render) }, 'Sign in'));
      return;
    }
    replace(el,
      h('span', { class: 'who', id: 'account-who' },
        h('span', { class: 'name', id: 'account-name' }, session.name),
        h('span', { class: 'workspace', id: 'account-workspace' }, describe(session.principal))),
      h('button', {
        type: 'button', class: 'small secondary', id: 'signout',
        onclick: async () => {
          credentials.clear();
          session.notice = null;
          await refresh().catch(() => {});
          render();
          changed();
        },
      }, 'Sign out'));
  };
  render();
}

/** Start: finish an OIDC sign-in coming back, learn who is signed in, show it in `el`. */
export async function startSession(el) {
  let problem = null;
  try {
    await finishOidc();
  } catch (err) {
    problem = err;
  }
  try {
    const dropped = await refresh();
    if (dropped) session.notice = `Signed out: ${dropped}.`;
  } catch (err) {
    problem = problem || err; // the console still works for public collections
  }
  if (problem) session.notice = problem.message;
  renderAccount(el);
}
