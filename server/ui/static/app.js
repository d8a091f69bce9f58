// The streamd dashboard: reads the daemon's JSON API and draws the jobs,
// the selected job's task graph and its checkpoint history. No framework,
// no inline script or style (the page's CSP forbids them); every text that
// comes from the API is set with textContent, never parsed as HTML.
'use strict';

(function () {
  const REFRESH_MS = 1000; // between the end of one refresh and the next
  const HIDDEN_REFRESH_MS = 5000; // while the tab is not visible
  const RETRY_MS = 2000; // after a failed refresh (daemon down)
  const FETCH_TIMEOUT_MS = 5000; // a request that takes longer has failed
  const HISTORY_KEEP = 300; // checkpoints kept for the chart, per job
  const POINTS_MAX = 80; // above this many checkpoints the chart draws no dots
  const HISTORY_ROWS = 20; // rows of the history table, newest first
  const TOKEN_KEY = 'streamd.token';
  const SVGNS = 'http://www.w3.org/2000/svg';

  const $ = (id) => document.getElementById(id);

  // ---- state -------------------------------------------------------------

  const st = {
    selected: null, // id of the job shown
    history: new Map(), // checkpoint id -> checkpoint, of the run st.historyJob
    historyJob: null, // job id @ start time
    jobRows: new Map(), // job id -> <tr>
    graphSig: '', // structure of the graph drawn
    graphRefs: null, // elements of the drawn graph updated in place
    chartSig: '',
    timer: 0,
    inflight: false,
    again: false,
    waitingForToken: false,
  };

  // ---- the API -------------------------------------------------------------

  // HTTPError is an answer of the daemon with an error status.
  class HTTPError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  // NetError is no answer at all: the daemon is down or unreachable.
  class NetError extends Error {}

  let memToken = ''; // the token when sessionStorage is unavailable

  function token() {
    try {
      return sessionStorage.getItem(TOKEN_KEY) || '';
    } catch (_) {
      return '';
    }
  }

  function setToken(t) {
    try {
      if (t) sessionStorage.setItem(TOKEN_KEY, t);
      else sessionStorage.removeItem(TOKEN_KEY);
    } catch (_) {
      // storage disabled: the token lives as long as the page
    }
    memToken = t;
  }

  async function api(path) {
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), FETCH_TIMEOUT_MS);
    const headers = { Accept: 'application/json' };
    const t = token() || memToken;
    if (t) headers.Authorization = 'Bearer ' + t;
    try {
      let resp;
      try {
        resp = await fetch(path, { headers, signal: ctl.signal, cache: 'no-store' });
      } catch (e) {
        throw new NetError(e.name === 'AbortError' ? 'no answer within ' + FETCH_TIMEOUT_MS / 1000 + ' s' : e.message);
      }
      if (!resp.ok) {
        let msg = resp.status + ' ' + resp.statusText;
        try {
          const body = await resp.json();
          if (body && body.error) msg = body.error;
        } catch (_) {
          // not JSON: keep the status line
        }
        throw new HTTPError(resp.status, msg);
      }
      try {
        return await resp.json();
      } catch (e) {
        throw new NetError(e.name === 'AbortError' ? 'no answer within ' + FETCH_TIMEOUT_MS / 1000 + ' s' : 'bad answer: ' + e.message);
      }
    } finally {
      clearTimeout(timer);
    }
  }

  const jobPath = (id) => 'v1/jobs/' + encodeURIComponent(id);

  // ---- the refresh loop: one refresh at a time, never overlapping -----------

  async function tick() {
    clearTimeout(st.timer);
    if (st.inflight) {
      st.again = true;
      return;
    }
    st.inflight = true;
    let delay = document.hidden ? HIDDEN_REFRESH_MS : REFRESH_MS;
    try {
      await refresh();
      setConnected(true);
    } catch (e) {
      if (e instanceof HTTPError && e.status === 401) {
        askForToken(token() || memToken ? 'the daemon refused the token: ' + e.message : '');
        st.inflight = false;
        return; // resumes when a token is entered
      }
      setConnected(false, e);
      delay = RETRY_MS;
      if (!(e instanceof HTTPError) && !(e instanceof NetError)) {
        // a bug of this page: report it where developers and tests look
        setTimeout(() => {
          throw e;
        }, 0);
      }
    }
    st.inflight = false;
    if (st.again) {
      st.again = false;
      delay = 0;
    }
    st.timer = setTimeout(tick, delay);
  }

  function setConnected(ok, err) {
    const c = $('conn');
    if (ok) {
      c.textContent = 'live';
      c.className = 'conn ok';
      $('main').classList.remove('stale');
      $('updated').textContent = 'updated ' + fmtClock(Date.now());
    } else {
      const msg = err && err.message ? err.message : String(err);
      const retry = ' — retrying every ' + RETRY_MS / 1000 + ' s';
      if (err instanceof NetError) c.textContent = 'disconnected' + retry + ' (' + msg + ')';
      else if (err instanceof HTTPError) c.textContent = 'the daemon answered ' + err.status + ': ' + msg + retry;
      else c.textContent = 'page error: ' + msg + retry;
      c.className = 'conn bad';
      $('main').classList.add('stale');
    }
  }

  function askForToken(message) {
    st.waitingForToken = true;
    setToken('');
    $('auth').hidden = false;
    $('auth-error').textContent = message;
    $('conn').textContent = 'needs an auth token';
    $('conn').className = 'conn bad';
    $('token').focus();
  }

  $('auth').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const t = $('token').value.trim();
    if (!t) return;
    setToken(t);
    $('token').value = '';
    $('auth').hidden = true;
    st.waitingForToken = false;
    tick();
  });

  function selectedFromHash() {
    const h = new URLSearchParams(location.hash.slice(1));
    return h.get('job');
  }

  window.addEventListener('hashchange', () => {
    const id = selectedFromHash();
    if (id && id !== st.selected) {
      st.selected = id;
      if (!st.waitingForToken) tick();
    }
  });

  document.addEventListener('visibilitychange', () => {
    if (!document.hidden && !st.waitingForToken) tick();
  });

  async function refresh() {
    const list = await api('v1/jobs');
    const jobs = (list && list.jobs) || [];
    const wanted = selectedFromHash() || st.selected;
    let sel = jobs.find((j) => j.id === wanted);
    if (!sel) sel = jobs.find((j) => j.status === 'RUNNING') || jobs[0] || null;
    st.selected = sel ? sel.id : null;
    renderJobs(jobs);
    if (!sel) {
      $('job').hidden = true;
      return;
    }
    let job, cps;
    try {
      [job, cps] = await Promise.all([api(jobPath(sel.id)), api(jobPath(sel.id) + '/checkpoints')]);
    } catch (e) {
      if (e instanceof HTTPError && e.status === 404) {
        // deleted between the two requests: the next refresh shows the list without it
        return;
      }
      throw e;
    }
    renderJob(job, cps);
  }

  // ---- formatting ------------------------------------------------------------

  const num = (x) => (typeof x === 'number' && isFinite(x) ? x : 0);

  function fmtCount(n) {
    return Math.round(num(n)).toLocaleString('en-US');
  }

  function fmtRate(n) {
    n = num(n);
    const units = ['', 'k', 'M', 'G', 'T'];
    let i = 0;
    while (Math.abs(n) >= 1000 && i < units.length - 1) {
      n /= 1000;
      i++;
    }
    const digits = i === 0 ? (Math.abs(n) < 10 && n !== Math.round(n) ? 1 : 0) : Math.abs(n) < 100 ? 1 : 0;
    return n.toFixed(digits) + units[i];
  }

  function fmtBytes(n) {
    n = num(n);
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    while (Math.abs(n) >= 1024 && i < units.length - 1) {
      n /= 1024;
      i++;
    }
    return (i === 0 ? n.toFixed(0) : n.toFixed(Math.abs(n) < 100 ? 1 : 0)) + ' ' + units[i];
  }

  function fmtMs(ms) {
    ms = num(ms);
    if (ms === 0) return '0 ms';
    if (ms < 0.01) return (ms * 1000).toFixed(1) + ' µs';
    if (ms < 1) return (ms * 1000).toFixed(0) + ' µs';
    if (ms < 10) return ms.toFixed(1) + ' ms';
    if (ms < 1000) return ms.toFixed(0) + ' ms';
    if (ms < 60000) return (ms / 1000).toFixed(2) + ' s';
    return fmtUptime(ms);
  }

  function fmtUptime(ms) {
    let s = Math.floor(num(ms) / 1000);
    const d = Math.floor(s / 86400);
    s -= d * 86400;
    const h = Math.floor(s / 3600);
    s -= h * 3600;
    const m = Math.floor(s / 60);
    s -= m * 60;
    const p2 = (x) => String(x).padStart(2, '0');
    if (d > 0) return d + 'd ' + h + 'h';
    if (h > 0) return h + 'h ' + p2(m) + 'm';
    if (m > 0) return m + 'm ' + p2(s) + 's';
    return s + 's';
  }

  function fmtTime(ts) {
    if (!ts) return '—';
    const d = new Date(ts);
    const p2 = (x) => String(x).padStart(2, '0');
    return d.getFullYear() + '-' + p2(d.getMonth() + 1) + '-' + p2(d.getDate()) + ' ' + fmtClock(ts);
  }

  function fmtClock(ts) {
    const d = new Date(ts);
    const p2 = (x) => String(x).padStart(2, '0');
    return p2(d.getHours()) + ':' + p2(d.getMinutes()) + ':' + p2(d.getSeconds());
  }

  function fmtPct(f) {
    f = num(f);
    if (f > 0 && f < 0.01) return '<1%';
    return (f * 100).toFixed(0) + '%';
  }

  // backpressure classes, Flink's thresholds: OK up to 10 %, LOW up to 50 %, HIGH above
  function bpClass(f) {
    f = num(f);
    if (f > 0.5) return 'bp-high';
    if (f > 0.1) return 'bp-low';
    return 'bp-ok';
  }

  // ---- DOM helpers -------------------------------------------------------------

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === 'class') e.className = v;
      else e.setAttribute(k, v);
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      e.append(c instanceof Node ? c : String(c));
    }
    return e;
  }

  function svg(tag, attrs, text) {
    const e = document.createElementNS(SVGNS, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    if (text !== undefined) e.textContent = String(text);
    return e;
  }

  function setText(e, s) {
    s = String(s);
    if (e.textContent !== s) e.textContent = s;
  }

  // table replaces a table's contents: head is a list of column titles,
  // rows a list of rows, each a list of cells (a string, or [string, class]).
  function table(t, head, rows) {
    const thead = el('thead', null, el('tr', null, ...head.map((h) => (Array.isArray(h) ? el('th', { class: h[1] }, h[0]) : el('th', null, h)))));
    const tbody = el('tbody');
    for (const r of rows) {
      const tr = el('tr', r.cls ? { class: r.cls } : null);
      for (const c of r.cells || r) tr.append(Array.isArray(c) ? el('td', { class: c[1] }, c[0]) : el('td', null, c));
      tbody.append(tr);
    }
    t.replaceChildren(thead, tbody);
  }

  // ---- the jobs list -------------------------------------------------------------

  function renderJobs(jobs) {
    const body = $('jobs-body');
    $('no-jobs').hidden = jobs.length > 0;
    const seen = new Set();
    jobs.forEach((j, i) => {
      seen.add(j.id);
      let tr = st.jobRows.get(j.id);
      if (!tr) {
        const link = el('a', { href: '#job=' + encodeURIComponent(j.id) });
        tr = el('tr', { 'data-testid': 'job-row', 'data-job-id': j.id, class: 'job-row' });
        tr.append(el('td', null, link, ' ', el('span', { class: 'muted small' })));
        for (let k = 0; k < 6; k++) tr.append(el('td', k >= 3 ? { class: 'num' } : null));
        tr.addEventListener('click', (ev) => {
          if (ev.target.tagName !== 'A') location.hash = 'job=' + encodeURIComponent(j.id);
        });
        st.jobRows.set(j.id, tr);
      }
      const td = tr.children;
      setText(td[0].firstChild, j.name || j.id);
      setText(td[0].lastChild, j.name && j.name !== j.id ? j.id : '');
      td[1].replaceChildren(badge(j.status));
      setText(td[2], fmtTime(j.start_time));
      td[2].className = 'time';
      setText(td[3], fmtUptime(j.duration));
      setText(td[4], fmtCount(j.restarts));
      setText(td[5], fmtCount(j.checkpoints_completed));
      setText(td[6], j.last_checkpoint_id ? '#' + j.last_checkpoint_id : '—');
      tr.classList.toggle('selected', j.id === st.selected);
      if (body.children[i] !== tr) body.insertBefore(tr, body.children[i] || null);
    });
    for (const [id, tr] of st.jobRows) {
      if (!seen.has(id)) {
        tr.remove();
        st.jobRows.delete(id);
      }
    }
  }

  function badge(status) {
    return el('span', { class: 'badge status-' + String(status || 'UNKNOWN').toLowerCase(), 'data-status': status || '' }, status || '?');
  }

  // ---- one job ---------------------------------------------------------------------

  function renderJob(job, cps) {
    $('job').hidden = false;
    setText($('job-name'), job.name || job.id);
    $('job-status').replaceChildren(badge(job.status));
    const about = [];
    if (job.name && job.name !== job.id) about.push('id ' + job.id);
    if (job.parallelism) about.push('parallelism ' + job.parallelism);
    if (job.restart_strategy) about.push('restart strategy ' + job.restart_strategy);
    setText($('job-id'), about.join(' · '));
    setText($('job-uptime'), fmtUptime(job.duration));
    setText($('job-restarts'), fmtCount(job.restarts));
    const counts = (cps && cps.counts) || {};
    setText($('cp-completed'), fmtCount(counts.completed));
    setText($('cp-failed'), fmtCount(counts.failed));
    setText($('cp-inprogress'), fmtCount(counts.in_progress));
    setText($('cp-restored'), fmtCount(counts.restored));
    const last = cps && cps.latest && cps.latest.completed;
    setText($('cp-size'), last ? fmtBytes(last.state_size) : '—');

    drawGraph(job.vertices || [], job.edges || []);
    renderVertices(job.vertices || []);

    // A job submitted again under the same id starts its own history.
    mergeHistory(job.id + '@' + job.start_time, (cps && cps.history) || []);
    const history = [...st.history.values()].sort((a, b) => a.id - b.id);
    drawChart(history);
    renderLatest(cps || {});
    renderSummary((cps && cps.summary) || {});
    renderHistory((cps && cps.history) || []);
    renderSavepoints(job.savepoints || []);
    renderFailures(job);
  }

  // ---- the task graph --------------------------------------------------------------

  const BOX_W = 190;
  const BOX_H = 84;
  const GAP_X = 130;
  const GAP_Y = 30;
  const PAD = 12;

  // layout places vertices in columns by their longest path from a source,
  // in the API's order within a column.
  function layout(vertices, edges) {
    const rank = new Map(vertices.map((v) => [v.id, 0]));
    for (let i = 0; i < vertices.length; i++) {
      let changed = false;
      for (const e of edges) {
        if (!rank.has(e.from) || !rank.has(e.to)) continue;
        if (rank.get(e.to) < rank.get(e.from) + 1) {
          rank.set(e.to, rank.get(e.from) + 1);
          changed = true;
        }
      }
      if (!changed) break;
    }
    const cols = [];
    for (const v of vertices) {
      const r = rank.get(v.id);
      (cols[r] = cols[r] || []).push(v);
    }
    const rows = Math.max(1, ...cols.map((c) => (c ? c.length : 0)));
    const pos = new Map();
    cols.forEach((col, r) => {
      if (!col) return;
      const off = ((rows - col.length) * (BOX_H + GAP_Y)) / 2;
      col.forEach((v, i) => pos.set(v.id, { x: PAD + r * (BOX_W + GAP_X), y: PAD + off + i * (BOX_H + GAP_Y) }));
    });
    return { pos, width: PAD * 2 + cols.length * BOX_W + Math.max(0, cols.length - 1) * GAP_X, height: PAD * 2 + rows * BOX_H + (rows - 1) * GAP_Y };
  }

  // fmtWatermark shows an event-time watermark (ms since the epoch; the
  // lowest of the vertex's tasks), or a dash before the first one.
  function fmtWatermark(ms) {
    if (typeof ms !== 'number' || !isFinite(ms)) return '—';
    if (ms >= 8.64e15) return 'end of input';
    const d = new Date(ms);
    return isNaN(d.getTime()) ? String(ms) : d.toISOString();
  }

  function truncate(s, n) {
    s = String(s);
    return s.length > n ? s.slice(0, n - 1) + '…' : s;
  }

  function drawGraph(vertices, edges) {
    const g = $('graph');
    const sig = JSON.stringify([vertices.map((v) => [v.id, v.name, v.parallelism]), edges.map((e) => [e.from, e.to, e.partitioning])]);
    if (sig !== st.graphSig) {
      st.graphSig = sig;
      st.graphRefs = buildGraph(g, vertices, edges);
    }
    const refs = st.graphRefs;
    for (const v of vertices) {
      const r = refs.nodes.get(v.id);
      if (!r) continue;
      setText(r.rates, 'in ' + fmtRate(v.records_in_per_second) + '/s · out ' + fmtRate(v.records_out_per_second) + '/s');
      setText(r.bp, 'backpressure ' + fmtPct(v.backpressure));
      r.bar.setAttribute('width', String(Math.max(0, Math.min(1, num(v.backpressure))) * (BOX_W - 2)));
      r.bar.setAttribute('class', 'bp-bar ' + bpClass(v.backpressure));
      r.box.setAttribute('data-backpressure', String(num(v.backpressure)));
      setText(r.title, v.name + '\nparallelism ' + v.parallelism + '\nrecords in ' + fmtCount(v.records_in) + ', out ' + fmtCount(v.records_out) + '\nbackpressure ' + fmtPct(v.backpressure) + ' (max over tasks)' + '\nwatermark ' + fmtWatermark(v.watermark_ms));
    }
    edges.forEach((e, i) => {
      const r = refs.edges[i];
      if (!r) return;
      const cls = bpClass(e.backpressure);
      r.group.setAttribute('class', 'edge ' + cls);
      r.group.setAttribute('data-backpressure', String(num(e.backpressure)));
      r.path.setAttribute('marker-end', 'url(#arrow-' + cls + ')');
      setText(r.rate, fmtRate(e.records_per_second) + ' rec/s');
      setText(r.detail, (e.partitioning || '') + ' · bp ' + fmtPct(e.backpressure));
      setText(r.title, e.from + ' → ' + e.to + ' (' + (e.partitioning || '?') + '): ' + fmtCount(e.records_per_second) + ' records/s, backpressure ' + fmtPct(e.backpressure) + ', ring occupancy ' + fmtPct(e.occupancy) + (e.capacity_slots ? ' (' + fmtCount(e.occupied_slots) + ' of ' + fmtCount(e.capacity_slots) + ' slots)' : ''));
    });
  }

  function buildGraph(g, vertices, edges) {
    const { pos, width, height } = layout(vertices, edges);
    g.replaceChildren();
    g.setAttribute('viewBox', '0 0 ' + width + ' ' + height);
    g.setAttribute('width', String(width));
    g.setAttribute('height', String(height));
    const defs = svg('defs');
    for (const cls of ['bp-ok', 'bp-low', 'bp-high']) {
      const m = svg('marker', { id: 'arrow-' + cls, viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' });
      m.append(svg('path', { d: 'M0,0 L10,5 L0,10 z', class: 'arrow ' + cls }));
      defs.append(m);
    }
    g.append(defs);
    if (vertices.length === 0) {
      g.append(svg('text', { x: PAD, y: PAD + 16, class: 'empty' }, 'no tasks'));
    }
    const refs = { nodes: new Map(), edges: [] };
    for (const e of edges) {
      const a = pos.get(e.from);
      const b = pos.get(e.to);
      const grp = svg('g', { class: 'edge', 'data-testid': 'graph-edge', 'data-from': e.from, 'data-to': e.to });
      const ref = { group: grp };
      refs.edges.push(ref);
      g.append(grp);
      if (!a || !b) continue;
      const x1 = a.x + BOX_W;
      const y1 = a.y + BOX_H / 2;
      const x2 = b.x - 2;
      const y2 = b.y + BOX_H / 2;
      const mx = (x1 + x2) / 2;
      ref.path = svg('path', { d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}`, class: 'edge-line' });
      ref.title = svg('title');
      grp.append(ref.path, ref.title);
      const ly = (y1 + y2) / 2;
      grp.append(svg('rect', { x: mx - 58, y: ly - 22, width: 116, height: 36, rx: 4, class: 'edge-label-bg' }));
      ref.rate = svg('text', { x: mx, y: ly - 8, class: 'edge-label', 'text-anchor': 'middle' });
      ref.detail = svg('text', { x: mx, y: ly + 8, class: 'edge-label small', 'text-anchor': 'middle' });
      grp.append(ref.rate, ref.detail);
    }
    for (const v of vertices) {
      const p = pos.get(v.id);
      const grp = svg('g', { class: 'vertex', 'data-testid': 'graph-vertex', 'data-vertex-id': v.id, transform: `translate(${p.x},${p.y})` });
      const box = svg('rect', { width: BOX_W, height: BOX_H, rx: 6, class: 'vertex-box' });
      const title = svg('title');
      grp.append(box, title);
      grp.append(svg('text', { x: 10, y: 20, class: 'vertex-name' }, truncate(v.name || v.id, 26)));
      grp.append(svg('text', { x: 10, y: 39, class: 'vertex-info' }, 'parallelism ' + v.parallelism));
      const rates = svg('text', { x: 10, y: 56, class: 'vertex-info' });
      const bp = svg('text', { x: 10, y: 73, class: 'vertex-info' });
      grp.append(rates, bp);
      grp.append(svg('rect', { x: 1, y: BOX_H - 5, width: BOX_W - 2, height: 4, class: 'bp-track' }));
      const bar = svg('rect', { x: 1, y: BOX_H - 5, width: 0, height: 4, class: 'bp-bar bp-ok' });
      grp.append(bar);
      g.append(grp);
      refs.nodes.set(v.id, { box: grp, title, rates, bp, bar });
    }
    return refs;
  }

  function renderVertices(vertices) {
    const rows = [];
    for (const v of vertices) {
      rows.push({
        cls: 'vertex-row',
        cells: [v.name, ['' + v.parallelism, 'num'], [fmtCount(v.records_in), 'num'], [fmtCount(v.records_out), 'num'], [fmtRate(v.records_in_per_second) + '/s', 'num'], [fmtRate(v.records_out_per_second) + '/s', 'num'], [fmtPct(v.backpressure), 'num ' + bpClass(v.backpressure)]],
      });
      for (const o of v.operators || []) {
        rows.push({
          cls: 'operator-row',
          cells: ['operator ' + o.name + (o.uid && o.uid !== o.name ? ' (uid ' + o.uid + ')' : ''), '', [fmtCount(o.records_in), 'num'], [fmtCount(o.records_out), 'num'], [fmtRate(o.records_in_per_second) + '/s', 'num'], [fmtRate(o.records_out_per_second) + '/s', 'num'], ''],
        });
      }
      for (const t of v.tasks || []) {
        rows.push({
          cls: 'task-row',
          cells: ['task ' + t.index, '', [fmtCount(t.records_in), 'num'], [fmtCount(t.records_out), 'num'], [fmtRate(t.records_in_per_second) + '/s', 'num'], [fmtRate(t.records_out_per_second) + '/s', 'num'], [fmtPct(t.backpressure), 'num ' + bpClass(t.backpressure)]],
        });
      }
    }
    table($('vertices'), ['Vertex / operator / task', ['Parallelism', 'num'], ['Records in', 'num'], ['Records out', 'num'], ['In', 'num'], ['Out', 'num'], ['Backpressure', 'num']], rows);
  }

  // ---- the checkpoint chart ------------------------------------------------------------

  // The chart's series: durations on the left axis, sizes on the right.
  const SERIES = [
    { key: 'end_to_end_duration', label: 'end-to-end', cls: 's-e2e', axis: 'ms' },
    { key: 'sync_duration', label: 'sync', cls: 's-sync', axis: 'ms' },
    { key: 'async_duration', label: 'async', cls: 's-async', axis: 'ms' },
    { key: 'alignment_duration', label: 'alignment', cls: 's-align', axis: 'ms' },
    { key: 'state_size', label: 'state size (right axis)', cls: 's-size', axis: 'bytes' },
    { key: 'checkpointed_size', label: 'checkpointed size (right axis)', cls: 's-csize', axis: 'bytes' },
  ];

  function mergeHistory(key, history) {
    if (st.historyJob !== key) {
      st.historyJob = key;
      st.history = new Map();
      st.chartSig = '';
    }
    for (const c of history) st.history.set(c.id, c);
    if (st.history.size > HISTORY_KEEP) {
      const ids = [...st.history.keys()].sort((a, b) => a - b);
      for (const id of ids.slice(0, ids.length - HISTORY_KEEP)) st.history.delete(id);
    }
  }

  function niceMax(v) {
    if (!(v > 0)) return 1;
    const e = Math.pow(10, Math.floor(Math.log10(v)));
    const f = v / e;
    return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 2.5 ? 2.5 : f <= 5 ? 5 : 10) * e;
  }

  function niceBytesMax(v) {
    if (!(v > 0)) return 1024;
    let unit = 1;
    while (v / unit >= 1024) unit *= 1024;
    return niceMax(v / unit) * unit;
  }

  function renderLegend() {
    const lg = $('legend');
    if (lg.childElementCount) return;
    for (const s of SERIES) lg.append(el('span', { class: 'legend-item' }, el('span', { class: 'swatch ' + s.cls }), s.label));
    lg.append(el('span', { class: 'legend-item' }, el('span', { class: 'swatch s-failed' }), 'failed checkpoint'));
  }

  function drawChart(cps) {
    renderLegend();
    const sig = JSON.stringify(cps.map((c) => [c.id, c.status, c.end_to_end_duration, c.state_size]));
    if (sig === st.chartSig) return;
    st.chartSig = sig;

    const W = 1000;
    const H = 300;
    const M = { l: 70, r: 80, t: 14, b: 40 };
    const c = $('chart');
    c.replaceChildren();
    c.setAttribute('viewBox', `0 0 ${W} ${H}`);
    c.setAttribute('preserveAspectRatio', 'xMidYMid meet');

    const done = cps.filter((x) => x.status === 'COMPLETED');
    const failed = cps.filter((x) => x.status === 'FAILED');
    const all = done.concat(failed);
    let xmin = Math.min(...all.map((x) => x.id));
    let xmax = Math.max(...all.map((x) => x.id));
    if (!isFinite(xmin)) {
      xmin = 0;
      xmax = 1;
    }
    if (xmin === xmax) {
      xmin -= 1;
      xmax += 1;
    }
    const msMax = niceMax(Math.max(0, ...done.flatMap((x) => SERIES.filter((s) => s.axis === 'ms').map((s) => num(x[s.key])))));
    const bMax = niceBytesMax(Math.max(0, ...done.flatMap((x) => [num(x.state_size), num(x.checkpointed_size)])));
    const X = (id) => M.l + ((id - xmin) / (xmax - xmin)) * (W - M.l - M.r);
    const Y = (v, max) => H - M.b - (num(v) / max) * (H - M.t - M.b);

    // grid and axes
    const TICKS = 5;
    for (let i = 0; i <= TICKS; i++) {
      const y = H - M.b - (i / TICKS) * (H - M.t - M.b);
      c.append(svg('line', { x1: M.l, x2: W - M.r, y1: y, y2: y, class: i === 0 ? 'axis' : 'grid' }));
      c.append(svg('text', { x: M.l - 6, y: y + 4, 'text-anchor': 'end', class: 'tick' }, fmtMs((msMax * i) / TICKS)));
      c.append(svg('text', { x: W - M.r + 6, y: y + 4, 'text-anchor': 'start', class: 'tick' }, fmtBytes((bMax * i) / TICKS)));
    }
    c.append(svg('line', { x1: M.l, x2: M.l, y1: M.t, y2: H - M.b, class: 'axis' }));
    c.append(svg('line', { x1: W - M.r, x2: W - M.r, y1: M.t, y2: H - M.b, class: 'axis' }));
    const span = xmax - xmin;
    const step = Math.max(1, Math.ceil(span / 10));
    for (let id = Math.ceil(xmin / step) * step; id <= xmax; id += step) {
      if (id < 1) continue;
      const x = X(id);
      c.append(svg('line', { x1: x, x2: x, y1: H - M.b, y2: H - M.b + 4, class: 'axis' }));
      c.append(svg('text', { x, y: H - M.b + 16, 'text-anchor': 'middle', class: 'tick' }, '#' + id));
    }
    c.append(svg('text', { x: (M.l + W - M.r) / 2, y: H - 6, 'text-anchor': 'middle', class: 'axis-label' }, 'checkpoint'));
    c.append(svg('text', { x: 14, y: (M.t + H - M.b) / 2, 'text-anchor': 'middle', class: 'axis-label', transform: `rotate(-90 14 ${(M.t + H - M.b) / 2})` }, 'duration'));
    c.append(svg('text', { x: W - 10, y: (M.t + H - M.b) / 2, 'text-anchor': 'middle', class: 'axis-label', transform: `rotate(90 ${W - 10} ${(M.t + H - M.b) / 2})` }, 'size'));

    if (done.length === 0) {
      c.append(svg('text', { x: (M.l + W - M.r) / 2, y: (M.t + H - M.b) / 2, 'text-anchor': 'middle', class: 'empty' }, 'no completed checkpoint yet'));
    }

    // one path per series, then its points
    for (const s of SERIES) {
      const max = s.axis === 'ms' ? msMax : bMax;
      const d = done.map((x, i) => (i ? 'L' : 'M') + X(x.id).toFixed(1) + ',' + Y(x[s.key], max).toFixed(1)).join(' ');
      const p = svg('path', { d, class: 'series ' + s.cls, 'data-series': s.key, 'data-points': done.length });
      p.append(svg('title', null, s.label));
      c.append(p);
    }
    if (done.length <= POINTS_MAX) {
      for (const s of SERIES) {
        const max = s.axis === 'ms' ? msMax : bMax;
        const fmt = s.axis === 'ms' ? fmtMs : fmtBytes;
        for (const x of done) {
          const dot = svg('circle', { cx: X(x.id).toFixed(1), cy: Y(x[s.key], max).toFixed(1), r: 3, class: 'dot ' + s.cls });
          dot.append(svg('title', null, 'checkpoint ' + x.id + (x.is_savepoint ? ' (savepoint)' : '') + ' · ' + s.label + ' ' + fmt(x[s.key])));
          c.append(dot);
        }
      }
    }
    for (const x of failed) {
      const cx = X(x.id);
      const y = H - M.b;
      const m = svg('path', { d: `M${cx - 5},${y + 1} L${cx + 5},${y + 1} L${cx},${y - 8} z`, class: 'failed-mark', 'data-testid': 'failed-checkpoint' });
      m.append(svg('title', null, 'checkpoint ' + x.id + ' failed: ' + (x.failure_message || 'no message')));
      c.append(m);
    }
  }

  // ---- checkpoint tables -------------------------------------------------------------

  function acks(c) {
    return num(c.num_acknowledged_subtasks) + '/' + num(c.num_subtasks);
  }

  function renderLatest(cps) {
    const l = cps.latest || {};
    const rows = [];
    const row = (what, c) => {
      if (!c) {
        rows.push([what, '—', '', '', '', '', '']);
        return;
      }
      rows.push([what, '#' + c.id, [fmtTime(c.trigger_timestamp), 'time'], [fmtMs(c.end_to_end_duration), 'num'], [fmtBytes(c.state_size), 'num'], [acks(c), 'num'], c.status === 'FAILED' ? [c.failure_message || '', 'msg error'] : [c.external_path || '', 'msg']]);
    };
    row('Completed', l.completed);
    row('Failed', l.failed);
    row('Savepoint', l.savepoint);
    const r = l.restored;
    if (r) rows.push(['Restored', '#' + r.id, [fmtTime(r.restore_timestamp), 'time'], '', '', '', [(r.is_savepoint ? 'savepoint ' : '') + (r.external_path || ''), 'msg']]);
    else rows.push(['Restored', '—', '', '', '', '', '']);
    table($('cp-latest'), ['', 'Id', 'Time', ['End-to-end', 'num'], ['State size', 'num'], ['Acks', 'num'], 'Path / message'], rows);
  }

  function renderSummary(sum) {
    const rows = [];
    const stat = (label, key, fmt) => {
      const s = sum[key] || {};
      rows.push([label, ...['min', 'avg', 'p50', 'p90', 'p99', 'max'].map((k) => [fmt(s[k]), 'num'])]);
    };
    stat('End-to-end', 'end_to_end_duration', fmtMs);
    stat('Sync', 'sync_duration', fmtMs);
    stat('Async', 'async_duration', fmtMs);
    stat('Alignment', 'alignment_duration', fmtMs);
    stat('Start delay', 'start_delay', fmtMs);
    stat('State size', 'state_size', fmtBytes);
    stat('Checkpointed size', 'checkpointed_size', fmtBytes);
    table($('cp-summary'), ['', ...['min', 'avg', 'p50', 'p90', 'p99', 'max'].map((h) => [h, 'num'])], rows);
  }

  function renderHistory(history) {
    const shown = history.slice(0, HISTORY_ROWS);
    setText($('cp-history-note'), history.length > shown.length ? 'the newest ' + shown.length + ' of ' + history.length + ' (the chart shows them all)' : '');
    const rows = shown.map((c) => ({
      cls: 'cp-' + String(c.status).toLowerCase(),
      cells: [
        '#' + c.id + (c.is_savepoint ? ' savepoint' : '') + (c.final ? ' final' : ''),
        badge(c.status),
        [fmtTime(c.trigger_timestamp), 'time'],
        [fmtMs(c.end_to_end_duration), 'num'],
        [fmtMs(c.sync_duration), 'num'],
        [fmtMs(c.async_duration), 'num'],
        [fmtMs(c.alignment_duration), 'num'],
        [fmtMs(c.start_delay), 'num'],
        [fmtBytes(c.state_size), 'num'],
        [fmtBytes(c.checkpointed_size), 'num'],
        [acks(c), 'num'],
        c.failure_message ? [c.failure_message, 'msg error'] : [c.external_path || '', 'msg'],
      ],
    }));
    table($('cp-history'), ['Id', 'Status', 'Triggered', ['End-to-end', 'num'], ['Sync', 'num'], ['Async', 'num'], ['Alignment', 'num'], ['Start delay', 'num'], ['State size', 'num'], ['Checkpointed', 'num'], ['Acks', 'num'], 'Path / message'], rows);
  }

  function renderFailures(job) {
    const failures = (job.failures || []).slice().sort((a, b) => num(b.time) - num(a.time));
    setText($('restarts-text'), 'Restarts: ' + fmtCount(job.restarts) + (failures.length ? '. Failures, newest first:' : '. No failures.'));
    $('failures').replaceChildren(
      ...failures.map((f) => el('li', { 'data-testid': 'failure' }, el('span', { class: 'muted' }, fmtTime(f.time)), ' ', f.message, ...(f.restarted ? [' ', el('span', { class: 'tag' }, 'restarted')] : []))),
    );
  }

  function renderSavepoints(sps) {
    $('savepoints-block').hidden = sps.length === 0;
    const rows = sps
      .slice()
      .sort((a, b) => num(b.timestamp) - num(a.timestamp))
      .map((s) => ['#' + s.checkpoint_id, [fmtTime(s.timestamp), 'time'], [fmtBytes(s.state_size), 'num'], [s.path || '', 'msg']]);
    table($('savepoints'), ['Checkpoint', 'Taken', ['State size', 'num'], 'Path'], rows);
  }

  tick();
})();
