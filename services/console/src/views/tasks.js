// Tasks: the jobs (composites, processes, cube fills) with their state, duration and links; running
// ones can be cancelled.
import { config, jobs } from '../api.js';
import {
  announce, errorBox, fmtDateTime, fmtDuration, h, isActive, note, replace, stateBadge,
} from '../ui.js';

const POLL_MS = 3000;

function progressText(job) {
  const p = job.progress || {};
  if (!isActive(job.state) || !p.tiles_total) return p.stage && isActive(job.state) ? p.stage : '';
  return `${p.stage || ''} ${p.tiles_done || 0}/${p.tiles_total}`.trim();
}

export default async function tasks(ctx) {
  ctx.setTitle('Tasks');
  const { root } = ctx;
  const list = h('div', { id: 'tasks-list' });
  const problem = h('div', {});
  const refreshButton = h('button', { type: 'button', class: 'secondary', id: 'tasks-refresh', onclick: () => refresh() },
    h('span', { 'aria-hidden': 'true' }, '↻ '), 'Refresh');
  root.append(h('h1', {}, 'Tasks'),
    h('p', { class: 'lead' }, 'Compositing jobs, processes and cube fills, newest first. ', h('a', { href: '#/mosaic' }, 'Start a new mosaic'),
      ' or ', h('a', { href: '#/cubes/new' }, 'build a cube'), '.'),
    h('p', {}, refreshButton), problem, list);
  let timer = null;

  const cancel = async (id, button) => {
    button.disabled = true;
    try {
      await jobs.cancel(id);
      announce(`Cancellation of ${id} requested.`);
      refresh();
    } catch (err) {
      replace(problem, errorBox(err, `Cannot cancel ${id}`));
      button.disabled = false;
    }
  };

  const render = (all) => {
    const rows = [...all].sort((a, b) => String(b.created || '').localeCompare(String(a.created || '')));
    if (!rows.length) {
      replace(list, note('No jobs yet.'));
      return;
    }
    // five columns that wrap, so the table fits the panel (and Cancel / Report stay in view)
    replace(list, h('div', { class: 'table-wrap' }, h('table', { class: 'data', id: 'tasks-table' },
      h('caption', { class: 'sr-only' }, 'Jobs'),
      h('thead', {}, h('tr', {}, ['Task', 'State', 'Collections', 'Submitted', 'Actions']
        .map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, rows.map((job) => {
        const p = job.parameters || {};
        const actions = [];
        if (isActive(job.state)) {
          const b = h('button', { type: 'button', class: 'danger small' }, 'Cancel', h('span', { class: 'sr-only' }, ` ${job.id}`));
          b.addEventListener('click', () => cancel(job.id, b));
          actions.push(b);
        }
        const isCube = job.kind === 'cube';
        if (isCube && job.cube && job.state === 'completed') {
          actions.push(h('a', { href: `#/cubes/${encodeURIComponent(job.cube)}` }, 'Open cube', h('span', { class: 'sr-only' }, ` ${job.cube}`)));
        } else if (job.state === 'completed') {
          const report = (job.links || []).find((l) => l.rel === 'report');
          const href = report ? report.href : `${config.jobs}/${encodeURIComponent(job.id)}/report`;
          actions.push(h('a', { href }, 'Report', h('span', { class: 'sr-only' }, ` of ${job.id}`)));
        }
        const progress = progressText(job);
        return h('tr', { dataset: { job: job.id, state: job.state } },
          h('th', { scope: 'row' }, h('a', { href: `#/tasks/${encodeURIComponent(job.id)}` }, job.id),
            h('small', { class: 'sub' }, isCube ? `cube fill: ${job.cube || ''}` : (p.process_name || p.method || ''))),
          h('td', {}, stateBadge(job.state), progress ? h('small', { class: 'sub' }, progress) : null),
          h('td', { class: 'wrap' }, isCube && job.cube ? h('a', { href: `#/cubes/${encodeURIComponent(job.cube)}` }, job.cube)
            : ((p.collections || []).join(', ') || '–')),
          h('td', {}, fmtDateTime(job.created),
            job.started ? h('small', { class: 'sub' }, fmtDuration(job.started, job.finished)) : null),
          h('td', { class: 'actions' }, actions));
      })))));
  };

  async function refresh() {
    window.clearTimeout(timer);
    try {
      const all = await jobs.list();
      if (ctx.signal.aborted) return;
      replace(problem);
      render(all);
      if (all.some((j) => isActive(j.state))) timer = window.setTimeout(refresh, POLL_MS);
    } catch (err) {
      if (ctx.signal.aborted) return;
      replace(problem, errorBox(err, 'Cannot list the jobs'));
    }
  }
  await refresh();
  return () => window.clearTimeout(timer);
}
