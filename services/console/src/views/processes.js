// Registered processes (GET /jobs/processes): a list, and for one of them a form generated from
// the JSON Schema of its parameters plus the inputs every job takes; it submits
// POST /jobs {"process": name, "parameters": {...}, collections, bbox, datetime, bands, period}
// and opens the job's page.
import { config, fetchJSON } from '../api.js';
import { loadAccess } from '../catalog.js';
import { checkboxes, formInputs } from '../form-parts.js';
import { jobForm, jobInputs } from '../job-inputs.js';
import { errorBox, field, h, note } from '../ui.js';

const processHref = (name) => `#/processes/${encodeURIComponent(name)}`;

/** The schema of a property with its `$ref` / `allOf: [$ref]` resolved and an optional
 * (`anyOf: [X, {type: null}]`, pydantic's `X | None`) reduced to X. */
function resolveSchema(prop, defs) {
  let p = prop || {};
  const ref = p.$ref || (p.allOf && p.allOf.length === 1 && p.allOf[0].$ref);
  if (ref) p = { ...defs[ref.split('/').pop()], ...p, $ref: undefined, allOf: undefined };
  if (Array.isArray(p.anyOf)) {
    const real = p.anyOf.filter((s) => s.type !== 'null');
    if (real.length === 1) p = { ...resolveSchema(real[0], defs), ...p, anyOf: undefined, nullable: true };
  }
  if (Array.isArray(p.type)) {
    const real = p.type.filter((t) => t !== 'null');
    p = { ...p, type: real[0], nullable: p.type.includes('null') };
  }
  return p;
}

function kindOf(p) {
  if (Array.isArray(p.enum)) return 'enum';
  if (p.type === 'array') {
    const items = p.items || {};
    if (Array.isArray(items.enum)) return 'enum-array';
    if (!items.type || items.type === 'string') return 'string-array';
    return 'json';
  }
  return ['string', 'number', 'integer', 'boolean'].includes(p.type) ? p.type : 'json';
}

/**
 * A form's fields for a JSON Schema of type object (the parameters of a process).
 *
 * Supported property types: string, number, integer, boolean, enum (of any of these),
 * array of strings (comma-separated) or of an enum (checkboxes); anything else is typed as JSON.
 * Defaults fill the fields; descriptions are their hints; required ones are marked.
 * @returns {{element: HTMLElement, values: () => {values: object, problems: string[]}}}
 */
export function schemaFields(schema, { prefix = 'param' } = {}) {
  const props = (schema && schema.properties) || {};
  const defs = (schema && (schema.$defs || schema.definitions)) || {};
  const required = new Set((schema && schema.required) || []);
  const readers = [];
  const fields = Object.entries(props).map(([name, raw]) => {
    const p = resolveSchema(raw, defs);
    const kind = kindOf(p);
    const id = `${prefix}-${name}`;
    const isRequired = required.has(name);
    const label = `${p.title || name}${isRequired ? ' (required)' : ''}`;
    const hint = [p.description, kind === 'string-array' ? 'Comma-separated.' : '', kind === 'json' ? 'JSON.' : '']
      .filter(Boolean).join(' ') || undefined;
    const dflt = p.default;
    const data = { param: name, kind };
    let input;
    let read;
    if (kind === 'boolean') {
      input = h('input', { type: 'checkbox', id, name, checked: dflt === true, dataset: data });
      read = () => input.checked;
      readers.push([name, read, isRequired, input]);
      return h('div', { class: 'field check' }, h('div', { class: 'inline' }, input, ' ', h('label', { for: id }, label)),
        hint ? h('small', { class: 'hint' }, hint) : null);
    }
    if (kind === 'enum') {
      input = h('select', { id, name, dataset: data },
        dflt === undefined ? h('option', { value: '' }, isRequired ? 'choose…' : '(none)') : null,
        p.enum.map((v) => h('option', { value: JSON.stringify(v) }, String(v))));
      input.value = dflt !== undefined ? JSON.stringify(dflt) : '';
      read = () => (input.value === '' ? undefined : JSON.parse(input.value));
    } else if (kind === 'enum-array') {
      const list = h('ul', { class: 'checks columns', id, dataset: data },
        checkboxes(`${id}-item`, p.items.enum.map(String), (dflt || []).map(String)));
      read = () => {
        const picked = [...list.querySelectorAll('input:checked')].map((b) => b.value);
        return p.items.enum.filter((v) => picked.includes(String(v)));
      };
      readers.push([name, read, isRequired, null]);
      return h('fieldset', {}, h('legend', {}, label), hint ? h('small', { class: 'hint' }, hint) : null, list);
    } else if (kind === 'number' || kind === 'integer') {
      const min = p.minimum ?? p.exclusiveMinimum;
      const max = p.maximum ?? p.exclusiveMaximum;
      input = h('input', {
        type: 'number', id, name, step: kind === 'integer' ? 1 : 'any', min, max, required: isRequired,
        value: dflt != null ? String(dflt) : '', dataset: data,
      });
      read = () => (input.value === '' ? undefined : Number(input.value));
    } else if (kind === 'string') {
      input = h('input', {
        type: 'text', id, name, required: isRequired, value: dflt != null ? String(dflt) : '',
        pattern: p.pattern, maxlength: p.maxLength, placeholder: (p.examples || [])[0], dataset: data,
      });
      read = () => (input.value === '' ? undefined : input.value);
    } else if (kind === 'string-array') {
      input = h('input', { type: 'text', id, name, required: isRequired, value: (dflt || []).join(', '), dataset: data });
      read = () => (input.value.trim() === '' ? undefined : input.value.split(',').map((s) => s.trim()).filter(Boolean));
    } else {
      input = h('textarea', { id, name, rows: 3, required: isRequired, dataset: data }, dflt !== undefined ? JSON.stringify(dflt) : '');
      read = () => (input.value.trim() === '' ? undefined : JSON.parse(input.value));
    }
    readers.push([name, read, isRequired, input]);
    return field(label, input, hint);
  });
  const element = h('fieldset', { id: `${prefix}-fields` }, h('legend', {}, 'Parameters'),
    fields.length ? fields : note('This process takes no parameters.'));
  const values = () => {
    const out = {};
    const problems = [];
    for (const [name, read, isRequired, input] of readers) {
      let value;
      try {
        value = read();
      } catch (err) {
        problems.push(`${name}: not valid JSON (${err.message})`);
        continue;
      }
      const empty = value === undefined || (Array.isArray(value) && !value.length);
      if (empty && isRequired) problems.push(`${name}: required`);
      else if (input && !input.checkValidity()) problems.push(`${name}: ${input.validationMessage.replace(/\.$/, '')}`);
      else if (value !== undefined) out[name] = value;
    }
    return { values: out, problems };
  };
  return { element, values };
}

async function listView(ctx, processes) {
  const { root } = ctx;
  root.append(h('h1', {}, 'Processes'),
    h('p', { class: 'lead' }, 'Registered processes run tile by tile over the inputs you choose; their outputs are Cloud-Optimized GeoTIFFs, a Zarr cube and STAC items, as a mosaic’s.'));
  if (!processes.length) {
    root.append(note('No process is registered (entry point group “stacube.processes”).'));
    return;
  }
  root.append(h('div', { class: 'table-wrap' }, h('table', { class: 'data', id: 'processes-table' },
    h('caption', { class: 'sr-only' }, 'Registered processes'),
    h('thead', {}, h('tr', {}, ['Process', 'Description', 'Parameters', 'Outputs'].map((t) => h('th', { scope: 'col' }, t)))),
    h('tbody', {}, processes.map((p) => h('tr', { dataset: { process: p.name } },
      h('th', { scope: 'row' }, h('a', { href: processHref(p.name) }, p.name), h('small', { class: 'sub' }, `version ${p.version}`)),
      h('td', { class: 'wrap' }, p.description || '–'),
      h('td', { class: 'wrap' }, Object.keys((p.parameters || {}).properties || {}).join(', ') || '–'),
      h('td', { class: 'wrap' }, p.outputs ? Object.keys(p.outputs).join(', ') : 'read off the result')))))));
}

async function formView(ctx, process) {
  const { root } = ctx;
  ctx.setTitle(`Process ${process.name}`);
  root.append(h('p', { class: 'crumbs' }, h('a', { href: '#/processes' }, 'Processes'), ' / ', h('code', {}, process.name)),
    h('h1', {}, 'Process ', h('code', {}, process.name)),
    h('p', { class: 'lead' }, process.description || ''));
  const [choices, access] = await Promise.all([formInputs(), loadAccess({ fresh: true }).catch(() => null)]);
  if (ctx.signal.aborted) return;
  const formError = h('div', { id: 'process-error' });
  const inputs = jobInputs(ctx, choices, {
    prefix: 'process', errorBox: formError, bands: [], access,
    bandsHint: 'The bands the process reads; none ticked: those the process chooses itself.',
  });
  const params = schemaFields(process.parameters || { properties: {} }, { prefix: 'param' });
  const submit = h('button', { type: 'submit', id: 'process-submit' }, `Run ${process.name}`);
  jobForm(root, inputs, {
    attrs: { id: 'process-form', dataset: { process: process.name } },
    fields: [params.element, inputs.parts.collections, inputs.parts.area, inputs.parts.extent, inputs.parts.time,
      inputs.parts.bands, inputs.parts.indices, ...inputs.parts.period],
    errorEl: formError,
    submit,
    body: (common, problems) => {
      const { values, problems: wrong } = params.values();
      problems.push(...wrong);
      const rest = { ...common };
      for (const key of ['bands', 'indices']) if (!rest[key].length) delete rest[key];
      return { process: process.name, parameters: values, ...rest };
    },
  });
}

export default async function processes(ctx) {
  const [name] = ctx.params;
  ctx.setTitle('Processes');
  const doc = await fetchJSON(`${config.jobs}/processes`);
  if (ctx.signal.aborted) return;
  const list = doc.processes || [];
  if (!name) {
    await listView(ctx, list);
    return;
  }
  const process = list.find((p) => p.name === name);
  if (!process) {
    ctx.root.append(h('h1', {}, 'Unknown process'),
      errorBox(`No registered process ${JSON.stringify(name)}.`), h('p', {}, h('a', { href: '#/processes' }, 'All processes')));
    return;
  }
  await formView(ctx, process);
}
