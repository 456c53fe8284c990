// A collection's access: its visibility and owner, and for its workspace (or an admin) the
// controls of `stacube product share`: visibility, share with a workspace, stop sharing.
import { access } from './api.js';
import { loadAccess, loadCollections } from './catalog.js';
import { accessBadge, announce, errorBox, field, h, replace } from './ui.js';

const CHOICES = [
  ['private', 'Private', 'only its workspace'],
  ['shared', 'Shared', 'its workspace and the workspaces below'],
  ['public', 'Public', 'everyone, signed in or not'],
];

/** The "Access" section of collection `id` (filled in the background). */
export function accessSection(id) {
  const body = h('div', { id: 'access-body' }, h('p', { class: 'loading' }, 'Reading who may read it…'));
  const section = h('section', { 'aria-labelledby': 'access-heading', id: 'access' },
    h('h2', { id: 'access-heading' }, 'Access'), body);
  const problem = h('div', {});

  const change = async (request, done) => {
    replace(problem);
    try {
      const acc = await access.change(id, request);
      loadAccess({ fresh: true }).catch(() => {});
      loadCollections({ fresh: true }).catch(() => {});
      show(acc);
      announce(done);
    } catch (err) {
      replace(problem, errorBox(err, 'Not changed'));
    }
  };

  function show(acc) {
    const facts = h('p', { id: 'access-summary' }, accessBadge(acc), ' ',
      acc.workspace ? ['Workspace ', h('code', {}, acc.workspace)] : 'No workspace (admins change it).');
    if (!acc.manage) {
      replace(body, facts);
      return;
    }
    const name = `visibility-${id}`;
    const radios = h('fieldset', { class: 'visibility', id: 'access-visibility' },
      h('legend', {}, 'Who may read it'),
      CHOICES.map(([value, label, hint]) => h('label', { class: 'choice' },
        h('input', {
          type: 'radio', name, value, checked: acc.visibility === value,
          onchange: () => change({ visibility: value }, `${id} is now ${value}`),
        }), ` ${label} `, h('small', { class: 'hint' }, `(${hint})`))));
    const shares = acc.shared_with || [];
    const list = shares.length ? h('ul', { class: 'shares', id: 'access-shares' }, shares.map((w) => h('li', { dataset: { workspace: w } },
      h('code', {}, w), ' ',
      h('button', {
        type: 'button', class: 'small danger',
        onclick: () => change({ unshare: [w] }, `${id} is no longer shared with ${w}`),
      }, 'Stop sharing', h('span', { class: 'sr-only' }, ` with ${w}`)))))
      : h('p', { class: 'note', id: 'access-shares' }, 'Shared with no workspace.');
    const input = h('input', { type: 'text', id: 'share-with', autocomplete: 'off', spellcheck: 'false', placeholder: 'workspace name', pattern: '[A-Za-z0-9][A-Za-z0-9._\\-]{0,63}', required: true });
    const form = h('form', {
      class: 'share-form', id: 'share-form',
      onsubmit: (e) => {
        e.preventDefault();
        const w = input.value.trim();
        if (w) change({ share_with: [w] }, `${id} is shared with ${w}`);
      },
    }, h('div', { class: 'inline' }, field('Share with workspace', input, 'Its members may then read this collection (not change it).'),
      h('button', { type: 'submit' }, 'Share')));
    replace(body, facts, radios, h('h3', {}, 'Shared with'), list, form, problem);
  }

  access.get(id).then(show).catch((err) => replace(body, errorBox(err, 'Cannot read the access')));
  return section;
}
