// minik dashboard: a single-page app over the same-origin API proxy.
// Every resource is kept in an Informer (list, then watch from the list's
// resourceVersion over /k8s-ws, re-list on 410 or failure), and the page is
// re-rendered from those caches — no page reloads, no polling.
'use strict';
(function () {
  // ---------- small helpers ----------
  var $ = function (sel, el) { return (el || document).querySelector(sel); };
  var $$ = function (sel, el) { return Array.prototype.slice.call((el || document).querySelectorAll(sel)); };
  function esc(s) {
    return String(s === undefined || s === null ? '' : s).replace(/[&<>"']/g, function (c) {
      return { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c];
    });
  }
  function tid(s) { return String(s).replace(/[^A-Za-z0-9._-]/g, '_'); }
  function enc(s) { return encodeURIComponent(s); }
  function age(ts) {
    if (!ts) return '';
    var s = Math.max(0, Math.floor((Date.now() - Date.parse(ts)) / 1000));
    if (s < 120) return s + 's';
    var m = Math.floor(s / 60);
    if (m < 10) return m + 'm' + (s % 60 ? (s % 60) + 's' : '');
    if (m < 180) return m + 'm';
    var h = Math.floor(m / 60);
    if (h < 48) return h + 'h' + (h < 8 && m % 60 ? (m % 60) + 'm' : '');
    return Math.floor(h / 24) + 'd';
  }
  function plural(n, w) { return n + ' ' + w + (n === 1 ? '' : 's'); }

  // ---------- resources ----------
  var RES = {
    namespaces: { kind: 'Namespace', api: '/api/v1', apiVersion: 'v1', namespaced: false },
    nodes: { kind: 'Node', api: '/api/v1', apiVersion: 'v1', namespaced: false },
    pods: { kind: 'Pod', api: '/api/v1', apiVersion: 'v1', namespaced: true },
    deployments: { kind: 'Deployment', api: '/apis/apps/v1', apiVersion: 'apps/v1', namespaced: true },
    replicasets: { kind: 'ReplicaSet', api: '/apis/apps/v1', apiVersion: 'apps/v1', namespaced: true },
    services: { kind: 'Service', api: '/api/v1', apiVersion: 'v1', namespaced: true },
    configmaps: { kind: 'ConfigMap', api: '/api/v1', apiVersion: 'v1', namespaced: true },
    secrets: { kind: 'Secret', api: '/api/v1', apiVersion: 'v1', namespaced: true },
    events: { kind: 'Event', api: '/api/v1', apiVersion: 'v1', namespaced: true }
  };
  var KIND_TO_RES = {};
  Object.keys(RES).forEach(function (r) { KIND_TO_RES[RES[r].kind] = r; });
  function listPath(r) { return RES[r].api + '/' + r; }
  function objPath(r, ns, name) {
    return RES[r].api + (RES[r].namespaced ? '/namespaces/' + enc(ns) : '') + '/' + r + '/' + enc(name);
  }

  // ---------- API ----------
  function api(method, path, body, ctype) {
    var opt = { method: method, headers: { Accept: 'application/json' } };
    if (method !== 'GET') opt.headers['X-Minik-Dashboard'] = '1';
    if (body !== undefined) { opt.headers['Content-Type'] = ctype || 'application/json'; opt.body = JSON.stringify(body); }
    // relative URLs: the app also works behind a proxy that adds a path prefix
    return fetch('k8s' + path, opt).then(function (r) {
      return r.text().then(function (t) {
        var j = null;
        try { j = JSON.parse(t); } catch (e) { /* not JSON */ }
        if (!r.ok) {
          var err = new Error((j && j.message) || t || (r.status + ' ' + r.statusText));
          err.code = r.status;
          throw err;
        }
        return j;
      });
    });
  }
  function wsURL(path) {
    var u = new URL('k8s-ws' + path, location.href);
    u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
    return u.href;
  }
  function errorFrame(data) {
    try { return JSON.parse(new TextDecoder().decode(data)).error || {}; } catch (e) { return { message: 'unreadable error from the dashboard server' }; }
  }

  // ---------- informers: list, then watch ----------
  function Informer(res) {
    this.res = res; this.items = new Map(); this.rv = ''; this.synced = false;
    this.error = null; this.live = false; this.ws = null; this.backoff = 300; this.gen = 0;
  }
  Informer.prototype.key = function (o) { return (o.metadata.namespace || '') + '/' + o.metadata.name; };
  Informer.prototype.fix = function (o) {
    if (!o.kind) o.kind = RES[this.res].kind;
    if (!o.apiVersion) o.apiVersion = RES[this.res].apiVersion;
    return o;
  };
  Informer.prototype.list = function () {
    var self = this, gen = ++this.gen;
    marks.lists++;
    if (this.ws) { this.ws.onclose = null; this.ws.close(); this.ws = null; }
    this.live = false;
    api('GET', listPath(this.res)).then(function (r) {
      if (gen !== self.gen) return;
      var m = new Map();
      (r.items || []).forEach(function (o) { m.set(self.key(o), self.fix(o)); });
      self.items = m; self.rv = (r.metadata && r.metadata.resourceVersion) || '';
      self.synced = true; self.error = null;
      changed(self.res);
      self.watch(gen);
    }).catch(function (e) {
      if (gen !== self.gen) return;
      self.error = e.message; changed(self.res); self.retry(gen);
    });
  };
  Informer.prototype.retry = function (gen) {
    var self = this, d = this.backoff;
    this.backoff = Math.min(this.backoff * 2, 10000);
    setTimeout(function () { if (gen === self.gen) self.list(); }, d);
  };
  Informer.prototype.watch = function (gen) {
    var self = this, failed = false, opened = Date.now();
    var ws = new WebSocket(wsURL(listPath(this.res) + '?watch=1&allowWatchBookmarks=true&resourceVersion=' + enc(this.rv)));
    ws.binaryType = 'arraybuffer';
    this.ws = ws;
    ws.onopen = function () { if (gen === self.gen) { self.live = true; self.backoff = 300; changed(self.res); } };
    ws.onmessage = function (ev) {
      if (gen !== self.gen) return;
      if (typeof ev.data !== 'string') {
        var e = errorFrame(ev.data);
        failed = true; self.error = e.code === 410 ? null : e.message;
        if (e.code === 410) self.backoff = 50;
        return;
      }
      var evt;
      marks.lastEvent = Date.now();
      try { evt = JSON.parse(ev.data); } catch (x) { return; }
      if (self.apply(evt) === 'relist') { failed = true; }
    };
    ws.onclose = function () {
      if (gen !== self.gen) return;
      self.ws = null; self.live = false; changed(self.res);
      // a watch that ends normally is resumed from the last resourceVersion;
      // one that failed or ended at once is re-listed with back-off
      if (failed || Date.now() - opened < 1000) self.retry(gen);
      else self.watch(gen);
    };
  };
  Informer.prototype.apply = function (e) {
    var o = e.object || {};
    if (e.type === 'ERROR') {
      if (o.code === 410) { this.backoff = 50; this.error = null; } else { this.error = o.message || 'watch error'; }
      if (this.ws) this.ws.close();
      return 'relist';
    }
    if (o.metadata && o.metadata.resourceVersion) this.rv = o.metadata.resourceVersion;
    if (e.type === 'BOOKMARK') return;
    var k = this.key(o);
    if (e.type === 'DELETED') this.items.delete(k); else this.items.set(k, this.fix(o));
    changed(this.res);
  };
  Informer.prototype.all = function (ns) {
    var out = [];
    this.items.forEach(function (o) { if (!ns || o.metadata.namespace === ns) out.push(o); });
    return out;
  };
  Informer.prototype.get = function (ns, name) { return this.items.get((ns || '') + '/' + name); };

  var inf = {};
  Object.keys(RES).forEach(function (r) { inf[r] = new Informer(r); });

  // ---------- state ----------
  var state = {
    ns: localStorage.getItem('minik.ns') || '',
    filter: {},
    inputs: {},
    revealed: {},
    wrapLogs: localStorage.getItem('minik.wrap') === '1'
  };
  // counters and the informers, for tests and for curious users' consoles
  var marks = window.__minik = { changes: 0, renders: 0, lists: 0, inf: inf };

  var renderQueued = false;
  function changed() { marks.changes++; scheduleRender(); }
  // Renders soon after a change, but bursts of events (a re-list, a rollout)
  // are coalesced: at most one render per max(25 ms, 2 × the last render).
  var lastRender = 0;
  function scheduleRender() {
    if (renderQueued) return;
    renderQueued = true;
    var gap = Math.max(25, 2 * (marks.renderMs || 0));
    marks.nextDelay = Math.max(0, lastRender + gap - Date.now());
    setTimeout(function () { renderQueued = false; render(); }, marks.nextDelay);
  }

  // ---------- status logic ----------
  function podPhase(p) {
    var st = p.status || {}, reason = st.reason || st.phase || 'Pending', init = false, i;
    var ics = st.initContainerStatuses || [], nInit = ((p.spec || {}).initContainers || []).length;
    for (i = 0; i < ics.length; i++) {
      var ic = ics[i], t = (ic.state || {}).terminated, w = (ic.state || {}).waiting;
      if (t && t.exitCode === 0) continue;
      init = true;
      if (t) reason = 'Init:' + (t.reason || (t.signal ? 'Signal:' + t.signal : 'ExitCode:' + t.exitCode));
      else if (w && w.reason && w.reason !== 'PodInitializing') reason = 'Init:' + w.reason;
      else reason = 'Init:' + i + '/' + nInit;
      break;
    }
    if (!init) {
      var cs = st.containerStatuses || [], running = false;
      for (i = cs.length - 1; i >= 0; i--) {
        var c = cs[i], s = c.state || {};
        if (s.waiting && s.waiting.reason) reason = s.waiting.reason;
        else if (s.terminated && s.terminated.reason) reason = s.terminated.reason;
        else if (s.terminated) reason = s.terminated.signal ? 'Signal:' + s.terminated.signal : 'ExitCode:' + s.terminated.exitCode;
        else if (s.running && c.ready) running = true;
      }
      if (reason === 'Completed' && running) reason = 'Running';
    }
    if (p.metadata.deletionTimestamp) reason = st.reason === 'NodeLost' ? 'Unknown' : 'Terminating';
    return reason;
  }
  function podReady(p) {
    var cs = (p.status || {}).containerStatuses || [], n = ((p.spec || {}).containers || []).length;
    var r = cs.filter(function (c) { return c.ready; }).length;
    return { ready: r, total: Math.max(n, cs.length) };
  }
  function podRestarts(p) {
    return ((p.status || {}).containerStatuses || []).reduce(function (a, c) { return a + (c.restartCount || 0); }, 0);
  }
  var WARN_STATES = /^(Pending|ContainerCreating|PodInitializing|Terminating|Init:\d+\/\d+|Unknown)$/;
  function phaseClass(phase, rd) {
    if (phase === 'Running') return rd && rd.ready === rd.total ? 'ok' : 'warn';
    if (phase === 'Succeeded' || phase === 'Completed') return 'done';
    if (WARN_STATES.test(phase)) return 'warn';
    return 'err';
  }
  function badge(cls, text, testid) {
    return '<span class="badge ' + cls + '"' + (testid ? ' data-testid="' + esc(testid) + '"' : '') + '>' + esc(text) + '</span>';
  }
  // why a pod is not fine, in words
  function podProblem(p) {
    var phase = podPhase(p), rd = podReady(p), cls = phaseClass(phase, rd);
    if (cls === 'ok' || cls === 'done' || phase === 'Terminating') return null;
    var msgs = [], st = p.status || {};
    ((st.initContainerStatuses || []).concat(st.containerStatuses || [])).forEach(function (c) {
      var s = c.state || {};
      if (s.waiting && (s.waiting.message || s.waiting.reason)) msgs.push(c.name + ': ' + (s.waiting.message || s.waiting.reason));
      if (s.terminated && s.terminated.exitCode !== 0) msgs.push(c.name + ': exited with ' + s.terminated.exitCode + (s.terminated.message ? ' — ' + s.terminated.message : ''));
      if (s.running && !c.ready) msgs.push(c.name + ': running but not ready');
    });
    (st.conditions || []).forEach(function (c) {
      if (c.status === 'False' && c.message) msgs.push(c.type + ': ' + c.message);
    });
    if (st.message) msgs.push(st.message);
    if (!msgs.length) {
      if (phase !== 'Pending') msgs.push('not ready');
      else if (!(p.spec || {}).nodeName) msgs.push('not scheduled to a node yet');
      else msgs.push('scheduled to ' + p.spec.nodeName + ', waiting for the kubelet to start it');
    }
    if (phase === 'Running' && rd.ready < rd.total) phase = 'NotReady';
    return { cls: cls, phase: phase, why: msgs.join('; '), restarts: podRestarts(p) };
  }
  function deployStatus(d) {
    var want = (d.spec || {}).replicas, st = d.status || {};
    if (want === undefined) want = 1;
    var ready = st.readyReplicas || 0, avail = st.availableReplicas || 0;
    if (want === 0) return { cls: 'done', text: 'Scaled to 0', want: want, ready: ready, avail: avail };
    if (avail >= want && ready >= want) return { cls: 'ok', text: 'Available', want: want, ready: ready, avail: avail };
    var failed = (st.conditions || []).some(function (c) { return c.type === 'ReplicaFailure' && c.status === 'True'; });
    return { cls: failed ? 'err' : 'warn', text: failed ? 'Failing' : 'Progressing', want: want, ready: ready, avail: avail };
  }
  function nodeReady(n) {
    var c = ((n.status || {}).conditions || []).filter(function (c) { return c.type === 'Ready'; })[0];
    return c ? c.status === 'True' : false;
  }

  // quantities: "500m" cores, "8Gi" bytes
  var SUFFIX = { n: 1e-9, u: 1e-6, m: 1e-3, k: 1e3, K: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15, E: 1e18,
    Ki: 1024, Mi: Math.pow(1024, 2), Gi: Math.pow(1024, 3), Ti: Math.pow(1024, 4), Pi: Math.pow(1024, 5), Ei: Math.pow(1024, 6) };
  function qty(s) {
    if (s === undefined || s === null) return 0;
    var m = /^([+-]?[0-9.]+(?:[eE][+-]?\d+)?)([a-zA-Z]*)$/.exec(String(s).trim());
    if (!m) return 0;
    return parseFloat(m[1]) * (SUFFIX[m[2]] || 1);
  }
  function fmtBytes(b) {
    if (b >= Math.pow(1024, 3)) return (b / Math.pow(1024, 3)).toFixed(1) + ' GiB';
    if (b >= Math.pow(1024, 2)) return Math.round(b / Math.pow(1024, 2)) + ' MiB';
    if (b >= 1024) return Math.round(b / 1024) + ' KiB';
    return Math.round(b) + ' B';
  }
  function fmtCores(c) { return c >= 10 ? c.toFixed(0) : (Math.round(c * 100) / 100).toString(); }
  function podRequests(p) {
    var cpu = 0, mem = 0;
    ((p.spec || {}).containers || []).forEach(function (c) {
      var r = (c.resources || {}).requests || {};
      cpu += qty(r.cpu); mem += qty(r.memory);
    });
    return { cpu: cpu, mem: mem };
  }
  function activePod(p) { var ph = (p.status || {}).phase; return ph !== 'Succeeded' && ph !== 'Failed'; }

  // ---------- rendering primitives ----------
  function nsVisible() { return state.ns; }
  function showNsCol() { return !state.ns; }
  function byName(a, b) {
    var x = (a.metadata.namespace || '') + '/' + a.metadata.name, y = (b.metadata.namespace || '') + '/' + b.metadata.name;
    return x < y ? -1 : x > y ? 1 : 0;
  }
  function filtered(view, list) {
    var f = (state.filter[view] || '').toLowerCase();
    if (!f) return list;
    return list.filter(function (o) { return (o.metadata.namespace + '/' + o.metadata.name).toLowerCase().indexOf(f) >= 0; });
  }
  // FNV-1a of a row's HTML: unchanged rows are skipped when patching the DOM
  function hash(str) {
    var h = 0x811c9dc5;
    for (var i = 0; i < str.length; i++) { h ^= str.charCodeAt(i); h = Math.imul(h, 0x01000193); }
    return (h >>> 0).toString(36);
  }
  function table(testid, heads, rows, emptyText) {
    rows = rows.map(function (r) { return r.replace(/^<tr/, '<tr data-h="' + hash(r) + '"'); });
    if (!rows.length) return '<div class="card card-pad empty" data-testid="' + testid + '-empty">' + esc(emptyText || 'Nothing here.') + '</div>';
    return '<div class="table-wrap"><table data-testid="' + testid + '"><thead><tr>' + heads.map(function (h) {
      if (typeof h === 'string') return '<th>' + esc(h) + '</th>';
      return '<th class="' + (h.cls || '') + '">' + esc(h.t) + '</th>';
    }).join('') + '</tr></thead><tbody>' + rows.join('') + '</tbody></table></div>';
  }
  function informerError(res) {
    var i = inf[res];
    if (i.error) return '<div class="banner" data-testid="error-' + res + '">Cannot load ' + esc(res) + ': ' + esc(i.error) + '</div>';
    return '';
  }
  function notSynced(res) { return !inf[res].synced && !inf[res].error; }
  function actionsCell(res, o, extra) {
    var ns = o.metadata.namespace || '', name = o.metadata.name, k = RES[res].kind.toLowerCase();
    var id = tid(k + '-' + (ns ? ns + '-' : '') + name);
    return '<td class="actions">' + (extra || '') +
      '<button class="small" data-action="yaml" data-res="' + res + '" data-ns="' + esc(ns) + '" data-name="' + esc(name) + '" data-testid="yaml-' + id + '">YAML</button> ' +
      '<button class="small danger" data-action="delete" data-res="' + res + '" data-ns="' + esc(ns) + '" data-name="' + esc(name) + '" data-testid="delete-' + id + '">Delete</button></td>';
  }
  function nsCell(o) { return showNsCol() ? '<td class="nowrap muted hide-sm">' + esc(o.metadata.namespace) + '</td>' : ''; }
  function nsHead() { return showNsCol() ? [{ t: 'Namespace', cls: 'hide-sm' }] : []; }
  function nameCell(o, view) {
    var n = esc(o.metadata.name);
    return '<td class="name">' + (view ? '<a class="row-link" href="' + link(view, o) + '">' + n + '</a>' : n) + (showNsCol() && o.metadata.namespace ? '<div class="show-sm muted ns-sub">' + esc(o.metadata.namespace) + '</div>' : '') + '</td>';
  }
  function link(view, o) { return '#/' + view + '/' + enc(o.metadata.namespace || '_') + '/' + enc(o.metadata.name); }
  function listHead(title, view, sub) {
    return '<div class="page-head"><h1>' + esc(title) + (sub ? ' <span class="sub">' + sub + '</span>' : '') + '</h1>' +
      '<div class="toolbar"><input class="filter" type="search" placeholder="Filter by name" data-filter="' + view + '" data-testid="filter-' + view + '" value="' + esc(state.filter[view] || '') + '"></div></div>';
  }
  function scaleBox(d, big) {
    var sz = big ? '' : ' class="small"';
    var ns = d.metadata.namespace, name = d.metadata.name, id = tid(ns + '-' + name);
    var key = 'scale-input-' + id;
    var v = state.inputs[key] !== undefined ? state.inputs[key] : ((d.spec || {}).replicas !== undefined ? d.spec.replicas : 1);
    return '<span class="scale-box"><input class="num" type="number" min="0" max="1000" data-testid="' + key + '" data-input="' + key + '" value="' + esc(v) + '" aria-label="Replicas">' +
      '<button' + sz + ' data-action="scale" data-ns="' + esc(ns) + '" data-name="' + esc(name) + '" data-testid="scale-btn-' + id + '">Scale</button></span> ' +
      '<button' + sz + ' data-action="restart" data-ns="' + esc(ns) + '" data-name="' + esc(name) + '" data-testid="restart-' + id + '">Restart</button> ';
  }

  // ---------- rows ----------
  function podRow(p) {
    var ns = p.metadata.namespace, name = p.metadata.name, id = tid(ns + '-' + name);
    var phase = podPhase(p), rd = podReady(p), st = p.status || {}, cls = phaseClass(phase, rd);
    return '<tr data-href="' + link('pods', p) + '" data-testid="pod-row-' + id + '">' + nsCell(p) +
      nameCell(p, 'pods') +
      '<td>' + badge(cls, phase, 'pod-status-' + id) + '</td>' +
      '<td class="num">' + rd.ready + '/' + rd.total + '</td>' +
      '<td class="num" data-testid="pod-restarts-' + id + '">' + podRestarts(p) + '</td>' +
      '<td class="nowrap">' + age(p.metadata.creationTimestamp) + '</td>' +
      '<td class="nowrap hide-sm">' + esc((p.spec || {}).nodeName || '—') + '</td>' +
      '<td class="nowrap mono hide-sm">' + esc(st.podIP || '—') + '</td>' +
      actionsCell('pods', p) + '</tr>';
  }
  var POD_HEADS = function () { return nsHead().concat(['Name', 'Status', { t: 'Ready', cls: 'nowrap' }, 'Restarts', 'Age', { t: 'Node', cls: 'hide-sm' }, { t: 'IP', cls: 'hide-sm' }, '']); };
  function deployRow(d) {
    var ns = d.metadata.namespace, name = d.metadata.name, id = tid(ns + '-' + name), s = deployStatus(d), st = d.status || {};
    var images = ((((d.spec || {}).template || {}).spec || {}).containers || []).map(function (c) { return '<span class="tag">' + esc(c.image) + '</span>'; }).join(' ');
    return '<tr data-href="' + link('deployments', d) + '" data-testid="deployment-row-' + id + '">' + nsCell(d) +
      nameCell(d, 'deployments') +
      '<td>' + badge(s.cls, s.text, 'deployment-status-' + id) + '</td>' +
      '<td class="num" data-testid="deployment-ready-' + id + '">' + s.ready + '/' + s.want + '</td>' +
      '<td class="num hide-md">' + (st.updatedReplicas || 0) + '</td>' +
      '<td class="num hide-sm">' + s.avail + '</td>' +
      '<td class="nowrap">' + age(d.metadata.creationTimestamp) + '</td>' +
      '<td class="hide-md">' + images + '</td>' +
      actionsCell('deployments', d, scaleBox(d)) + '</tr>';
  }
  var DEPLOY_HEADS = function () { return nsHead().concat(['Name', 'Status', 'Ready', { t: 'Up-to-date', cls: 'hide-md' }, { t: 'Available', cls: 'hide-sm' }, 'Age', { t: 'Images', cls: 'hide-md' }, '']); };
  function rsRow(r) {
    var ns = r.metadata.namespace, name = r.metadata.name, id = tid(ns + '-' + name), st = r.status || {};
    var want = (r.spec || {}).replicas || 0, ready = st.readyReplicas || 0;
    var owner = (r.metadata.ownerReferences || [])[0];
    var cls = want === 0 ? 'done' : ready >= want ? 'ok' : 'warn';
    return '<tr data-href="' + link('replicasets', r) + '" data-testid="replicaset-row-' + id + '">' + nsCell(r) +
      nameCell(r, 'replicasets') +
      '<td>' + badge(cls, ready + '/' + want + ' ready') + '</td>' +
      '<td class="num">' + want + '</td><td class="num">' + (st.replicas || 0) + '</td><td class="num">' + ready + '</td>' +
      '<td class="nowrap">' + age(r.metadata.creationTimestamp) + '</td>' +
      '<td class="hide-sm">' + (owner ? esc(owner.kind + '/' + owner.name) : '<span class="muted">—</span>') + '</td>' +
      actionsCell('replicasets', r) + '</tr>';
  }
  var RS_HEADS = function () { return nsHead().concat(['Name', 'Status', 'Desired', 'Current', 'Ready', 'Age', { t: 'Owner', cls: 'hide-sm' }, '']); };
  function svcPorts(s) {
    return ((s.spec || {}).ports || []).map(function (p) {
      return '<span class="tag">' + esc(p.port + (p.nodePort ? ':' + p.nodePort : '') + '/' + (p.protocol || 'TCP')) + '</span>';
    }).join(' ');
  }
  function nodePortLinks(s) {
    var ns = s.metadata.namespace, name = s.metadata.name;
    var out = ((s.spec || {}).ports || []).filter(function (p) { return p.nodePort; }).map(function (p) {
      var url = 'http://' + location.hostname + ':' + p.nodePort;
      return '<a href="' + esc(url) + '" target="_blank" rel="noopener noreferrer" data-testid="nodeport-link-' + tid(ns + '-' + name + '-' + p.nodePort) + '">' + esc(location.hostname + ':' + p.nodePort) + '</a>';
    });
    return out.length ? out.join('<br>') : '<span class="muted">—</span>';
  }
  function svcRow(s) {
    var ns = s.metadata.namespace, name = s.metadata.name, id = tid(ns + '-' + name), sp = s.spec || {};
    var sel = Object.keys(sp.selector || {}).map(function (k) { return '<span class="tag">' + esc(k + '=' + sp.selector[k]) + '</span>'; }).join(' ');
    return '<tr data-href="' + link('services', s) + '" data-testid="service-row-' + id + '">' + nsCell(s) +
      nameCell(s, 'services') +
      '<td>' + badge('plain done', sp.type || 'ClusterIP') + '</td>' +
      '<td class="mono nowrap">' + esc(sp.clusterIP || '—') + '</td>' +
      '<td>' + svcPorts(s) + '</td>' +
      '<td class="nowrap">' + nodePortLinks(s) + '</td>' +
      '<td class="hide-sm">' + (sel || '<span class="muted">—</span>') + '</td>' +
      '<td class="nowrap">' + age(s.metadata.creationTimestamp) + '</td>' +
      actionsCell('services', s) + '</tr>';
  }
  var SVC_HEADS = function () { return nsHead().concat(['Name', 'Type', 'Cluster IP', 'Ports', 'Open', { t: 'Selector', cls: 'hide-sm' }, 'Age', '']); };
  function cmRow(c) {
    var ns = c.metadata.namespace, name = c.metadata.name, id = tid(ns + '-' + name);
    var keys = Object.keys(c.data || {}).concat(Object.keys(c.binaryData || {}));
    return '<tr data-href="' + link('configmaps', c) + '" data-testid="configmap-row-' + id + '">' + nsCell(c) +
      nameCell(c, 'configmaps') + '<td class="num">' + keys.length + '</td>' +
      '<td class="hide-sm">' + keys.slice(0, 6).map(function (k) { return '<span class="tag">' + esc(k) + '</span>'; }).join(' ') + (keys.length > 6 ? ' …' : '') + '</td>' +
      '<td class="nowrap">' + age(c.metadata.creationTimestamp) + '</td>' + actionsCell('configmaps', c) + '</tr>';
  }
  function secretRow(s) {
    var ns = s.metadata.namespace, name = s.metadata.name, id = tid(ns + '-' + name);
    var keys = Object.keys(s.data || {});
    return '<tr data-href="' + link('secrets', s) + '" data-testid="secret-row-' + id + '">' + nsCell(s) +
      nameCell(s, 'secrets') + '<td class="mono hide-sm">' + esc(s.type || 'Opaque') + '</td><td class="num">' + keys.length + '</td>' +
      '<td class="nowrap">' + age(s.metadata.creationTimestamp) + '</td>' + actionsCell('secrets', s) + '</tr>';
  }
  function evTime(e) {
    return e.lastTimestamp || (e.series && e.series.lastObservedTime) || e.eventTime || e.firstTimestamp || e.metadata.creationTimestamp || '';
  }
  function evRow(e) {
    var ns = e.metadata.namespace, io = e.involvedObject || e.regarding || {}, warn = e.type === 'Warning';
    var r = KIND_TO_RES[io.kind], obj = esc((io.kind || '') + '/' + (io.name || ''));
    var target = r && RES[r].namespaced && (r === 'pods' || r === 'deployments' || r === 'configmaps' || r === 'secrets' || r === 'services' || r === 'replicasets')
      ? '<a href="#/' + r + '/' + enc(io.namespace || ns) + '/' + enc(io.name) + '">' + obj + '</a>' : obj;
    return '<tr class="' + (warn ? 'warn-row' : '') + '" data-testid="event-row-' + tid(ns + '-' + e.metadata.name) + '">' + nsCell(e) +
      '<td>' + badge(warn ? 'warn' : 'done', e.type || 'Normal') + '</td>' +
      '<td class="nowrap"><b>' + esc(e.reason) + '</b></td>' +
      '<td class="nowrap">' + target + '</td>' +
      '<td class="msg">' + esc(e.message || e.note) + '</td>' +
      '<td class="num hide-sm">' + (e.count || (e.series && e.series.count) || 1) + '</td>' +
      '<td class="nowrap">' + age(evTime(e)) + '</td></tr>';
  }
  var EV_HEADS = function () { return nsHead().concat(['Type', 'Reason', 'Object', 'Message', { t: 'Count', cls: 'hide-sm' }, 'Last seen']); };
  function eventsSorted(list) {
    return list.sort(function (a, b) { var x = evTime(a), y = evTime(b); return x < y ? 1 : x > y ? -1 : 0; });
  }
  function eventsFor(kind, ns, name, uid) {
    return eventsSorted(inf.events.all(ns).filter(function (e) {
      var io = e.involvedObject || e.regarding || {};
      return (uid && io.uid === uid) || (io.kind === kind && io.name === name);
    }));
  }

  // ---------- views ----------
  var views = {};

  views.overview = {
    shell: function () {
      return '<div data-testid="overview"><div class="page-head"><h1>Cluster overview <span class="sub">' + (state.ns ? 'namespace ' + esc(state.ns) : 'all namespaces') + '</span></h1></div><div id="live"></div></div>';
    },
    live: function () {
      var ns = nsVisible(), pods = inf.pods.all(ns), deps = inf.deployments.all(ns), svcs = inf.services.all(ns);
      var nodes = inf.nodes.all().sort(byName);
      var problems = [];
      nodes.forEach(function (n) {
        if (!nodeReady(n)) problems.push({ cls: 'err', what: 'Node ' + n.metadata.name, badge: 'NotReady', why: ((n.status.conditions || []).filter(function (c) { return c.type === 'Ready'; })[0] || {}).message || 'the node has not reported Ready', href: '#/nodes', id: 'node-' + n.metadata.name });
      });
      pods.forEach(function (p) {
        var pr = podProblem(p);
        if (pr) problems.push({ cls: pr.cls, what: 'Pod ' + p.metadata.namespace + '/' + p.metadata.name, badge: pr.phase, why: pr.why + (pr.restarts ? ' (' + plural(pr.restarts, 'restart') + ')' : ''), href: link('pods', p), id: p.metadata.namespace + '-' + p.metadata.name });
      });
      deps.forEach(function (d) {
        var s = deployStatus(d);
        if (s.cls === 'err' || (s.cls === 'warn' && Date.now() - Date.parse(d.metadata.creationTimestamp) > 0)) {
          problems.push({ cls: s.cls, what: 'Deployment ' + d.metadata.namespace + '/' + d.metadata.name, badge: s.text, why: s.avail + ' of ' + s.want + ' replicas available', href: link('deployments', d), id: 'deploy-' + d.metadata.namespace + '-' + d.metadata.name });
        }
      });
      problems.sort(function (a, b) { return (a.cls === 'err' ? 0 : 1) - (b.cls === 'err' ? 0 : 1); });
      var out = '';
      var loading = notSynced('pods') || notSynced('nodes');
      if (loading) out += '<div class="card card-pad loading">Loading the cluster state…</div>';
      else if (problems.length) {
        out += '<div class="card problems" data-testid="problems"><div class="problems-title">' + badge('err', plural(problems.length, 'problem')) + ' <span>Needs attention</span></div>' +
          problems.slice(0, 50).map(function (p) {
            return '<div class="problem" data-testid="problem-row-' + tid(p.id) + '"><a class="what" href="' + p.href + '">' + esc(p.what) + '</a>' + badge(p.cls, p.badge) + '<div class="why">' + esc(p.why) + '</div></div>';
          }).join('') + (problems.length > 50 ? '<div class="problem muted">… and ' + (problems.length - 50) + ' more</div>' : '') + '</div>';
      } else {
        out += '<div class="card problems none" data-testid="problems"><div class="problems-title">' + badge('ok', 'Healthy') + ' <span>No problems: every pod is running and ready.</span></div></div>';
      }
      // counts
      var running = pods.filter(function (p) { return podPhase(p) === 'Running'; }).length;
      var failing = pods.filter(function (p) { var c = phaseClass(podPhase(p), podReady(p)); return c === 'err'; }).length;
      var depsOk = deps.filter(function (d) { return deployStatus(d).cls === 'ok'; }).length;
      var np = svcs.filter(function (s) { return s.spec && (s.spec.type === 'NodePort' || s.spec.type === 'LoadBalancer'); }).length;
      function stat(id, label, value, detail, href) {
        return '<a class="card stat" href="' + href + '" data-testid="count-' + id + '"><div class="label">' + esc(label) + '</div><div class="value">' + value + '</div><div class="detail">' + detail + '</div></a>';
      }
      out += '<h2>Workloads</h2><div class="grid stats">' +
        stat('deployments', 'Deployments', deps.length, depsOk + ' available', '#/deployments') +
        stat('pods', 'Pods', pods.length, running + ' running' + (failing ? ', <span class="err-text">' + failing + ' failing</span>' : ''), '#/pods') +
        stat('services', 'Services', svcs.length, np ? np + ' exposed on node ports' : 'cluster-internal', '#/services') +
        stat('namespaces', 'Namespaces', inf.namespaces.all().length, 'configmaps ' + inf.configmaps.all(ns).length + ' · secrets ' + inf.secrets.all(ns).length, '#/configmaps') +
        '</div>';
      // nodes
      out += '<h2>Nodes</h2>' + informerError('nodes') + (nodes.length ? '<div class="grid nodes">' + nodes.map(nodeCard).join('') + '</div>' : '<div class="card card-pad empty" data-testid="no-nodes">No node has registered yet (the kubelet registers it at start).</div>');
      // warnings
      var warns = eventsSorted(inf.events.all(ns).filter(function (e) { return e.type === 'Warning'; })).slice(0, 8);
      if (warns.length) out += '<h2>Recent warnings</h2>' + table('overview-warnings', EV_HEADS(), warns.map(evRow));
      return out;
    }
  };
  function meter(label, used, total, fmt) {
    var pct = total > 0 ? Math.min(100, (used / total) * 100) : 0;
    return '<div class="meter"><div class="meter-top"><span>' + esc(label) + '</span><span>' + esc(fmt(used)) + ' / ' + esc(fmt(total)) + ' (' + Math.round(pct) + '%)</span></div>' +
      '<div class="bar' + (pct >= 95 ? ' full' : pct >= 75 ? ' hi' : '') + '"><div style="width:' + pct.toFixed(1) + '%"></div></div></div>';
  }
  function nodeCard(n) {
    var st = n.status || {}, alloc = st.allocatable || st.capacity || {}, cap = st.capacity || {}, info = st.nodeInfo || {};
    var pods = inf.pods.all().filter(function (p) { return (p.spec || {}).nodeName === n.metadata.name && activePod(p); });
    var req = pods.reduce(function (a, p) { var r = podRequests(p); a.cpu += r.cpu; a.mem += r.mem; return a; }, { cpu: 0, mem: 0 });
    var ip = ((st.addresses || []).filter(function (a) { return a.type === 'InternalIP'; })[0] || {}).address;
    var ready = nodeReady(n);
    var chips = (st.conditions || []).filter(function (c) { return c.type !== 'Ready' && c.status === 'True'; }).map(function (c) { return badge('err', c.type); }).join('');
    return '<div class="card card-pad" data-testid="node-card-' + tid(n.metadata.name) + '"><div class="node-head"><span class="name">' + esc(n.metadata.name) + '</span>' + badge(ready ? 'ok' : 'err', ready ? 'Ready' : 'NotReady') + '</div>' +
      '<div class="node-meta">' + esc([ip, info.kubeletVersion, info.osImage, info.containerRuntimeVersion].filter(Boolean).join(' · ')) + ' · up ' + age(n.metadata.creationTimestamp) + '</div>' +
      meter('CPU requested', req.cpu, qty(alloc.cpu), function (v) { return fmtCores(v) + (v === qty(alloc.cpu) ? ' cores' : ''); }) +
      meter('Memory requested', req.mem, qty(alloc.memory), fmtBytes) +
      meter('Pods', pods.length, qty(alloc.pods || cap.pods), function (v) { return String(Math.round(v)); }) +
      (chips ? '<div class="chips">' + chips + '</div>' : '') + '</div>';
  }

  views.nodes = {
    shell: function () { return '<div class="page-head"><h1>Nodes</h1></div><div id="live"></div>'; },
    live: function () {
      var nodes = inf.nodes.all().sort(byName);
      var rows = nodes.map(function (n) {
        var st = n.status || {}, info = st.nodeInfo || {}, cap = st.capacity || {};
        var ip = ((st.addresses || []).filter(function (a) { return a.type === 'InternalIP'; })[0] || {}).address;
        return '<tr data-testid="node-row-' + tid(n.metadata.name) + '"><td class="name">' + esc(n.metadata.name) + '</td><td>' + badge(nodeReady(n) ? 'ok' : 'err', nodeReady(n) ? 'Ready' : 'NotReady') + '</td>' +
          '<td class="mono">' + esc(ip || '—') + '</td><td>' + esc(info.kubeletVersion || '') + '</td><td class="num">' + esc(cap.cpu || '') + '</td><td class="num">' + esc(cap.memory ? fmtBytes(qty(cap.memory)) : '') + '</td><td class="num">' + esc(cap.pods || '') + '</td>' +
          '<td class="nowrap">' + age(n.metadata.creationTimestamp) + '</td>' + actionsCell('nodes', n) + '</tr>';
      });
      return informerError('nodes') + (nodes.length ? '<div class="grid nodes">' + nodes.map(nodeCard).join('') + '</div><h2>Details</h2>' : '') +
        table('nodes-table', ['Name', 'Status', 'Internal IP', 'Kubelet', 'CPU', 'Memory', 'Pods', 'Age', ''], rows, notSynced('nodes') ? 'Loading…' : 'No nodes registered yet.');
    }
  };

  function listView(view, title, res, row, heads, sort) {
    views[view] = {
      shell: function () { return '<div data-testid="' + view + '-page">' + listHead(title, view) + '<div id="live"></div></div>'; },
      live: function () {
        var list = filtered(view, inf[res].all(nsVisible()));
        list = sort ? sort(list) : list.sort(byName);
        var more = '';
        if (view === 'events' && list.length > 500) { more = '<div class="muted" style="padding:8px 2px">Showing the newest 500 of ' + list.length + ' events.</div>'; list = list.slice(0, 500); }
        return informerError(res) + table(view + '-table', heads(), list.map(row), notSynced(res) ? 'Loading…' : 'No ' + title.toLowerCase() + (state.ns ? ' in namespace ' + state.ns : '') + '.') + more;
      }
    };
  }
  listView('deployments', 'Deployments', 'deployments', deployRow, DEPLOY_HEADS);
  listView('replicasets', 'ReplicaSets', 'replicasets', rsRow, RS_HEADS);
  listView('pods', 'Pods', 'pods', podRow, POD_HEADS);
  listView('services', 'Services', 'services', svcRow, SVC_HEADS);
  listView('configmaps', 'ConfigMaps', 'configmaps', cmRow, function () { return nsHead().concat(['Name', 'Keys', { t: 'Data', cls: 'hide-sm' }, 'Age', '']); });
  listView('secrets', 'Secrets', 'secrets', secretRow, function () { return nsHead().concat(['Name', { t: 'Type', cls: 'hide-sm' }, 'Keys', 'Age', '']); });
  listView('events', 'Events', 'events', evRow, EV_HEADS, eventsSorted);

  // ---------- detail pages ----------
  function infoGrid(pairs) {
    return '<div class="card card-pad"><div class="info">' + pairs.filter(function (p) { return p; }).map(function (p) {
      return '<div><div class="k">' + esc(p[0]) + '</div><div class="v">' + (p[2] ? p[1] : esc(p[1] === undefined || p[1] === '' ? '—' : p[1])) + '</div></div>';
    }).join('') + '</div></div>';
  }
  function tags(m) {
    var ks = Object.keys(m || {});
    return ks.length ? ks.map(function (k) { return '<span class="tag">' + esc(k + '=' + m[k]) + '</span>'; }).join(' ') : '<span class="muted">—</span>';
  }
  function detailHead(res, o, badgeHtml, extra) {
    var ns = o.metadata.namespace || '', name = o.metadata.name, k = RES[res].kind, id = tid(k.toLowerCase() + '-' + (ns ? ns + '-' : '') + name);
    return '<div class="crumbs"><a href="#/' + res + '">' + esc(k === 'ReplicaSet' ? 'ReplicaSets' : k + 's') + '</a>' + (ns ? ' / ' + esc(ns) : '') + '</div>' +
      '<div class="page-head"><h1 data-testid="detail-name">' + esc(name) + ' ' + (badgeHtml || '') + '</h1><div class="toolbar">' + (extra || '') +
      '<button data-action="yaml" data-res="' + res + '" data-ns="' + esc(ns) + '" data-name="' + esc(name) + '" data-testid="yaml-' + id + '">YAML</button>' +
      '<button class="danger" data-action="delete" data-res="' + res + '" data-ns="' + esc(ns) + '" data-name="' + esc(name) + '" data-testid="delete-' + id + '">Delete</button></div></div>';
  }
  function gone(res, ns, name) {
    if (!inf[res].synced) return '<div class="loading">Loading…</div>';
    return '<div class="card card-pad empty" data-testid="not-found">' + esc(RES[res].kind) + ' ' + esc(ns + '/' + name) + ' does not exist (any more). <a href="#/' + res + '">Back to the list</a></div>';
  }
  function condTable(testid, conds) {
    return table(testid, ['Type', 'Status', 'Reason', 'Message', 'Changed'], (conds || []).map(function (c) {
      return '<tr><td class="nowrap"><b>' + esc(c.type) + '</b></td><td>' + badge(c.status === 'True' ? 'ok' : c.status === 'False' ? 'warn' : 'done', c.status) + '</td><td>' + esc(c.reason || '') + '</td><td class="msg">' + esc(c.message || '') + '</td><td class="nowrap">' + age(c.lastTransitionTime) + '</td></tr>';
    }), 'No conditions reported.');
  }
  function evSection(kind, o) {
    var evs = eventsFor(kind, o.metadata.namespace, o.metadata.name, o.metadata.uid);
    return '<h2>Events</h2>' + table('detail-events', EV_HEADS(), evs.slice(0, 50).map(evRow), 'No events.');
  }

  views.pod = {
    shell: function (rt) {
      return '<div data-testid="pod-detail"><div id="live"></div><div id="log-section"><h2>Logs</h2><div class="card log-card"><div class="log-bar">' +
        '<span><select data-testid="log-container" id="log-container"></select> <span class="log-status" id="log-status" data-testid="log-status">Connecting…</span></span>' +
        '<span class="toolbar"><label class="muted"><input type="checkbox" id="log-wrap"' + (state.wrapLogs ? ' checked' : '') + '> Wrap</label>' +
        '<button class="small" id="log-clear" data-testid="log-clear">Clear</button><button class="small" id="log-reconnect" data-testid="log-reconnect">Reconnect</button></span></div>' +
        '<pre class="log' + (state.wrapLogs ? ' wrap' : '') + '" id="log" data-testid="log-view"><span class="placeholder">Waiting for log lines…</span></pre></div></div><div id="live2"></div></div>';
    },
    mount: function (rt) { logs.open(rt.ns, rt.name, null); },
    unmount: function () { logs.close(); },
    live: function (rt) {
      var p = inf.pods.get(rt.ns, rt.name);
      var sec = $('#log-section');
      if (sec) sec.style.display = p ? '' : 'none';
      if (!p) return { live: gone('pods', rt.ns, rt.name), live2: '' };
      logs.containers(p);
      var phase = podPhase(p), rd = podReady(p), st = p.status || {}, sp = p.spec || {};
      var owner = (p.metadata.ownerReferences || [])[0], ownerHtml = '—';
      if (owner) {
        var r = KIND_TO_RES[owner.kind];
        ownerHtml = r ? '<a href="#/' + r + '/' + enc(p.metadata.namespace) + '/' + enc(owner.name) + '">' + esc(owner.kind + '/' + owner.name) + '</a>' : esc(owner.kind + '/' + owner.name);
      }
      var statuses = {};
      (st.containerStatuses || []).concat(st.initContainerStatuses || []).forEach(function (c) { statuses[c.name] = c; });
      var crow = function (c, init) {
        var s = statuses[c.name] || {}, state_ = s.state || {}, text = 'Waiting', cls = 'warn', detail = '';
        if (state_.running) { text = 'Running'; cls = s.ready ? 'ok' : 'warn'; detail = 'since ' + age(state_.running.startedAt); }
        else if (state_.terminated) { text = state_.terminated.reason || 'Terminated'; cls = state_.terminated.exitCode === 0 ? 'done' : 'err'; detail = 'exit code ' + state_.terminated.exitCode + (state_.terminated.message ? ': ' + state_.terminated.message : ''); }
        else if (state_.waiting) { text = state_.waiting.reason || 'Waiting'; cls = phaseClass(text); detail = state_.waiting.message || ''; }
        var ports = (c.ports || []).map(function (pt) { return '<span class="tag">' + esc(pt.containerPort + '/' + (pt.protocol || 'TCP')) + '</span>'; }).join(' ');
        return '<tr data-testid="container-row-' + tid(c.name) + '"><td class="name">' + esc(c.name) + (init ? ' <span class="muted">(init)</span>' : '') + '</td><td><span class="tag">' + esc(c.image) + '</span></td>' +
          '<td>' + badge(cls, text) + (detail ? '<div class="muted">' + esc(detail) + '</div>' : '') + '</td><td>' + (s.ready ? 'yes' : 'no') + '</td><td class="num">' + (s.restartCount || 0) + '</td><td>' + (ports || '<span class="muted">—</span>') + '</td></tr>';
      };
      var crows = (sp.initContainers || []).map(function (c) { return crow(c, true); }).concat((sp.containers || []).map(function (c) { return crow(c, false); }));
      var top = detailHead('pods', p, badge(phaseClass(phase, rd), phase, 'pod-detail-status')) +
        infoGrid([['Namespace', p.metadata.namespace], ['Node', sp.nodeName], ['Pod IP', st.podIP], ['Host IP', st.hostIP],
          ['Ready', rd.ready + '/' + rd.total], ['Restarts', String(podRestarts(p))], ['Started', st.startTime ? age(st.startTime) + ' ago' : ''],
          ['QoS class', st.qosClass], ['Controlled by', ownerHtml, true], ['Labels', tags(p.metadata.labels), true]]) +
        '<h2>Containers</h2>' + table('containers-table', ['Name', 'Image', 'State', 'Ready', 'Restarts', 'Ports'], crows);
      return { live: top, live2: '<h2>Conditions</h2>' + condTable('pod-conditions', st.conditions) + evSection('Pod', p) };
    }
  };

  views.deployment = {
    shell: function () { return '<div data-testid="deployment-detail"><div id="live"></div></div>'; },
    live: function (rt) {
      var d = inf.deployments.get(rt.ns, rt.name);
      if (!d) return gone('deployments', rt.ns, rt.name);
      var s = deployStatus(d), st = d.status || {}, sp = d.spec || {}, uid = d.metadata.uid;
      var rss = inf.replicasets.all(rt.ns).filter(function (r) { return (r.metadata.ownerReferences || []).some(function (o) { return o.uid === uid; }); });
      var rsUids = {};
      rss.forEach(function (r) { rsUids[r.metadata.uid] = true; });
      var sel = (sp.selector || {}).matchLabels || {};
      var pods = inf.pods.all(rt.ns).filter(function (p) {
        var own = (p.metadata.ownerReferences || []).some(function (o) { return rsUids[o.uid]; });
        if (own) return true;
        var l = p.metadata.labels || {}, ks = Object.keys(sel);
        return ks.length > 0 && !(p.metadata.ownerReferences || []).length && ks.every(function (k) { return l[k] === sel[k]; });
      }).sort(byName);
      var images = (((sp.template || {}).spec || {}).containers || []).map(function (c) { return '<span class="tag">' + esc(c.image) + '</span>'; }).join(' ');
      var save = state.ns; state.ns = rt.ns; // no namespace column inside one object
      var html = detailHead('deployments', d, badge(s.cls, s.text, 'deployment-detail-status'), scaleBox(d, true)) +
        infoGrid([['Namespace', d.metadata.namespace], ['Replicas', s.ready + ' ready / ' + s.want + ' desired'], ['Up-to-date', String(st.updatedReplicas || 0)], ['Available', String(s.avail)],
          ['Strategy', (sp.strategy || {}).type || 'RollingUpdate'], ['Selector', tags(sel), true], ['Images', images, true], ['Created', age(d.metadata.creationTimestamp) + ' ago']]) +
        '<h2>Pods</h2>' + table('deployment-pods', POD_HEADS(), pods.map(podRow), 'No pods yet (the controller creates them from the ReplicaSet).') +
        '<h2>ReplicaSets</h2>' + table('deployment-replicasets', RS_HEADS(), rss.sort(byName).map(rsRow), 'No ReplicaSets yet.') +
        '<h2>Conditions</h2>' + condTable('deployment-conditions', st.conditions) + evSection('Deployment', d);
      state.ns = save;
      return html;
    }
  };

  function decodeB64(v) {
    var bin;
    try { bin = atob(v); } catch (e) { return { text: null, note: 'not valid base64' }; }
    var bytes = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    try { return { text: new TextDecoder('utf-8', { fatal: true }).decode(bytes) }; } catch (e) { return { text: null, note: 'binary, ' + bytes.length + ' bytes' }; }
  }
  views.secret = {
    shell: function () { return '<div data-testid="secret-detail"><div id="live"></div></div>'; },
    live: function (rt) {
      var s = inf.secrets.get(rt.ns, rt.name);
      if (!s) return gone('secrets', rt.ns, rt.name);
      var data = s.data || {}, base = rt.ns + '/' + rt.name + '/';
      var rows = Object.keys(data).sort().map(function (k) {
        var shown = state.revealed[base + k], val;
        if (shown) {
          var d = decodeB64(data[k]);
          val = d.text !== null ? '<pre data-testid="secret-value-' + tid(k) + '">' + esc(d.text) + '</pre>' : '<span class="muted" data-testid="secret-value-' + tid(k) + '">(' + esc(d.note) + ')</span>';
        } else {
          val = '<span class="secret-hidden" data-testid="secret-value-' + tid(k) + '">••••••••</span>';
        }
        var size = Math.floor(data[k].length * 3 / 4) - (/==$/.test(data[k]) ? 2 : /=$/.test(data[k]) ? 1 : 0);
        return '<tr><td class="key">' + esc(k) + '<div class="muted">' + size + ' bytes</div></td><td>' + val + '</td><td class="actions"><button class="small" data-action="reveal" data-key="' + esc(base + k) + '" data-testid="secret-reveal-' + tid(k) + '">' + (shown ? 'Hide' : 'Reveal') + '</button></td></tr>';
      });
      return detailHead('secrets', s, badge('plain done', s.type || 'Opaque')) +
        infoGrid([['Namespace', s.metadata.namespace], ['Type', s.type || 'Opaque'], ['Keys', String(rows.length)], ['Created', age(s.metadata.creationTimestamp) + ' ago'], ['Labels', tags(s.metadata.labels), true]]) +
        '<h2>Data <span class="muted" style="font-weight:400;font-size:13px">values are hidden until you reveal them</span></h2>' +
        (rows.length ? '<div class="table-wrap"><table class="kv" data-testid="secret-data">' + rows.join('') + '</table></div>' : '<div class="card card-pad empty">No data.</div>');
    }
  };
  views.configmap = {
    shell: function () { return '<div data-testid="configmap-detail"><div id="live"></div></div>'; },
    live: function (rt) {
      var c = inf.configmaps.get(rt.ns, rt.name);
      if (!c) return gone('configmaps', rt.ns, rt.name);
      var rows = Object.keys(c.data || {}).sort().map(function (k) {
        return '<tr><td class="key">' + esc(k) + '</td><td><pre data-testid="configmap-value-' + tid(k) + '">' + esc(c.data[k]) + '</pre></td></tr>';
      }).concat(Object.keys(c.binaryData || {}).sort().map(function (k) {
        return '<tr><td class="key">' + esc(k) + '</td><td class="muted">(binary data)</td></tr>';
      }));
      return detailHead('configmaps', c) +
        infoGrid([['Namespace', c.metadata.namespace], ['Keys', String(rows.length)], ['Created', age(c.metadata.creationTimestamp) + ' ago'], ['Labels', tags(c.metadata.labels), true]]) +
        '<h2>Data</h2>' + (rows.length ? '<div class="table-wrap"><table class="kv" data-testid="configmap-data">' + rows.join('') + '</table></div>' : '<div class="card card-pad empty">No data.</div>');
    }
  };
  // services, replicasets, nodes: a generic page with the object as YAML
  function genericDetail(res) {
    return {
      shell: function () { return '<div data-testid="' + RES[res].kind.toLowerCase() + '-detail"><div id="live"></div></div>'; },
      live: function (rt) {
        var o = inf[res].get(RES[res].namespaced ? rt.ns : '', rt.name);
        if (!o) return gone(res, rt.ns, rt.name);
        var extra = '';
        if (res === 'services') extra = '<h2>Open</h2><div class="card card-pad">' + nodePortLinks(o) + '</div>';
        return detailHead(res, o) + infoGrid([['Namespace', o.metadata.namespace], ['Created', age(o.metadata.creationTimestamp) + ' ago'], ['Labels', tags(o.metadata.labels), true]]) + extra +
          '<h2>Object</h2><div class="card card-pad"><pre class="yaml">' + yamlHtml(o) + '</pre></div>' + evSection(RES[res].kind, o);
      }
    };
  }
  views.service = genericDetail('services');
  views.replicaset = genericDetail('replicasets');

  // ---------- logs (one WebSocket per open pod page) ----------
  var logs = {
    ws: null, ns: null, name: null, container: null, lines: 0, known: '', timer: null,
    open: function (ns, name, container) {
      this.close();
      this.ns = ns; this.name = name; this.container = container;
      var pre = $('#log'), status = $('#log-status');
      if (!pre) return;
      var self = this, got = false, failed = false;
      var q = '?follow=true&tailLines=200' + (container ? '&container=' + enc(container) : '');
      var ws = new WebSocket(wsURL('/api/v1/namespaces/' + enc(ns) + '/pods/' + enc(name) + '/log' + q));
      ws.binaryType = 'arraybuffer';
      this.ws = ws;
      status.className = 'log-status'; status.textContent = 'Connecting…';
      ws.onopen = function () { status.className = 'log-status live'; status.textContent = 'Streaming'; };
      ws.onmessage = function (ev) {
        if (self.ws !== ws) return;
        if (typeof ev.data !== 'string') {
          failed = true;
          var e = errorFrame(ev.data);
          status.className = 'log-status err-text';
          status.textContent = 'No log yet: ' + (e.message || 'error ' + e.code) + ' — retrying';
          return;
        }
        if (!got) { pre.textContent = ''; got = true; }
        var atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
        pre.appendChild(document.createTextNode(ev.data + '\n'));
        self.lines++;
        if (self.lines > 5000 && pre.firstChild) { pre.removeChild(pre.firstChild); self.lines--; }
        if (atBottom) pre.scrollTop = pre.scrollHeight;
      };
      ws.onclose = function () {
        if (self.ws !== ws) return;
        self.ws = null;
        if (failed && !got) {
          self.timer = setTimeout(function () { if (self.ns === ns && self.name === name) self.open(ns, name, self.container); }, 3000);
        } else if (!failed) {
          status.className = 'log-status'; status.textContent = 'Stream ended (the container stopped or the connection closed).';
        }
      };
    },
    close: function () {
      if (this.timer) { clearTimeout(this.timer); this.timer = null; }
      if (this.ws) { var w = this.ws; this.ws = null; w.close(); }
      this.lines = 0; this.known = '';
    },
    containers: function (p) {
      var names = ((p.spec || {}).containers || []).map(function (c) { return c.name; }).concat(((p.spec || {}).initContainers || []).map(function (c) { return c.name + ' (init)'; }));
      var k = names.join('|');
      var sel = $('#log-container');
      if (!sel || k === this.known) return;
      this.known = k;
      var cur = this.container || names[0];
      sel.innerHTML = names.map(function (n) { var v = n.replace(/ \(init\)$/, ''); return '<option value="' + esc(v) + '"' + (v === cur ? ' selected' : '') + '>' + esc(n) + '</option>'; }).join('');
      sel.style.display = names.length > 1 ? '' : 'none';
    }
  };

  // ---------- YAML ----------
  // kubectl's order: apiVersion, kind, metadata first, status last
  function cleanForYaml(o) {
    var c = JSON.parse(JSON.stringify(o)), out = {};
    if (c.metadata) delete c.metadata.managedFields;
    ['apiVersion', 'kind', 'metadata'].forEach(function (k) { if (k in c) out[k] = c[k]; });
    Object.keys(c).forEach(function (k) { if (!(k in out) && k !== 'status') out[k] = c[k]; });
    if ('status' in c) out.status = c.status;
    return out;
  }
  function yamlHtml(o) {
    return YAML.stringify(cleanForYaml(o)).split('\n').map(function (line) {
      var m = /^(\s*(?:- )?)([^:\s][^:]*?|"[^"]*")(:)(\s.*|$)/.exec(line);
      if (!m) return esc(line);
      var v = m[4], vs = v.trim(), vcls = /^(true|false|null|-?\d[\d.e+-]*)$/.test(vs) ? 'yn' : vs ? 'ys' : '';
      return esc(m[1]) + '<span class="yk">' + esc(m[2]) + '</span>:' + (vcls ? ' <span class="' + vcls + '">' + esc(vs) + '</span>' : esc(v));
    }).join('\n');
  }

  // ---------- modals and toasts ----------
  function modal(html, wide) {
    closeModal();
    var root = $('#modal-root');
    root.innerHTML = '<div class="overlay" data-testid="modal-overlay"><div class="modal' + (wide ? ' wide' : '') + '" role="dialog" aria-modal="true">' + html + '</div></div>';
    var ov = root.firstChild;
    ov.addEventListener('click', function (e) { if (e.target === ov) closeModal(); });
    return ov;
  }
  function closeModal() { $('#modal-root').innerHTML = ''; }
  function toast(msg, isErr) {
    var t = document.createElement('div');
    t.className = 'toast' + (isErr ? ' error' : '');
    t.setAttribute('data-testid', isErr ? 'toast-error' : 'toast');
    t.textContent = msg;
    $('#toasts').appendChild(t);
    setTimeout(function () { t.remove(); }, isErr ? 8000 : 4000);
  }
  function confirmDelete(res, ns, name) {
    var kind = RES[res].kind;
    var ov = modal('<div class="modal-head" data-testid="confirm-dialog">Delete ' + esc(kind) + '?</div>' +
      '<div class="modal-body">This deletes <b>' + esc(kind + ' ' + (ns ? ns + '/' : '') + name) + '</b>.' +
      (res === 'pods' ? ' If a controller owns it, a replacement pod is created.' : res === 'deployments' ? ' Its ReplicaSets and pods are deleted with it.' : '') + '</div>' +
      '<div class="modal-foot"><button data-testid="confirm-cancel" id="m-cancel">Cancel</button><button class="danger solid" data-testid="confirm-ok" id="m-ok">Delete</button></div>');
    $('#m-cancel', ov).onclick = closeModal;
    var ok = $('#m-ok', ov);
    ok.focus();
    ok.onclick = function () {
      ok.disabled = true;
      api('DELETE', objPath(res, ns, name), { kind: 'DeleteOptions', apiVersion: 'v1', propagationPolicy: 'Background' }).then(function () {
        closeModal(); toast(kind + ' ' + name + ' deleted');
        var rt = parseRoute();
        if (rt.name === name && rt.ns === (ns || '_')) location.hash = '#/' + res;
      }).catch(function (e) { closeModal(); toast('Delete failed: ' + e.message, true); });
    };
  }
  function showYaml(res, ns, name) {
    var ov = modal('<div class="modal-head"><span>' + esc(RES[res].kind + ' ' + (ns ? ns + '/' : '') + name) + '</span><span class="toolbar"><button class="small" id="y-copy" data-testid="yaml-copy">Copy</button><button class="small" data-testid="dialog-close" id="y-close">Close</button></span></div>' +
      '<div class="modal-body" data-testid="yaml-dialog"><pre class="yaml" data-testid="yaml-text">Loading…</pre></div>', true);
    $('#y-close', ov).onclick = closeModal;
    var text = '';
    $('#y-copy', ov).onclick = function () {
      var done = function () { toast('YAML copied'); };
      if (navigator.clipboard && window.isSecureContext) navigator.clipboard.writeText(text).then(done, function () { selectPre(); });
      else selectPre();
    };
    function selectPre() { var r = document.createRange(); r.selectNodeContents($('.yaml', ov)); var s = getSelection(); s.removeAllRanges(); s.addRange(r); toast('Selected: press Ctrl+C to copy'); }
    api('GET', objPath(res, ns, name)).then(function (o) {
      text = YAML.stringify(cleanForYaml(o));
      $('.yaml', ov).innerHTML = yamlHtml(o);
    }).catch(function (e) { $('.yaml', ov).textContent = 'Cannot load the object: ' + e.message; });
  }

  // ---------- actions ----------
  document.addEventListener('click', function (e) {
    var a = e.target.closest('[data-action]');
    if (a) {
      e.preventDefault(); e.stopPropagation();
      var res = a.getAttribute('data-res'), ns = a.getAttribute('data-ns'), name = a.getAttribute('data-name');
      switch (a.getAttribute('data-action')) {
        case 'delete': confirmDelete(res, ns, name); break;
        case 'yaml': showYaml(res, ns, name); break;
        case 'reveal':
          var k = a.getAttribute('data-key'); state.revealed[k] = !state.revealed[k]; render(); break;
        case 'scale': {
          var id = 'scale-input-' + tid(ns + '-' + name), input = $('[data-testid="' + id + '"]');
          var n = parseInt(input && input.value, 10);
          if (!(n >= 0)) { toast('Replicas must be a whole number, 0 or more', true); break; }
          a.disabled = true;
          api('PATCH', '/apis/apps/v1/namespaces/' + enc(ns) + '/deployments/' + enc(name) + '/scale', { spec: { replicas: n } }, 'application/merge-patch+json')
            .then(function () { delete state.inputs[id]; toast('Scaled ' + name + ' to ' + n); })
            .catch(function (err) { toast('Scale failed: ' + err.message, true); })
            .then(function () { a.disabled = false; render(); });
          break;
        }
        case 'restart':
          api('PATCH', objPath('deployments', ns, name), { spec: { template: { metadata: { annotations: { 'kubectl.kubernetes.io/restartedAt': new Date().toISOString() } } } } }, 'application/merge-patch+json')
            .then(function () { toast('Restarting ' + name + ': new pods roll out'); })
            .catch(function (err) { toast('Restart failed: ' + err.message, true); });
          break;
      }
      return;
    }
    if (e.target.closest('a, button, input, select, label, pre')) return;
    var tr = e.target.closest('tr[data-href]');
    if (tr && !(getSelection() && String(getSelection()).length)) location.hash = tr.getAttribute('data-href');
  });
  document.addEventListener('input', function (e) {
    var t = e.target;
    if (t.hasAttribute('data-input')) state.inputs[t.getAttribute('data-input')] = t.value;
    if (t.hasAttribute('data-filter')) { state.filter[t.getAttribute('data-filter')] = t.value; render(); }
  });
  document.addEventListener('keydown', function (e) {
    if (e.key === 'Escape') closeModal();
    if (e.key === 'Enter' && e.target.hasAttribute && e.target.hasAttribute('data-input')) {
      var btn = e.target.parentNode.querySelector('[data-action="scale"]');
      if (btn) btn.click();
    }
  });
  document.addEventListener('change', function (e) {
    var t = e.target;
    if (t.id === 'ns-select') { state.ns = t.value; localStorage.setItem('minik.ns', state.ns); render(); }
    if (t.id === 'log-container') logs.open(logs.ns, logs.name, t.value);
    if (t.id === 'log-wrap') { state.wrapLogs = t.checked; localStorage.setItem('minik.wrap', t.checked ? '1' : '0'); $('#log').classList.toggle('wrap', t.checked); }
  });
  document.addEventListener('click', function (e) {
    if (e.target.id === 'log-clear') { $('#log').textContent = ''; logs.lines = 0; }
    if (e.target.id === 'log-reconnect') { $('#log').textContent = ''; logs.open(logs.ns, logs.name, logs.container); }
  });

  // ---------- DOM patching ----------
  // Updates `oldP`'s children in place to match `newP`'s: elements with a
  // data-testid are matched by it (rows move instead of being rebuilt),
  // others by position. Untouched rows keep their DOM, focus and selection,
  // and the browser re-lays out only what changed.
  function nodeKey(n) { return n.nodeType === 1 ? n.getAttribute('data-testid') : null; }
  function morphEl(o, n) {
    var h = n.getAttribute('data-h');
    if (h && o.getAttribute('data-h') === h) return;
    var i, oa = o.attributes, na = n.attributes;
    for (i = oa.length - 1; i >= 0; i--) if (!n.hasAttribute(oa[i].name)) o.removeAttribute(oa[i].name);
    for (i = 0; i < na.length; i++) if (o.getAttribute(na[i].name) !== na[i].value) o.setAttribute(na[i].name, na[i].value);
    morphChildren(o, n);
  }
  function morphChildren(oldP, newP) {
    var keyed = {}, c, n = newP.firstChild, cur = oldP.firstChild;
    for (c = oldP.firstChild; c; c = c.nextSibling) { var ck = nodeKey(c); if (ck) keyed[ck] = c; }
    while (n) {
      var next = n.nextSibling, k = nodeKey(n), match = null;
      if (k) {
        if (keyed[k] && keyed[k].nodeName === n.nodeName) { match = keyed[k]; delete keyed[k]; }
      } else if (cur && !nodeKey(cur) && cur.nodeType === n.nodeType && cur.nodeName === n.nodeName) {
        match = cur;
      }
      if (match) {
        if (match === cur) cur = cur.nextSibling; else oldP.insertBefore(match, cur);
        if (n.nodeType === 1) morphEl(match, n);
        else if (match.nodeValue !== n.nodeValue) match.nodeValue = n.nodeValue;
      } else {
        oldP.insertBefore(n, cur);
      }
      n = next;
    }
    while (cur) { c = cur.nextSibling; oldP.removeChild(cur); cur = c; }
  }

  // ---------- router and render ----------
  var DETAIL = { pods: 'pod', deployments: 'deployment', secrets: 'secret', configmaps: 'configmap', services: 'service', replicasets: 'replicaset' };
  function parseRoute() {
    var parts = location.hash.replace(/^#\/?/, '').split('/').map(function (s) { try { return decodeURIComponent(s); } catch (e) { return s; } });
    var list = parts[0] || 'overview';
    if (parts.length >= 3 && DETAIL[list]) return { view: DETAIL[list], list: list, ns: parts[1], name: parts.slice(2).join('/') };
    return { view: views[list] ? list : 'overview', list: list };
  }
  var current = { key: null, view: null, html: null };
  function render() {
    var t0 = performance.now();
    marks.renders++;
    try { renderNow(); } catch (e) { marks.lastError = String(e && e.stack || e); throw e; } finally { marks.renderMs = performance.now() - t0; marks.lastRender = lastRender = Date.now(); }
  }
  function renderNow() {
    var rt = parseRoute(), v = views[rt.view];
    var key = location.hash + '|' + state.ns;
    var main = $('#main');
    if (key !== current.key) {
      if (current.view && current.view.unmount) current.view.unmount();
      main.innerHTML = v.shell(rt);
      current = { key: key, view: v, html: null };
      if (v.mount) v.mount(rt);
      $$('.sidebar a').forEach(function (a) { a.classList.toggle('active', a.getAttribute('data-view') === (rt.list || rt.view)); });
      window.scrollTo(0, 0);
    }
    if ($('#live')) {
      var out = v.live(rt);
      if (typeof out === 'string') out = { live: out };
      if (!current.html) current.html = {};
      Object.keys(out).forEach(function (id) {
        var el = document.getElementById(id), html = out[id];
        if (!el || current.html[id] === html) return;
        var act = document.activeElement, aid = act && act.getAttribute && act.getAttribute('data-testid');
        var selStart = null;
        try { selStart = act && act.selectionStart; } catch (e) { /* number inputs */ }
        var tpl = document.createElement('template');
        tpl.innerHTML = html;
        morphChildren(el, tpl.content);
        current.html[id] = html;
        if (aid && !document.body.contains(act)) {
          var n = el.querySelector('[data-testid="' + aid + '"]');
          if (n) { n.focus(); try { if (selStart !== null) n.setSelectionRange(selStart, selStart); } catch (e) { /* ignore */ } }
        }
      });
    }
    renderChrome();
  }
  function renderChrome() {
    var sel = $('#ns-select'), names = inf.namespaces.all().map(function (n) { return n.metadata.name; }).sort();
    if (state.ns && names.indexOf(state.ns) < 0 && inf.namespaces.synced) names.push(state.ns);
    var want = '<option value="">All namespaces</option>' + names.map(function (n) { return '<option value="' + esc(n) + '">' + esc(n) + '</option>'; }).join('');
    if (sel.getAttribute('data-k') !== want) { sel.innerHTML = want; sel.setAttribute('data-k', want); }
    if (sel.value !== state.ns) sel.value = state.ns;
    $$('[data-count]').forEach(function (c) {
      var r = c.getAttribute('data-count'), i = inf[r];
      var n = i.synced ? (RES[r].namespaced ? i.all(state.ns).length : i.all().length) : '';
      if (c.textContent !== String(n)) c.textContent = n;
    });
    var all = Object.keys(inf).map(function (k) { return inf[k]; });
    var errs = all.filter(function (i) { return i.error; }), live = all.every(function (i) { return i.live; });
    var conn = $('.conn'), text = $('.conn-text', conn);
    var cls = errs.length ? 'conn down' : live ? 'conn live' : 'conn';
    var t = errs.length ? 'API error' : live ? 'Live' : 'Connecting…';
    if (conn.className !== cls) conn.className = cls;
    if (text.textContent !== t) text.textContent = t;
    conn.title = errs.length ? errs.map(function (i) { return i.res + ': ' + i.error; }).join('\n') : 'Watching the API server';
  }

  window.addEventListener('hashchange', render);
  setInterval(scheduleRender, 2000); // ages
  Object.keys(inf).forEach(function (r) { inf[r].list(); });
  render();
})();
