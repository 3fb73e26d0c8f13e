// Renders /openapi.json as a plain reference page: each operation with its
// parameters, request bodies and responses, then the schemas. Text only
// (textContent), no external library.
(function () {
  'use strict';

  const root = document.getElementById('api');

  function el(tag, text, className) {
    const node = document.createElement(tag);
    if (text != null) node.textContent = text;
    if (className) node.className = className;
    return node;
  }

  function refName(schema) {
    return schema && schema.$ref ? schema.$ref.split('/').pop() : null;
  }

  function list(title, items) {
    if (!items.length) return null;
    const section = el('div', null, 'docs-part');
    section.append(el('h4', title));
    const ul = el('ul');
    items.forEach((text) => ul.append(el('li', text)));
    section.append(ul);
    return section;
  }

  function operation(path, method, op) {
    const card = el('section', null, 'card docs-op');
    card.id = (method + path).replace(/[^a-z0-9]+/gi, '-');
    card.append(el('h3', method.toUpperCase() + ' ' + path));
    if (op.summary) card.append(el('p', op.summary, 'lead'));
    if (op.description) card.append(el('p', op.description));
    const params = (op.parameters || []).map((p) =>
      p.name + ' (' + p.in + (p.required ? ', required' : '') + '): ' + (p.description || ''));
    const bodies = Object.entries((op.requestBody && op.requestBody.content) || {}).map(([type, media]) =>
      type + (refName(media.schema) ? ' → ' + refName(media.schema) : '') +
      (media.schema && media.schema.description ? ': ' + media.schema.description : ''));
    const responses = Object.entries(op.responses || {}).map(([status, r]) => {
      const schemas = Object.values(r.content || {}).map((m) => refName(m.schema)).filter(Boolean);
      return status + ': ' + (r.description || '') + (schemas.length ? ' (' + schemas.join(', ') + ')' : '');
    });
    [list('Parameters', params), list('Request body', bodies), list('Responses', responses)]
      .filter(Boolean).forEach((part) => card.append(part));
    return card;
  }

  function render(spec) {
    const parts = [el('p', spec.info.description || '')];
    Object.entries(spec.paths).forEach(([path, ops]) =>
      Object.entries(ops).forEach(([method, op]) => parts.push(operation(path, method, op))));
    parts.push(el('h2', 'Schemas'));
    Object.entries((spec.components && spec.components.schemas) || {}).forEach(([name, schema]) => {
      const card = el('section', null, 'card');
      card.id = 'schema-' + name;
      card.append(el('h3', name), el('pre', JSON.stringify(schema, null, 2), 'docs-schema'));
      parts.push(card);
    });
    root.replaceChildren(...parts);
  }

  fetch(root.dataset.spec)
    .then((res) => res.json())
    .then(render)
    .catch(() => root.replaceChildren(el('p', 'Could not load the API description.', 'error')));
})();
