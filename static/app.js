// Front end for the car model classifier: pick/drop a photo, POST it to
// /predict, render the probabilities. Plain DOM APIs only: everything coming
// from the server or from file names goes through textContent, never innerHTML
// (the one exception, refreshModelInfo, moves nodes of our own page, parsed as
// an inert document).
(function () {
  'use strict';

  const $ = (id) => document.getElementById(id);
  const main = $('app');
  const form = $('form');
  const dropZone = $('drop-zone');
  const fileInput = $('file-input');
  const fileName = $('file-name');
  const preview = $('preview');
  const tta = $('tta');
  const topK = $('top-k');
  const classifyBtn = $('classify');
  const statusEl = $('status');
  const errorEl = $('error');
  const resultsCard = $('results-card');
  const unknownNote = $('unknown');
  const results = $('results');
  const meta = $('meta');
  const examples = $('examples'); // absent when no example photos are configured

  const DEFAULT_TOP_K = parseInt(main.dataset.topK, 10) || 3;
  const MAX_UPLOAD_BYTES = (parseFloat(main.dataset.maxUploadMb) || 10) * 1024 * 1024;
  const GENERIC_ERROR = 'Something went wrong while classifying the photo. Please try again.';
  const MAX_LOADING_RETRIES = 24; // while the model loads (503 with Retry-After): about 2 minutes

  let currentFile = null;
  let previewUrl = null;
  let inFlight = null; // AbortController of the running request, so a newer photo wins
  let retryTimer = null; // the next try while the model loads

  // "kia_rio" -> "Kia Rio", "mazda_3" -> "Mazda 3" (same rule as the template).
  function prettyLabel(label) {
    return String(label)
      .split('_')
      .filter(Boolean)
      .map((w) => w.charAt(0).toUpperCase() + w.slice(1))
      .join(' ');
  }

  // Seconds to wait from a Retry-After header (delta-seconds form), within 1-60.
  function retryAfterSeconds(res) {
    const seconds = parseInt(res.headers.get('Retry-After'), 10);
    return Number.isFinite(seconds) ? Math.min(60, Math.max(1, seconds)) : 5;
  }

  // Scroll the least needed so that el is in view: the answer appears below the
  // photo on narrow screens (beside it on wide ones, where nothing moves).
  function reveal(el) {
    const box = el.getBoundingClientRect();
    if (box.top < 0 || box.bottom > window.innerHeight) el.scrollIntoView({ block: 'nearest' });
  }

  function setState(state, message) {
    main.dataset.state = state;
    main.setAttribute('aria-busy', state === 'busy' ? 'true' : 'false');
    statusEl.textContent = state === 'busy' ? message || 'Classifying…' : '';
    classifyBtn.disabled = state === 'busy' || !currentFile;
    if (state === 'busy') reveal(statusEl);

    results.dataset.state = state === 'done' ? 'done' : 'idle';
    if (state === 'error') {
      errorEl.textContent = message || GENERIC_ERROR;
      errorEl.dataset.state = 'error';
      errorEl.hidden = false;
      reveal(errorEl);
    } else {
      errorEl.textContent = '';
      delete errorEl.dataset.state;
      errorEl.hidden = true;
    }
    if (state !== 'done') {
      results.replaceChildren();
      meta.textContent = '';
      unknownNote.hidden = true;
      delete resultsCard.dataset.known;
      resultsCard.hidden = true;
    }
  }

  function readTopK() {
    const n = parseInt(topK.value, 10);
    const k = Number.isFinite(n) ? Math.min(parseInt(topK.max, 10) || 10, Math.max(1, n)) : DEFAULT_TOP_K;
    topK.value = String(k); // show the user what was actually sent
    return k;
  }

  // Forget the previous photo, so that a refused file does not leave it on screen.
  function clearPhoto() {
    if (inFlight) inFlight.abort();
    inFlight = null;
    clearTimeout(retryTimer);
    currentFile = null;
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    previewUrl = null;
    preview.removeAttribute('src');
    preview.hidden = true;
    dropZone.classList.remove('has-image');
  }

  function chooseFile(file) {
    if (!file) return;
    clearPhoto();
    fileName.textContent = file.name || '';
    // Browsers give an empty type for some files; let the server decide then.
    if (file.type && !file.type.startsWith('image/')) {
      setState('error', 'Please choose an image file (JPEG, PNG, WebP, BMP or GIF).');
      return;
    }
    if (file.size > MAX_UPLOAD_BYTES) { // spare a long upload that the server would refuse (413)
      setState('error', 'The photo is larger than ' + main.dataset.maxUploadMb + ' MB.');
      return;
    }
    currentFile = file;
    previewUrl = URL.createObjectURL(file);
    preview.src = previewUrl; // shown once it decodes (load event): never a broken-image icon
    classify();
  }

  preview.addEventListener('load', () => {
    preview.hidden = false;
    dropZone.classList.add('has-image');
  });
  preview.addEventListener('error', () => {
    preview.hidden = true;
    dropZone.classList.remove('has-image');
  });

  function renderPredictions(data) {
    // known_model: true, false, or null when the model has no calibration.
    resultsCard.dataset.known = String(data.known_model);
    unknownNote.hidden = data.known_model !== false;
    const rows = data.predictions.map((p, i) => {
      const prob = Math.min(1, Math.max(0, Number(p.probability) || 0));

      const row = document.createElement('div');
      row.className = i === 0 ? 'result top' : 'result';
      if (i === 0) row.dataset.testid = 'top-prediction';

      const label = document.createElement('span');
      label.className = 'result-label';
      label.textContent = prettyLabel(p.label);

      const pct = document.createElement('span');
      pct.className = 'result-prob';
      pct.textContent = (prob * 100).toFixed(1) + '%';

      const bar = document.createElement('div');
      bar.className = 'result-bar';
      bar.setAttribute('aria-hidden', 'true'); // the percentage text says it already
      const fill = document.createElement('div');
      fill.className = 'result-fill';
      fill.style.width = (prob * 100) + '%';
      bar.appendChild(fill);

      row.append(label, pct, bar);
      return row;
    });
    results.replaceChildren(...rows);

    const parts = [];
    if (data.tta_views != null) {
      parts.push(data.tta_views === 1 ? 'Photo alone' : 'Photo and its mirror image, averaged');
    }
    if (Number.isFinite(Number(data.time_ms))) parts.push(Math.round(Number(data.time_ms)) + ' ms');
    const version = (data.model && data.model.version) || main.dataset.modelVersion;
    if (version) parts.push('model ' + version);
    meta.textContent = parts.join(' · ');
    resultsCard.hidden = false;
    reveal(resultsCard);
    reveal(rows[0]); // when the card is taller than the window
  }

  // Best human-readable message for a failed response; the body may be HTML
  // (e.g. a 413 from a reverse proxy), so JSON parsing is optional.
  function errorMessage(res, body) {
    if (body && body.error && typeof body.error.message === 'string' && body.error.message) {
      return body.error.message;
    }
    if (res.status === 413) return 'The photo is too large to upload.';
    return GENERIC_ERROR + ' (HTTP ' + res.status + ')';
  }

  async function classify(attempt = 0) {
    if (!currentFile) return;
    if (inFlight) inFlight.abort();
    clearTimeout(retryTimer);
    const controller = new AbortController();
    inFlight = controller;

    const body = new FormData();
    body.append('file', currentFile, currentFile.name || 'upload');
    body.append('top_k', String(readTopK()));
    body.append('tta', tta.checked ? '1' : '0');

    setState('busy');
    try {
      const res = await fetch('/predict', { method: 'POST', body, signal: controller.signal });
      let data = null;
      try {
        data = await res.json();
      } catch (_) {
        data = null; // non-JSON answer
      }
      if (controller !== inFlight) return; // a newer request took over
      if (res.status === 503 && data && data.error && data.error.code === 'model_loading' &&
          attempt < MAX_LOADING_RETRIES) {
        const seconds = retryAfterSeconds(res);
        setState('busy', 'The model is still loading; trying again in ' + seconds + ' s…');
        retryTimer = setTimeout(() => classify(attempt + 1), seconds * 1000);
        return;
      }
      if (!res.ok) {
        setState('error', errorMessage(res, data));
      } else if (!data || !Array.isArray(data.predictions)) {
        setState('error', GENERIC_ERROR);
      } else {
        setState('done');
        renderPredictions(data);
      }
    } catch (err) {
      if (err && err.name === 'AbortError') return;
      if (controller !== inFlight) return;
      setState('error', 'Could not reach the server. Check your connection and try again.');
    } finally {
      if (controller === inFlight) inFlight = null;
    }
  }

  // Example photos: fetch the image and classify it like a chosen file.
  async function chooseExample(button) {
    try {
      const res = await fetch(button.dataset.src);
      if (!res.ok) throw new Error('HTTP ' + res.status);
      const blob = await res.blob();
      chooseFile(new File([blob], button.dataset.name, { type: blob.type }));
    } catch (_) {
      setState('error', 'Could not load the example photo.');
    }
  }

  if (examples) {
    examples.addEventListener('click', (e) => {
      const button = e.target.closest('button.example');
      if (button) chooseExample(button);
    });
  }

  fileInput.addEventListener('change', () => {
    chooseFile(fileInput.files && fileInput.files[0]);
    fileInput.value = ''; // so picking the same file again still fires "change"
  });

  form.addEventListener('submit', (e) => {
    e.preventDefault();
    classify();
  });

  // Drag and drop: preventDefault on dragover is what allows dropping at all.
  ['dragenter', 'dragover'].forEach((type) =>
    dropZone.addEventListener(type, (e) => {
      e.preventDefault();
      dropZone.classList.add('dragging');
    })
  );
  ['dragleave', 'dragend'].forEach((type) =>
    dropZone.addEventListener(type, (e) => {
      if (!dropZone.contains(e.relatedTarget)) dropZone.classList.remove('dragging');
    })
  );
  dropZone.addEventListener('drop', (e) => {
    e.preventDefault();
    dropZone.classList.remove('dragging');
    chooseFile(e.dataTransfer && e.dataTransfer.files[0]);
  });
  // A photo dropped just outside the zone should not make the browser navigate away.
  ['dragover', 'drop'].forEach((type) => window.addEventListener(type, (e) => e.preventDefault()));

  // Rendered while the model loaded: wait for /readyz (by its Retry-After), then
  // take the known models, the photo hint and the version from a fresh copy of the page.
  async function refreshModelInfo() {
    try {
      const ready = await fetch('/readyz');
      if (!ready.ok) {
        if (ready.headers.has('Retry-After')) setTimeout(refreshModelInfo, retryAfterSeconds(ready) * 1000);
        return; // without Retry-After the model failed to load: nothing to wait for
      }
      const page = new DOMParser().parseFromString(await (await fetch('/')).text(), 'text/html');
      const fresh = page.getElementById('app');
      if (!fresh || fresh.dataset.modelReady !== 'true') throw new Error('not ready yet');
      $('model-info').replaceWith(document.adoptNode(page.getElementById('model-info')));
      $('model-version').textContent = fresh.dataset.modelVersion;
      main.dataset.modelVersion = fresh.dataset.modelVersion;
      main.dataset.modelReady = 'true';
    } catch (_) {
      setTimeout(refreshModelInfo, 5000); // unreachable for now: try again later
    }
  }

  setState('idle');
  if (main.dataset.modelReady !== 'true') refreshModelInfo();
})();
