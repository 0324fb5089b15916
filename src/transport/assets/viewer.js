/* logtail-ws viewer. Plain ES2020, no dependencies, CSP-safe (no inline code, no eval, no
 * style attributes from line content). Log data is only ever written with text nodes.
 *
 * The page keeps every line it receives in a ring (a setting, 100 000 by default) and
 * renders only the rows on screen: a "window" element that stays in place (position:
 * sticky) while a "sizer" gives the scroller the height of all rows, so the scrollbar is
 * the whole view. Frames are parsed as they arrive and drawn once per animation frame.
 *
 *   socket frames -> ingest() -> E (every held entry, oldest first)
 *                             -> V (the entries the filters let through)
 *                             -> render() draws V[top .. top + rows on screen]
 *
 * Pausing freezes what render() may show (entries up to the one seen last) while the
 * stream goes on being received and counted; scrolling up stops following. While the
 * reader looks at old rows the ring does not drop them; past twice its size it stops
 * storing, counts, and fetches the skipped lines again from the server (since=) when the
 * reader comes back. Scrolling above the oldest held line loads older lines with a second
 * socket (since=, the server answers from its history, then from the file on disk). */
(() => {
  'use strict';

  const F = window.LogtailFormat;
  const RING_DEFAULT = 100000;   // lines kept in the page (a setting)
  const RING_MIN = 1000;
  const OLDER_CHUNK = 5000;      // lines fetched per "load older"
  const PERMALINK_CONTEXT = 200; // lines before a linked line fetched with it
  const KEEP_MARGIN = 500;       // rows above the reader's top row never dropped
  const MAX_SCROLL_PX = 8000000; // keep the sizer below browsers' element-height limits
  const BACKOFF_MIN = 500;       // ms
  const BACKOFF_MAX = 10000;     // ms
  const FAIL_HINT_AFTER = 3;     // failed attempts (never opened) before the token hint
  const OLDER_TIMEOUT = 20000;   // ms for one "load older" socket
  const INGEST_BUDGET_MS = 6;    // frames handled per task before yielding to rendering
  const PERF_FRAMES = 4096;      // frame timings kept for logtail.perf()
  const MAX_SPANS = 2000;        // styled spans drawn per line
  const THEME_KEY = 'logtail.theme';
  const WRAP_KEY = 'logtail.wrap';
  const RING_KEY = 'logtail.ring';
  const TIME_KEY = 'logtail.time';
  const LEVELS = ['error', 'warn', 'info', 'debug', 'none'];
  const FILE_COLOURS = 8;

  const store = {
    get(k) { try { return localStorage.getItem(k); } catch (_) { return null; } },
    set(k, v) { try { if (v == null) localStorage.removeItem(k); else localStorage.setItem(k, v); } catch (_) { /* private mode */ } },
  };

  // Theme first (this script runs in <head>), so there is no flash of the wrong theme.
  const root = document.documentElement;
  let theme = store.get(THEME_KEY);
  if (theme !== 'light' && theme !== 'dark') theme = null;
  if (theme) root.dataset.theme = theme;

  const ringSetting = () => {
    const n = Number(store.get(RING_KEY));
    return Number.isInteger(n) && n >= RING_MIN ? n : RING_DEFAULT;
  };

  const S = {
    // connection
    ws: null, opened: false, everOpened: false, helloSeen: false,
    epoch: null, helloSeq: null, lastSeq: 0, resumable: false,
    attempt: 0, fails: 0, timer: 0, grep: '', backlog: null, connMsg: null,
    // what the page holds
    E: [], E0: 0, V: [], V0: 0, all: true, mat: new Map(), openIds: new Set(), nextId: 1, olderId: 0, cap: ringSetting(),
    heldLines: 0, lvCount: { error: 0, warn: 0, info: 0, debug: 0, none: 0 },
    count: 0, lost: 0, skipped: 0, overflow: false, heldSeq: 0,
    older: null, startReached: '', // '' | 'start' | 'gone' | 'restart'
    // view
    paused: false, pauseId: 0, pausedNew: 0, follow: true, belowNew: 0, top: 0,
    wrap: store.get(WRAP_KEY) === '1', relTime: store.get(TIME_KEY) === 'rel',
    rowH: 19, scale: 1, progScroll: null, raf: 0, dirty: true, gen: 0, gutter: 3, tailNew: 0, drewLast: false, cache: new Map(),
    cur: null, flash: null, permalink: null, visRows: 1, domRows: 0,
    // filters
    filterTest: null, filterMark: null, regex: false, matchCase: false, hide: true, filterTimer: 0,
    lvOff: new Set(), shownFiles: null, has: [], not: [], cols: [],
    // files
    files: new Map(), // name -> {lines, unread, state, colour, removed}
    pickerDirty: false, pickerAll: true, pickerNames: new Set(),
    unseen: 0, titleTimer: 0,
    perf: { render: new Float64Array(PERF_FRAMES), gap: new Float64Array(PERF_FRAMES), n: 0, last: 0 },
  };
  let el = {};

  const NUM = new Intl.NumberFormat();
  const fmt = (n) => NUM.format(n);
  const plural = (n, w) => fmt(n) + ' ' + w + (n === 1 ? '' : 's');
  const escapeRe = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const dec = (s) => { try { return decodeURIComponent(s.replace(/\+/g, '%2B')); } catch (_) { return s; } };
  const enc = (s) => encodeURIComponent(s).replace(/%3D/g, '=').replace(/%3A/g, ':').replace(/%2F/g, '/');

  // ---------- the URL fragment: token, file=, q=, lv=, col=, has=, not=, seq=&epoch= ----------

  function readHash() {
    const out = [];
    const h = location.hash.replace(/^#/, '');
    if (!h) return out;
    for (const part of h.split('&')) {
      if (!part) continue;
      const i = part.indexOf('=');
      out.push(i < 0 ? [dec(part), ''] : [dec(part.slice(0, i)), dec(part.slice(i + 1))]);
    }
    return out;
  }
  const hashValues = (pairs, key) => pairs.filter((p) => p[0] === key).map((p) => p[1]);
  let token = hashValues(readHash(), 'token')[0] || '';
  // #wt=1: stream over WebTransport (/wt) where the browser has it; WebSocket otherwise,
  // and from the first WebTransport attempt that does not open on.
  const wantWt = hashValues(readHash(), 'wt')[0] === '1';
  let useWt = wantWt && typeof WebTransport === 'function';

  function writeHash() {
    const parts = [];
    if (token) parts.push('token=' + encodeURIComponent(token));
    if (wantWt) parts.push('wt=1');
    if (S.shownFiles) for (const f of S.shownFiles) parts.push('file=' + enc(f));
    const q = el.filter ? el.filter.value : '';
    if (q) parts.push('q=' + enc(q));
    if (S.regex) parts.push('re=1');
    if (S.matchCase) parts.push('case=1');
    if (!S.hide) parts.push('hide=0');
    if (S.lvOff.size) parts.push('lv=' + LEVELS.filter((l) => !S.lvOff.has(l)).join(','));
    for (const c of S.cols) parts.push('col=' + enc(c));
    for (const [f, v] of S.has) parts.push('has=' + enc(f + '=' + v));
    for (const [f, v] of S.not) parts.push('not=' + enc(f + '=' + v));
    const h = parts.length ? '#' + parts.join('&') : '';
    if (h !== location.hash && !(h === '' && location.hash === '#')) {
      history.replaceState(history.state, '', location.pathname + location.search + h);
    }
  }

  // Applies the fragment's view state (at load, and when the reader edits the address).
  function applyHash() {
    const pairs = readHash();
    const files = hashValues(pairs, 'file');
    S.shownFiles = files.length ? new Set(files) : null;
    el.filter.value = hashValues(pairs, 'q')[0] || '';
    S.regex = hashValues(pairs, 're')[0] === '1';
    S.matchCase = hashValues(pairs, 'case')[0] === '1';
    S.hide = hashValues(pairs, 'hide')[0] !== '0';
    const lv = hashValues(pairs, 'lv')[0];
    S.lvOff = new Set(lv === undefined ? [] : LEVELS.filter((l) => !lv.split(',').includes(l)));
    S.cols = hashValues(pairs, 'col').filter(Boolean);
    const fieldPairs = (key) => hashValues(pairs, key).map((s) => {
      const i = s.indexOf('=');
      return i > 0 ? [s.slice(0, i), s.slice(i + 1)] : null;
    }).filter(Boolean);
    S.has = fieldPairs('has');
    S.not = fieldPairs('not');
    const seq = hashValues(pairs, 'seq')[0];
    const epoch = hashValues(pairs, 'epoch')[0];
    S.permalink = seq && /^\d{1,18}$/.test(seq) ? { seq: Number(seq), epoch: epoch || null, found: false } : null;
    el.regex.setAttribute('aria-pressed', String(S.regex));
    el.matchCase.setAttribute('aria-pressed', String(S.matchCase));
    el.hide.setAttribute('aria-pressed', String(S.hide));
    S.filterTest = buildFilter(false);
    S.filterMark = buildFilter(true);
    if (!heldCount()) S.all = noFilter();   // else the rebuildView() that follows
    showChips();
    showFieldsBar();
    pickerChanged(null);
  }

  // ---------- connection ----------

  function streamQuery(since, wt) {
    // jsonl: the JSON frames, several per message (a browser spends about as much
    // on each message as on its content, so one message per delivery, not per line).
    // /wt is always newline-delimited JSON; its token goes in the query (no headers).
    const q = wt ? [] : ['format=jsonl'];
    if (wt && token) q.push('token=' + encodeURIComponent(token));
    if (since !== null) q.push('since=' + since, 'epoch=' + encodeURIComponent(S.epoch));
    else if (S.backlog !== null) q.push('backlog=' + S.backlog);
    if (S.grep) q.push('grep=' + encodeURIComponent(S.grep));
    // Relative to the page, so that a --base-path, or a prefix a proxy adds or strips,
    // needs nothing here.
    const url = new URL((wt ? 'wt?' : 'ws?') + q.join('&'), location.href);
    url.protocol = wt ? 'https:' : url.protocol === 'https:' ? 'wss:' : 'ws:';
    url.hash = '';
    return url.href;
  }

  // A WebTransport session to /wt behind the WebSocket interface connect() uses: onopen,
  // onmessage (complete lines of the server's stream, '\n' between them, as jsonl), onclose
  // ({code, reason}: the session's close code, 1001 and 1013 as on /ws; 1006 if it never
  // opened or broke), close(code). The certificate hash comes from /wt-cert-hash (404 with
  // --tls-cert: then the browser verifies the certificate as usual).
  function openWt(url) {
    const sock = { onopen: null, onmessage: null, onclose: null, onerror: null, wt: null };
    let ended = false;
    const end = (code, reason) => {
      if (ended) return;
      ended = true;
      if (sock.onclose) sock.onclose({ code, reason: reason || '' });
    };
    sock.close = (code) => {
      ended = true;
      try { if (sock.wt) sock.wt.close({ closeCode: code || 0, reason: '' }); } catch (_) { /* ignore */ }
    };
    (async () => {
      const opts = {};
      const res = await fetch(new URL('wt-cert-hash', location.href), { cache: 'no-store' });
      // A plain-http page with no self-signed hash: nothing QUIC could present is trusted.
      if (!res.ok && location.protocol === 'http:') throw new Error('no /wt-cert-hash');
      if (res.ok) {
        const hex = (await res.text()).trim();
        const value = new Uint8Array(hex.match(/../g).map((h) => parseInt(h, 16)));
        opts.serverCertificateHashes = [{ algorithm: 'sha-256', value }];
      }
      if (ended) return;
      const wt = new WebTransport(url, opts);
      sock.wt = wt;
      const closed = wt.closed.then((c) => c, () => null);
      await wt.ready;
      const { value: stream } = await wt.incomingUnidirectionalStreams.getReader().read();
      if (ended || !stream) return;
      if (sock.onopen) sock.onopen();
      const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
      let rest = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done || ended) break;
        const cut = (rest + value).lastIndexOf('\n');
        if (cut < 0) { rest += value; continue; }
        const whole = rest + value;
        rest = whole.slice(cut + 1);
        if (sock.onmessage) sock.onmessage({ data: whole.slice(0, cut) });
      }
      const c = await closed;
      end(c && typeof c.closeCode === 'number' ? c.closeCode : 1006, c && c.reason);
    })().catch(() => end(1006, ''));
    return sock;
  }

  function openSocket(url) {
    return token ? new WebSocket(url, ['bearer.' + token]) : new WebSocket(url);
  }

  function connect() {
    clearTimeout(S.timer);
    S.timer = 0;
    el.retry.hidden = true;
    drop();
    setState(S.everOpened || S.fails ? 'reconnecting' : 'connecting');
    let since = null;
    if (S.resumable && S.epoch !== null) since = S.lastSeq > 0 ? S.lastSeq : (S.helloSeq || 0);
    let ws;
    try {
      ws = useWt ? openWt(streamQuery(since, true)) : openSocket(streamQuery(since, false));
    } catch (e) {
      const bad = token && e && e.name === 'SyntaxError';
      status(bad ? 'The token in #token= has characters a WebSocket subprotocol cannot carry.'
        : 'Cannot open a WebSocket: ' + (e && e.message ? e.message : e), true);
      setState('reconnecting');
      el.retry.hidden = false;
      return;
    }
    S.ws = ws;
    S.opened = false;
    ws.onopen = () => {
      if (ws !== S.ws) return;
      S.opened = true;
      S.everOpened = true;
      S.fails = 0;
      setState('live');
      status('Live' + (S.grep ? ' (server grep active)' : '') + '.');
    };
    ws.onmessage = (ev) => { if (ws === S.ws) onMessage(ev.data); };
    ws.onerror = () => { /* a close event follows */ };
    ws.onclose = (ev) => {
      if (ws !== S.ws) return;
      drain(Infinity);
      S.ws = null;
      onClose(ev);
    };
  }

  function drop() {
    const ws = S.ws;
    if (!ws) return;
    drain(Infinity);   // every frame of this socket is handled before the next one's
    S.ws = null;
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    try { ws.close(1000); } catch (_) { /* ignore */ }
  }

  function onClose(ev) {
    const opened = S.opened;
    S.opened = false;
    if (useWt && !opened) {
      // No WebTransport here (no --http3, UDP blocked): WebSocket from now on.
      useWt = false;
      note('reconnect', 'WebTransport did not open — using WebSocket');
    }
    if (!opened) S.fails++;
    const code = ev.code;
    const why = ev.reason ? ' (' + code + ': ' + ev.reason + ')' : ' (' + code + ')';
    let msg;
    if (code === 1013) {
      msg = 'The server closed the stream: client too slow' + why + '. Resuming where it left off…';
      note('reconnect', 'stream closed: client too slow — resuming');
    } else if (code === 1001) {
      msg = 'The server is going away' + why + '. Reconnecting…';
      if (opened) note('reconnect', 'server shutting down — reconnecting');
    } else if (!opened && S.grep && S.fails >= 1) {
      msg = 'Cannot connect with server grep — the server may reject this regex (HTTP 400), or is unreachable. Clear it with ×.';
    } else if (!opened && S.fails >= FAIL_HINT_AFTER) {
      msg = token
        ? 'Cannot connect — is the token right? Open /#token=… with the correct one. (Or the server is down.)'
        : 'Cannot connect — is a token needed? Open /#token=…';
    } else if (opened) {
      msg = 'Connection lost' + why + '. Reconnecting…';
      note('reconnect', 'connection lost — reconnecting');
    } else {
      msg = 'Cannot connect' + why + '. Retrying…';
    }
    scheduleReconnect(msg, !opened && S.fails >= FAIL_HINT_AFTER);
  }

  function scheduleReconnect(msg, isError) {
    setState('reconnecting');
    const base = Math.min(BACKOFF_MAX, BACKOFF_MIN * 2 ** Math.min(S.attempt, 10));
    S.attempt++;
    const delay = Math.round(base * (0.6 + 0.4 * Math.random()));
    clearTimeout(S.timer);
    S.timer = setTimeout(connect, delay);
    status(msg + ' Next try in ' + (delay / 1000).toFixed(1) + ' s.', isError);
    el.retry.hidden = false;
  }

  function reconnectNow() {
    S.attempt = 0;
    connect();
  }

  // ---------- frames ----------

  // The epoch as the exact text the server sent (a number would lose digits).
  function epochOf(raw, m) {
    const d = /"epoch"\s*:\s*(-?\d+)/.exec(raw);
    return d ? d[1] : (m.epoch == null ? null : String(m.epoch));
  }

  // Frames are taken in order from a queue, a few milliseconds' worth per task: a page
  // that fell behind gets a large message (a burst, a replay step), and handling it in
  // one task would hold the next frame back. The queue is emptied before a close is
  // handled, so a reconnect resumes after the last frame received.
  const Q = { parts: [], at: 0, pending: false, chan: null };

  function onMessage(data) {
    if (typeof data !== 'string') return;
    Q.parts.push(data);
    if (!Q.pending) drainSoon();
  }

  function drainSoon() {
    Q.pending = true;
    if (!Q.chan) {
      Q.chan = new MessageChannel();
      Q.chan.port1.onmessage = () => { Q.pending = false; drain(INGEST_BUDGET_MS); };
    }
    Q.chan.port2.postMessage(0);
  }

  function drain(budget) {
    const t0 = performance.now();
    let n = 0;
    while (Q.parts.length) {
      const data = Q.parts[0];
      let end = data.indexOf('\n', Q.at);
      if (end < 0) end = data.length;
      if (end > Q.at) onFrame(Q.at === 0 && end === data.length ? data : data.slice(Q.at, end));
      if (end >= data.length) { Q.parts.shift(); Q.at = 0; } else Q.at = end + 1;
      if ((++n & 63) === 0 && performance.now() - t0 > budget) break;
    }
    if (Q.parts.length && !Q.pending) drainSoon();
  }

  function onFrame(raw) {
    if (typeof raw !== 'string') return;
    let m;
    try { m = JSON.parse(raw); } catch (_) { m = null; }
    if (m === null || typeof m !== 'object') {   // not JSON (text format?): show it as is
      addLine(null, '', raw);
      return;
    }
    if (typeof m.event === 'string') { onEvent(m, raw); return; }
    if (typeof m.line !== 'string') return;
    const seq = typeof m.seq === 'number' ? m.seq : null;
    if (seq !== null) {
      if (seq <= S.lastSeq) return;             // duplicate after a resume: drop
      S.lastSeq = seq;
    }
    addLine(seq, typeof m.file === 'string' ? m.file : '', m.line);
  }

  function onEvent(m, raw) {
    const file = typeof m.file === 'string' ? m.file : '';
    if (file) seeFile(file);
    switch (m.event) {
      case 'hello': {
        const epoch = epochOf(raw, m);
        const link = S.permalink;
        if (link && !S.helloSeen && link.epoch !== null && epoch !== link.epoch) {
          addEvent('restart', 'the link is for an earlier run of the server (epoch ' + link.epoch + '); its lines are gone');
          status('Line #' + fmt(link.seq) + ' of that run is no longer on the server.', true, true);
          S.permalink = null;
          S.lastSeq = 0;
        } else if (S.epoch !== null && S.helloSeen && epoch !== S.epoch) {
          addEvent('restart', 'server restarted — line numbers start again');
          S.lastSeq = 0;
        }
        const firstHello = !S.helloSeen;
        S.helloSeen = true;
        S.epoch = epoch;
        if (firstHello && S.permalink && S.permalink.epoch === null) {
          S.permalink.epoch = epoch;
          S.helloSeq = typeof m.seq === 'number' ? m.seq : 0;
          S.resumable = true;
          goToPermalink();
          return;
        }
        S.helloSeq = typeof m.seq === 'number' ? m.seq : 0;
        S.resumable = true;
        S.attempt = 0;
        S.fails = 0;
        loadFiles();
        return;
      }
      case 'gap': {
        if (m.reason === 'unpublished') {
          // An edge's: lines the source could not get to the broker; they have no seq.
          const lines = Number(m.lines);
          const what = lines > 0 ? plural(lines, 'line') : Number(m.bytes) > 0 ? plural(Number(m.bytes), 'byte') : 'some lines';
          if (lines > 0) S.lost += lines;
          addEvent('gap', what + ' of ' + (file || 'a file') + ' never reached the broker (its source could not publish them)', file);
          return;
        }
        const from = Number(m.from), to = Number(m.to);
        const n = to - from + 1;
        if (m.reason === 'epoch') {
          // Our seq belonged to an earlier run: nothing to count as lost in this one.
          if (to > S.lastSeq) S.lastSeq = to;
          return;
        }
        if (n > 0) S.lost += n;
        addEvent('gap', (n > 0 ? plural(n, 'line') : 'some lines') + ' could not be replayed (gap' +
          (n > 0 ? ' #' + fmt(from) + '–' + fmt(to) : '') + ')', '', to);
        if (to > S.lastSeq) S.lastSeq = to;
        return;
      }
      case 'rotated': addEvent('rotated', (file || 'file') + ' rotated — following the new file', file); break;
      case 'truncated': addEvent('truncated', (file || 'file') + ' truncated — reading from the start', file); break;
      case 'waiting':
      case 'following': {
        const info = fileInfo(file);
        if (info.state === m.event) return;  // repeated on every reconnect
        info.state = m.event;
        addEvent(m.event, m.event === 'waiting' ? 'waiting for ' + (file || 'the file') + ' to appear' : 'following ' + (file || 'the file'), file);
        pickerChanged(file);
        return;
      }
      case 'added': fileInfo(file).removed = false; addEvent('added', (file || 'a file') + ' added', file); pickerChanged(file); return;
      case 'removed': fileInfo(file).removed = true; addEvent('removed', (file || 'a file') + ' removed', file); pickerChanged(file); return;
      case 'ended': fileInfo(file).state = 'ended'; addEvent('ended', (file || 'input') + ' ended', file); pickerChanged(file); return;
      default: addEvent(m.event, m.event + (file ? ' — ' + file : ''), file);
    }
    if (m.event === 'rotated' || m.event === 'truncated') fileInfo(file).state = 'following';
  }

  // ---------- files ----------

  function colourOf(name) {
    let h = 0;
    for (let i = 0; i < name.length; i++) h = (h * 31 + name.charCodeAt(i)) | 0;
    return Math.abs(h) % FILE_COLOURS;
  }

  function fileInfo(name) {
    let f = S.files.get(name);
    if (!f) {
      f = { lines: 0, unread: 0, state: '', colour: colourOf(name), removed: false };
      S.files.set(name, f);
      if (S.files.size > 1) document.body.classList.add('multi');
      if (S.files.size <= 4) el.files.textContent = Array.from(S.files.keys()).join(', ');
      else el.files.textContent = fmt(S.files.size) + ' files';
      if (S.files.size <= 6) setTitle();
      // One width for every file tag (CSSOM, not a style attribute), so the text aligns.
      const w = Math.min(24, Math.max(S.tagWidth || 0, name.length));
      if (w !== S.tagWidth && el.log) { S.tagWidth = w; el.log.style.setProperty('--fw', w + 'ch'); }
      S.pickerAll = true;
      S.pickerDirty = true;
    }
    return f;
  }
  function seeFile(name) { if (name) fileInfo(name); }
  const fileShown = (name) => !name || S.shownFiles === null || S.shownFiles.has(name);

  // The full list (files that have written nothing yet too); the stream keeps it current.
  function loadFiles() {
    if (S.filesLoaded) return;
    S.filesLoaded = true;
    const headers = token ? { Authorization: 'Bearer ' + token } : {};
    fetch('files', { headers, cache: 'no-store' }).then((r) => (r.ok ? r.json() : null)).then((list) => {
      if (!Array.isArray(list)) return;
      for (const f of list) {
        if (!f || typeof f.name !== 'string') continue;
        const info = fileInfo(f.name);
        if (!info.state && typeof f.state === 'string') info.state = f.state;
      }
      pickerChanged(null);
    }).catch(() => { S.filesLoaded = false; });
  }

  function setShownFiles(set) {
    S.shownFiles = set && set.size ? set : null;
    for (const [name, f] of S.files) if (fileShown(name)) f.unread = 0;
    writeHash();
    rebuildView();
    pickerChanged(null);
  }

  function toggleFile(name, only) {
    if (only) { setShownFiles(new Set([name])); return; }
    const all = Array.from(S.files.keys());
    const cur = S.shownFiles ? new Set(S.shownFiles) : new Set(all);
    if (cur.has(name)) cur.delete(name); else cur.add(name);
    setShownFiles(cur.size === all.length && all.every((n) => cur.has(n)) ? null : cur);
  }

  function pickerChanged(name) {
    if (name) S.pickerNames.add(name); else S.pickerAll = true;
    S.pickerDirty = true;
    if (el.log) markDirty();
  }

  // The picker: one button per file, made once; counts updated at most once a frame.
  function showPicker() {
    if (!el.picker) return;
    S.pickerDirty = false;
    const many = S.files.size > 1;
    el.picker.hidden = !many;
    document.body.classList.toggle('multi', many);
    if (!many) return;
    if (!S.pickerButtons) S.pickerButtons = new Map();
    const buttons = S.pickerButtons;
    const names = S.pickerAll ? S.files.keys() : S.pickerNames;
    S.pickerAll = false;
    for (const name of names) {
      const f = S.files.get(name);
      if (!f) continue;
      let b = buttons.get(name);
      if (!b) {
        const li = document.createElement('li');
        b = document.createElement('button');
        b.type = 'button';
        b.className = 'ftog fc' + f.colour;
        b.dataset.file = name;
        const n = document.createElement('span');
        n.className = 'fname';
        n.textContent = name;
        const c = document.createElement('span');
        c.className = 'fcount';
        b.append(n, c);
        li.appendChild(b);
        el.fileList.appendChild(li);
        buttons.set(name, b);
      }
      const shown = String(fileShown(name));
      if (b.getAttribute('aria-pressed') !== shown) b.setAttribute('aria-pressed', shown);
      const count = f.unread ? fmt(f.unread) + ' new' : (f.lines ? fmt(f.lines) : '');
      const c = b.lastElementChild;
      if (c.textContent !== count) { c.textContent = count; c.classList.toggle('unread', f.unread > 0); }
      const gone = f.removed || f.state === 'waiting' || f.state === 'ended';
      b.classList.toggle('gone', gone);
      const title = name + (f.state ? ' — ' + f.state : '') + (f.removed ? ' (removed)' : '') + ' · click: show/hide · double-click: only this';
      if (b.title !== title) b.title = title;
    }
    S.pickerNames.clear();
    el.allFiles.disabled = S.shownFiles === null;
  }

  // ---------- the store: E (held entries), V (entries in view) ----------
  //
  // Column store, so that a held line is one object (its string) for the garbage
  // collector, not an entry object with a dozen fields and a second string: S.E[j] is
  // the line's text (a line) or an event object (a stream event or a note); its id, seq,
  // file and level are in typed arrays indexed like S.E (C below). An entry object
  // ({id, k, seq, file, line, plain, lv, st, ev, open}) is made only for a row drawn or
  // selected (entryAt). The view S.V holds indices into S.E, and none at all while no
  // filter is active (S.all: the view is the held entries themselves).

  const LV_CODE = { error: 0, warn: 1, info: 2, debug: 3, none: 4 };
  const C = { id: new Float64Array(1024), seq: new Float64Array(1024), file: new Int32Array(1024), lv: new Uint8Array(1024) };
  const FILES = [''];                 // file index -> name (0: none)
  const FILE_IX = new Map([['', 0]]);
  const fileIx = (name) => {
    let i = FILE_IX.get(name);
    if (i === undefined) { i = FILES.length; FILES.push(name); FILE_IX.set(name, i); }
    return i;
  };

  function growCols(need) {
    let cap = C.id.length;
    if (need <= cap) return;
    while (cap < need) cap *= 2;
    for (const k of ['id', 'seq', 'file', 'lv']) {
      const a = new C[k].constructor(cap);
      a.set(C[k].subarray(0, S.E.length));
      C[k] = a;
    }
  }

  const isLine = (j) => typeof S.E[j] === 'string';
  const seqAt = (j) => { const s = C.seq[j]; return s === s ? s : null; };
  const fileAt = (j) => FILES[C.file[j]];
  const plainOf = (line) => (F.hasAnsi(line) ? F.stripAnsi(line) : line);
  function plainAt(j) {
    const x = S.E[j];
    if (typeof x !== 'string') return x.line;
    const m = S.mat.get(C.id[j]);
    return m ? m.plain : plainOf(x);
  }

  // The entry object of S.E[j]: the one already made for it (drawn, selected), else a new one.
  function entryAt(j) {
    const x = S.E[j];
    if (typeof x !== 'string') return x;
    const id = C.id[j];
    const m = S.mat.get(id);
    if (m) return m;
    if (S.cur && S.cur.id === id) return S.cur;
    return { id, k: 0, seq: seqAt(j), file: fileAt(j), line: x, plain: plainOf(x), lv: LEVELS[C.lv[j]], st: undefined, ev: '', open: S.openIds.has(id) };
  }

  // k: 0 line, 1 stream event, 2 the page's own note (reconnects)
  function addLine(seq, file, text) {
    if (file) seeFile(file);
    if (S.overflow) {      // the reader is far behind: count, fetch again later
      S.skipped++;
      markDirty();
      return;
    }
    S.count++;
    if (document.hidden) {
      S.unseen++;
      if (!S.titleTimer) S.titleTimer = setTimeout(() => { S.titleTimer = 0; setTitle(); }, 1000);
    }
    if (seq !== null) S.heldSeq = seq;
    if (file) {
      const f = fileInfo(file);
      f.lines++;
      if (!fileShown(file)) f.unread++;
      if (S.files.size > 1) { S.pickerNames.add(file); S.pickerDirty = true; }
    }
    pushLine(seq, file, text);
    const link = S.permalink;
    if (link && !link.found && seq !== null && seq >= link.seq) reachPermalink(entryAt(S.E.length - 1));
  }

  function makeEvent(k, seq, file, text, kind) {
    const line = '— ' + text + ' —';
    return { id: 0, k, seq, file, line, plain: line, lv: 'none', st: null, ev: kind, open: false };
  }
  function addEvent(kind, text, file, seq) {
    pushEvent(makeEvent(1, typeof seq === 'number' ? seq : null, file || '', text, kind));
  }
  function note(kind, text) {
    pushEvent(makeEvent(2, null, '', text, kind));
  }

  function setCols(j, id, seq, file, lv) {
    C.id[j] = id;
    C.seq[j] = seq === null ? NaN : seq;
    C.file[j] = fileIx(file);
    C.lv[j] = lv;
  }

  function pushLine(seq, file, line) {
    const plain = plainOf(line);
    const lv = LV_CODE[F.levelOf(plain) || 'none'];
    const j = S.E.length;
    growCols(j + 1);
    S.E.push(line);
    setCols(j, S.nextId++, seq, file, lv);
    S.heldLines++;
    S.lvCount[LEVELS[lv]]++;
    const shown = S.all || lineMatches(file, lv, plain);
    if (shown) {
      if (!S.all) S.V.push(j);
      if (S.paused) S.pausedNew++;
      else if (!S.follow) S.belowNew++;
      else S.tailNew++;
    }
    if (S.heldLines > S.cap) evict();
    markDirty();
  }

  function pushEvent(e) {
    e.id = S.nextId++;
    const j = S.E.length;
    growCols(j + 1);
    S.E.push(e);
    setCols(j, e.id, e.seq, e.file, LV_CODE.none);
    if (!S.all && fileShown(e.file)) S.V.push(j);
    if (S.heldLines > S.cap) evict();
    markDirty();
  }

  const heldCount = () => S.E.length - S.E0;
  const viewCount = () => (S.all ? S.E.length - S.E0 : S.V.length - S.V0);
  const vIdx = (i) => (S.all ? S.E0 + i : S.V[S.V0 + i]);   // view row -> index in S.E
  const viewAt = (i) => entryAt(vIdx(i));
  const viewIdAt = (i) => C.id[vIdx(i)];

  // The first row (from 0) whose id >= id; ids grow from oldest to newest in E and V.
  function viewIndexOf(id) {
    let lo = 0, hi = viewCount();
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (viewIdAt(mid) < id) lo = mid + 1; else hi = mid;
    }
    return lo;
  }
  function heldIndexOf(id) {
    let lo = S.E0, hi = S.E.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (C.id[mid] < id) lo = mid + 1; else hi = mid;
    }
    return lo - S.E0;
  }
  // An entry no longer held (evicted, or the view was cleared).
  function gone(e) {
    const j = S.E0 + heldIndexOf(e.id);
    return j >= S.E.length || C.id[j] !== e.id;
  }

  // How many view rows render() may show: all of them, or while paused those seen before.
  function shownCount() {
    if (!S.paused) return viewCount();
    return viewIndexOf(S.pauseId + 1);
  }

  function evict() {
    let over = S.heldLines - S.cap;
    if (over <= 0) return;
    let limit = heldCount();
    if (S.paused || !S.follow) {
      // Never drop what the reader may be looking at (or is about to scroll back to).
      const vc = viewCount();
      if (vc) limit = Math.max(0, vIdx(Math.min(S.top, vc - 1)) - S.E0 - KEEP_MARGIN);
      if (S.cur) limit = Math.min(limit, Math.max(0, heldIndexOf(S.cur.id) - KEEP_MARGIN));
    }
    let i = S.E0;
    const end = S.E0 + limit;
    while (over > 0 && i < end) {
      if (typeof S.E[i] === 'string') { S.heldLines--; S.lvCount[LEVELS[C.lv[i]]]--; over--; }
      S.E[i++] = undefined;   // freed now, not at the next compaction
    }
    if (i > S.E0) {
      const dropped0 = i - S.E0;
      S.E0 = i;
      S.startReached = '';
      let dropped = dropped0;
      if (!S.all) {
        dropped = 0;
        while (S.V0 < S.V.length && S.V[S.V0] < i) { S.V0++; dropped++; }
      }
      S.top = Math.max(0, S.top - dropped);
      compact();
    }
    if (S.heldLines > 2 * S.cap && !S.overflow) {
      S.overflow = true;   // the reader holds the oldest rows: stop storing, keep counting
      status('The page holds ' + fmt(S.heldLines) + ' lines; newer ones are counted and fetched again when you resume.', false, true);
    }
  }

  function compact() {
    if (S.E0 > 65536 && S.E0 * 2 > S.E.length) {
      const shift = S.E0, n = S.E.length;
      S.E = S.E.slice(shift);
      for (const k of ['id', 'seq', 'file', 'lv']) C[k].copyWithin(0, shift, n);
      S.E0 = 0;
      if (!S.all) {
        const V = new Array(S.V.length - S.V0);
        for (let i = S.V0; i < S.V.length; i++) V[i - S.V0] = S.V[i] - shift;
        S.V = V;
        S.V0 = 0;
      }
    }
    if (!S.all && S.V0 > 65536 && S.V0 * 2 > S.V.length) { S.V = S.V.slice(S.V0); S.V0 = 0; }
  }

  function structured(e) {
    if (e.st === undefined) e.st = e.k === 0 ? F.parseStructured(e.plain) : null;
    return e.st;
  }
  const fieldText = (st, path) => {
    if (!st) return undefined;
    const v = F.getField(st.fields, path);
    return v === undefined ? undefined : F.formatValue(v);
  };

  // Whether the filters let a line through (file name, level code, text without ANSI).
  function lineMatches(file, lv, plain) {
    if (file && !fileShown(file)) return false;
    if (S.lvOff.size && S.lvOff.has(LEVELS[lv])) return false;
    if (S.has.length || S.not.length) {
      const st = F.parseStructured(plain);
      for (const [f, v] of S.has) if (fieldText(st, f) !== v) return false;
      for (const [f, v] of S.not) if (fieldText(st, f) === v) return false;
    }
    if (S.hide && S.filterTest && !S.filterTest.test(plain)) return false;
    return true;
  }
  function matchesAt(j) {
    if (isLine(j)) return lineMatches(fileAt(j), C.lv[j], plainAt(j));
    return fileShown(S.E[j].file);
  }
  const noFilter = () => S.shownFiles === null && !S.lvOff.size && !S.has.length && !S.not.length && !(S.hide && S.filterTest);

  // After any filter change: the view again from every held entry, the reader kept in place.
  function rebuildView() {
    const anchor = S.follow || !viewCount() ? null : viewIdAt(Math.min(S.top, viewCount() - 1));
    let pausedNew = 0;
    S.all = noFilter();
    S.V = [];
    S.V0 = 0;
    for (let j = S.E0; j < S.E.length; j++) {
      if (S.all || matchesAt(j)) {
        if (!S.all) S.V.push(j);
        if (S.paused && isLine(j) && C.id[j] > S.pauseId) pausedNew++;
      }
    }
    S.pausedNew = pausedNew;
    if (anchor !== null) S.top = viewIndexOf(anchor);
    S.gen++;
    markDirty();
    updateCounts();
  }

  // ---------- older lines: a second socket, since= ----------

  function oldestHeldSeq() {
    for (let j = S.E0; j < S.E.length; j++) if (isLine(j) && seqAt(j) !== null) return seqAt(j);
    return null;
  }

  function loadOlder() {
    if (S.older || S.startReached || S.epoch === null) return;
    const oldest = oldestHeldSeq();
    if (oldest === null) return;
    if (oldest <= 1) { S.startReached = 'start'; markDirty(); return; }
    const since = Math.max(0, oldest - 1 - OLDER_CHUNK);
    fetchRange(since, oldest, (lines, goneTo, restarted) => {
      prepend(lines, goneTo);
      if (restarted) S.startReached = 'restart';
      else if (goneTo !== null && (lines.length === 0 || lines[0].seq > goneTo)) S.startReached = 'gone';
      else if (since === 0) S.startReached = 'start';
    });
  }

  // Lines with since < seq < before, from a socket of their own; done(lines, lastGoneSeq, restarted).
  function fetchRange(since, before, done) {
    let ws;
    try { ws = openSocket(streamQuery(since)); } catch (_) { return; }
    const got = [];
    let goneTo = null, liveSeq = null, finished = false;
    const finish = (restarted, failed) => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      ws.onmessage = ws.onclose = ws.onerror = null;
      try { ws.close(1000); } catch (_) { /* ignore */ }
      S.older = null;
      if (failed) status('Could not load older lines: ' + failed, true, true);
      else done(got, goneTo, restarted);
      markDirty();
    };
    const timer = setTimeout(() => finish(false, 'no answer in ' + OLDER_TIMEOUT / 1000 + ' s'), OLDER_TIMEOUT);
    S.older = { since, before };
    markDirty();
    ws.onmessage = (ev) => {
      if (typeof ev.data !== 'string') return;
      for (const raw of ev.data.split('\n')) {
        if (finished) return;
        if (raw) olderFrame(raw);
      }
    };
    const olderFrame = (raw) => {
      let m;
      try { m = JSON.parse(raw); } catch (_) { return; }
      if (!m || typeof m !== 'object') return;
      if (m.event === 'hello') {
        if (epochOf(raw, m) !== S.epoch) { finish(true); return; }
        liveSeq = typeof m.seq === 'number' ? m.seq : null;
        if (liveSeq !== null && liveSeq <= since) finish(false);
        return;
      }
      if (m.event === 'gap') {
        if (m.reason !== 'unpublished') goneTo = Math.max(goneTo || 0, Number(m.to));
        return;
      }
      if (typeof m.line !== 'string' || typeof m.seq !== 'number') return;
      if (m.seq >= before || (liveSeq !== null && m.seq >= liveSeq)) {
        if (m.seq < before) got.push(m);
        finish(false);
        return;
      }
      if (m.seq > since) got.push(m);
    };
    ws.onclose = () => finish(false, got.length ? null : 'the server closed the socket');
    ws.onerror = () => { /* onclose follows */ };
  }

  function prepend(lines, goneTo) {
    const add = [];   // [text or event, seq, file]
    if (goneTo !== null) {
      add.push([makeEvent(1, goneTo, '', 'older lines, up to #' + fmt(goneTo) + ', are no longer on the server', 'gap'), goneTo, '']);
    }
    for (const m of lines) {
      const file = typeof m.file === 'string' ? m.file : '';
      if (file) seeFile(file);
      add.push([m.line, m.seq, file]);
    }
    if (!add.length) return;
    // ids must stay ascending: older entries get ids below every held one
    const k = add.length, held = heldCount();
    const firstId = S.olderId - k;
    S.olderId = firstId;
    const old = C, oldE = S.E, E0 = S.E0;
    let cap = 1024;
    while (cap < k + held) cap *= 2;
    const N = { id: new Float64Array(cap), seq: new Float64Array(cap), file: new Int32Array(cap), lv: new Uint8Array(cap) };
    for (const key of ['id', 'seq', 'file', 'lv']) N[key].set(old[key].subarray(E0, E0 + held), k);
    for (const key of ['id', 'seq', 'file', 'lv']) C[key] = N[key];
    const E = new Array(k);
    const viewAdd = [];
    for (let j = 0; j < k; j++) {
      const [x, seq, file] = add[j];
      E[j] = x;
      if (typeof x === 'string') {
        const plain = plainOf(x);
        const lv = LV_CODE[F.levelOf(plain) || 'none'];
        setCols(j, firstId + j, seq, file, lv);
        S.heldLines++;
        S.lvCount[LEVELS[lv]]++;
        if (file) fileInfo(file).lines++;
        if (!S.all && lineMatches(file, lv, plain)) viewAdd.push(j);
      } else {
        x.id = firstId + j;
        setCols(j, x.id, seq, file, LV_CODE.none);
        if (!S.all && fileShown(file)) viewAdd.push(j);
      }
    }
    S.E = E.concat(oldE.slice(E0));
    S.E0 = 0;
    let shown = k;
    if (!S.all) {
      shown = viewAdd.length;
      for (let i = S.V0; i < S.V.length; i++) viewAdd.push(S.V[i] - E0 + k);
      S.V = viewAdd;
      S.V0 = 0;
    }
    if (!S.follow) S.top += shown;
    pickerChanged(null);
    markDirty();
  }

  // ---------- permalinks: #seq=N&epoch=E ----------

  function reachPermalink(e) {
    const link = S.permalink;
    link.found = true;
    S.permalink = null;
    if (e.seq !== link.seq) {
      status('Line #' + fmt(link.seq) + ' is not in this stream (no longer on the server, or not selected); showing the next one.', true, true);
    }
    S.cur = e;
    S.flash = e;
    setFollow(false);
    S.pinTop = true;
    const i = viewIndexOf(e.id);
    S.top = Math.max(0, i - Math.floor(S.visRows / 3));
    S.gen++;
    markDirty();
    writeHash();
  }

  function linkTo(e) {
    const parts = ['seq=' + e.seq];
    if (S.epoch !== null) parts.push('epoch=' + encodeURIComponent(S.epoch));
    if (e.file && S.files.size > 1) parts.unshift('file=' + enc(e.file));
    return location.origin + location.pathname + location.search + '#' + parts.join('&');
  }

  function copyLink(e) {
    if (!e || e.seq === null) return;
    const url = linkTo(e);
    const ok = () => status('Link to line #' + fmt(e.seq) + ' copied: ' + url, false, true);
    const fallback = () => {
      const t = document.createElement('textarea');
      t.value = url;
      document.body.appendChild(t);
      t.select();
      let done = false;
      try { done = document.execCommand('copy'); } catch (_) { done = false; }
      t.remove();
      if (done) ok(); else status('Link to line #' + fmt(e.seq) + ': ' + url, false, true);
    };
    S.lastLink = url;
    if (navigator.clipboard && window.isSecureContext) navigator.clipboard.writeText(url).then(ok, fallback);
    else fallback();
  }

  // ---------- rendering ----------

  function markDirty() {
    S.dirty = true;
    if (!S.raf) S.raf = requestAnimationFrame(frame);
  }

  function frame(now) {
    S.raf = 0;
    const t0 = performance.now();
    if (S.dirty) {
      // Following a stream that replaces the whole window between two frames, the window
      // is drawn every other frame (30 Hz): a window of all-new rows is as unreadable at
      // 60 Hz, and laying out a window of new text is most of a frame's cost. Scrolling,
      // keys and anything but the flood still draw on the next frame.
      if (S.follow && !S.paused && S.drewLast && S.tailNew >= S.visRows) {
        S.drewLast = false;
        S.raf = requestAnimationFrame(frame);
      } else {
        S.dirty = false;
        S.drewLast = S.tailNew >= S.visRows;
        S.tailNew = 0;
        render();
      }
    }
    updateCounts();
    if (S.pickerDirty) showPicker();
    const p = S.perf;
    const i = p.n % PERF_FRAMES;
    p.render[i] = performance.now() - t0;
    p.gap[i] = p.last ? now - p.last : 0;
    p.last = now;
    p.n++;
  }

  function setScroll(v) {
    const log = el.log;
    if (Math.abs(log.scrollTop - v) < 1) return;
    S.progScroll = v;
    log.scrollTop = v;
  }

  function render() {
    const log = el.log;
    const ch = log.clientHeight;
    const rowH = S.rowH;
    const vis = Math.max(1, Math.ceil(ch / rowH));
    S.visRows = vis;
    const n = shownCount();
    const digits = Math.max(3, String(S.lastSeq || 0).length);
    if (digits !== S.gutter) {
      S.gutter = digits;
      S.gen++;
      log.style.setProperty('--gw', (digits + 1) + 'ch');
    }
    const range = Math.max(0, n * rowH - ch + rowH);
    const px = Math.min(MAX_SCROLL_PX, range);
    S.scale = px > 0 ? range / px : 1;
    if (px !== S.sizerPx) { S.sizerPx = px; el.sizer.style.height = px + 'px'; }
    // pinTop: a permalink's line stays a third down, even with few lines after it yet.
    const bottom = n > vis && (S.follow || (!S.pinTop && S.top >= n - vis));
    let first;
    if (bottom) {
      first = n - vis - 1;
      S.top = n - vis;
      setScroll(px);
    } else {
      first = Math.max(0, S.pinTop ? Math.min(S.top, n - 1) : Math.min(S.top, n - vis));
      S.top = first;
      setScroll(Math.min(px, first * rowH / S.scale));
    }
    first = Math.max(0, first);
    const last = Math.min(n, first + vis + 2);
    el.win.classList.toggle('bottom', bottom);
    const nodes = [];
    if (!bottom && first === 0 && heldCount()) nodes.push(topRow(n));
    const cache = new Map();
    const mat = new Map();   // the entry objects kept: those drawn, and the selected one
    const curId = S.cur ? S.cur.id : NaN;
    for (let i = first; i < last; i++) {
      const j = vIdx(i);
      const id = C.id[j];
      let node = S.cache.get(id);
      let e;
      if (node && node.gen === S.gen) e = node.lt;
      else { e = entryAt(j); node = e.k === 0 ? lineRow(e) : sepRow(e); }
      cache.set(id, node);
      if (e.k === 0) mat.set(id, e);
      node.classList.toggle('cur', id === curId);
      nodes.push(node);
    }
    if (S.cur && S.cur.k === 0 && !mat.has(curId)) mat.set(curId, S.cur);
    S.cache = cache;
    S.mat = mat;
    S.domRows = nodes.length;
    if (n === 0) {
      const empty = document.createElement('div');
      empty.className = 'empty';
      empty.textContent = heldCount() ? 'No line matches the filters.' : 'Waiting for lines…';
      nodes.push(empty);
    }
    // Only the rows that came or went are touched: a row moved in the DOM is laid out
    // (its text shaped) again, and following the tail shifts every row each frame.
    const win = el.win;
    const keep = new Set(nodes);
    const old = Array.from(win.children);
    if (!old.some((c) => keep.has(c))) win.replaceChildren(...nodes);   // a new window
    else {
      for (const c of old) if (!keep.has(c)) c.remove();
      let ref = win.firstChild;
      for (const node of nodes) {
        if (node === ref) { ref = ref.nextSibling; continue; }
        win.insertBefore(node, ref);
      }
    }
    placeLink();
    if (S.flash) {
      const f = S.cache.get(S.flash.id);
      if (f) { f.classList.add('flash'); S.flash = null; }
    }
  }

  // One "copy link" button, on the row under the pointer or else the selected one: a
  // button on every row made each new row a few more layout objects, every frame.
  function placeLink() {
    let row = S.hover && S.hover.isConnected ? S.hover : null;
    if (!row && S.cur) row = S.cache.get(S.cur.id) || null;
    const a = el.lnk;
    if (!row || !row.lt || row.lt.k !== 0 || row.lt.seq === null) { if (a.parentNode) a.remove(); return; }
    const tr = row.querySelector(':scope > .tree');
    if (a.parentNode !== row || a.nextSibling !== tr) row.insertBefore(a, tr);
  }

  function onRowsHover(ev) {
    const row = ev.type === 'mouseleave' ? null : ev.target.closest('.row.line');
    if (row === S.hover) return;
    S.hover = row;
    placeLink();
  }

  // Above the oldest row: what lies before it.
  function topRow(n) {
    const row = document.createElement('div');
    row.className = 'row sep older';
    const s = document.createElement('span');
    if (S.older) s.textContent = '— loading older lines… —';
    else if (S.startReached === 'start' || oldestHeldSeq() === 1) s.textContent = '— start of the stream —';
    else if (S.startReached === 'gone') s.textContent = '— older lines are no longer on the server —';
    else if (S.startReached === 'restart') s.textContent = '— the server restarted; older lines belong to its earlier run —';
    else {
      const b = document.createElement('button');
      b.type = 'button';
      b.dataset.act = 'older';
      b.textContent = 'Load older lines (g)';
      s.appendChild(b);
    }
    row.appendChild(s);
    return row;
  }

  function sepRow(e) {
    const row = document.createElement('div');
    row.className = e.k === 1 ? 'row sep event' : 'row sep note';
    row.dataset.event = e.ev;
    if (e.file) row.dataset.file = e.file;
    const s = document.createElement('span');
    s.textContent = e.line;
    row.appendChild(s);
    row.gen = S.gen;
    row.lt = e;
    return row;
  }

  // Text with the filter's matches marked (only text nodes and <mark>).
  function appendText(parent, text) {
    const re = S.filterMark;
    if (!re || !text) { parent.appendChild(document.createTextNode(text)); return; }
    re.lastIndex = 0;
    let m, last = 0, marks = 0;
    while ((m = re.exec(text)) !== null) {
      const s = m.index, end = s + m[0].length;
      if (end === s) { re.lastIndex++; if (re.lastIndex > text.length) break; continue; }
      if (s > last) parent.appendChild(document.createTextNode(text.slice(last, s)));
      const mk = document.createElement('mark');
      mk.textContent = m[0];
      parent.appendChild(mk);
      last = end;
      if (++marks >= 200) break;
    }
    if (last < text.length) parent.appendChild(document.createTextNode(last ? text.slice(last) : text));
  }

  function appendAnsi(parent, line) {
    if (!F.hasAnsi(line) && !/[\x00-\x08\x0a-\x1f\x7f-\x9f]/.test(line)) { appendText(parent, line); return; }
    const spans = F.ansiSpans(line);
    for (let i = 0; i < spans.length; i++) {
      const sp = spans[i];
      if (i === MAX_SPANS) {   // a line of nothing but escapes: the rest as plain text
        appendText(parent, spans.slice(i).map((x) => x.text).join(''));
        break;
      }
      if (!sp.cls && !sp.fg && !sp.bg) { appendText(parent, sp.text); continue; }
      const span = document.createElement('span');
      if (sp.cls) span.className = sp.cls;
      // CSSOM, not a style attribute: allowed by the CSP, and never parsed from the line.
      if (sp.fg) span.style.color = sp.fg;
      if (sp.bg) span.style.backgroundColor = sp.bg;
      appendText(span, sp.text);
      parent.appendChild(span);
    }
  }

  function timeText(t) {
    if (!t) return '';
    if (S.relTime) {
      const ms = Date.parse(t);
      if (!Number.isNaN(ms)) {
        const d = Math.round((Date.now() - ms) / 1000);
        if (Math.abs(d) < 60) return d + 's ago';
        if (Math.abs(d) < 3600) return Math.round(d / 60) + 'm ago';
        if (Math.abs(d) < 86400) return Math.round(d / 3600) + 'h ago';
        return Math.round(d / 86400) + 'd ago';
      }
    }
    const m = /T(\d\d:\d\d:\d\d(?:\.\d{1,3})?)/.exec(t);
    return m ? m[1] : t;
  }

  function span(parent, cls, text) {
    const s = document.createElement('span');
    s.className = cls;
    if (text !== undefined) appendText(s, text);
    parent.appendChild(s);
    return s;
  }

  function lineRow(e) {
    const row = document.createElement('div');
    row.className = 'row line';
    row.lt = e;
    row.gen = S.gen;
    if (e.seq !== null) row.dataset.seq = e.seq;
    row.dataset.level = e.lv;
    // The gutter is text padded to the widest seq (the font is monospace): a pseudo-element
    // or an inline-block per row cost a third of a frame's layout.
    const g = document.createElement('span');
    g.className = 'g';
    g.textContent = (e.seq === null ? '' : String(e.seq)).padStart(S.gutter) + ' ';
    row.appendChild(g);
    if (e.file) {
      row.dataset.file = e.file;
      const f = fileInfo(e.file);
      const tag = document.createElement('span');
      tag.className = 'ftag fc' + f.colour;
      tag.textContent = e.file;
      row.appendChild(tag);
    }
    const st = structured(e);
    const t = document.createElement('span');
    t.className = 'text';
    if (st) {
      row.classList.add('st');
      if (st.time) span(t, 'ts', timeText(st.time));
      if (st.level) span(t, 'lvl', st.level);
      for (const c of S.cols) {
        const v = fieldText(st, c);
        const cell = span(t, 'col', v === undefined ? '–' : v);
        cell.dataset.path = c;
        if (v !== undefined) { cell.dataset.act = 'has'; cell.dataset.value = v; }
      }
      if (st.msg !== null && st.msg !== undefined) {
        span(t, 'msg', st.msg);
        const rest = restOf(st);
        if (rest) span(t, 'rest', rest);
      } else appendText(t, e.plain);
    } else {
      appendAnsi(t, e.line);
    }
    row.appendChild(t);
    if (e.open && st) row.appendChild(tree(st));
    return row;
  }

  const SHOWN_KEYS = new Set(['time', 'ts', 'timestamp', '@t', 't', 'date', 'datetime', '@timestamp', 'level', 'lvl', 'severity', 'severityText', '@l', 'msg', 'message', '@m', '@mt', 'body']);
  function restOf(st) {
    const out = [];
    for (const p of F.fieldPaths(st.fields)) {
      if (SHOWN_KEYS.has(p) || S.cols.includes(p) || p === 'log.level') continue;
      out.push(p + '=' + F.formatValue(F.getField(st.fields, p)));
      if (out.length >= 12) break;
    }
    return out.join(' ');
  }

  function tree(st) {
    const box = document.createElement('div');
    box.className = 'tree';
    for (const p of F.fieldPaths(st.fields)) {
      const v = F.formatValue(F.getField(st.fields, p));
      const r = document.createElement('div');
      r.className = 'kv';
      span(r, 'k', p);
      const val = span(r, 'v', v);
      val.dataset.act = 'has';
      val.dataset.path = p;
      val.dataset.value = v;
      val.title = 'Click: only lines with ' + p + '=' + v + ' · Alt-click: exclude them';
      for (const [act, label, title] of [['has', '=', 'Only lines with this value'], ['not', '≠', 'Hide lines with this value'], ['col', '▥', 'Show this field as a column']]) {
        const b = document.createElement('button');
        b.type = 'button';
        b.className = 'fa';
        b.dataset.act = act;
        b.dataset.path = p;
        b.dataset.value = v;
        b.title = title;
        b.textContent = label;
        r.appendChild(b);
      }
      box.appendChild(r);
    }
    return box;
  }

  function measureRow() {
    const probe = document.createElement('div');
    probe.className = 'row line';
    const t = document.createElement('span');
    t.className = 'text';
    t.textContent = 'X';
    probe.appendChild(t);
    el.win.appendChild(probe);
    const h = probe.getBoundingClientRect().height;
    probe.remove();
    if (h > 4) S.rowH = h;
  }

  // ---------- filters ----------

  function buildFilter(forMarks) {
    const v = el.filter.value;
    el.filter.removeAttribute('aria-invalid');
    if (!v) return null;
    try {
      return new RegExp(S.regex ? v : escapeRe(v), (S.matchCase ? '' : 'i') + (forMarks ? 'g' : ''));
    } catch (_) {
      el.filter.setAttribute('aria-invalid', 'true');
      return null;
    }
  }

  function onFilterChange(now) {
    clearTimeout(S.filterTimer);
    const run = () => {
      S.filterTest = buildFilter(false);
      S.filterMark = buildFilter(true);
      writeHash();
      rebuildView();
    };
    if (now) run(); else S.filterTimer = setTimeout(run, 120);
  }

  function setLevel(lv, only) {
    if (only) S.lvOff = new Set(LEVELS.filter((l) => l !== lv));
    else if (S.lvOff.has(lv)) S.lvOff.delete(lv);
    else S.lvOff.add(lv);
    if (S.lvOff.size === LEVELS.length) S.lvOff.clear();
    showChips();
    writeHash();
    rebuildView();
  }

  function showChips() {
    for (const b of el.levels.querySelectorAll('.lv')) b.setAttribute('aria-pressed', String(!S.lvOff.has(b.dataset.lv)));
  }

  function addFieldFilter(kind, path, value) {
    const list = kind === 'has' ? S.has : S.not;
    if (!list.some(([f, v]) => f === path && v === value)) list.push([path, value]);
    showFieldsBar();
    writeHash();
    rebuildView();
  }

  function pinColumn(path) {
    if (!S.cols.includes(path)) S.cols.push(path);
    S.gen++;
    showFieldsBar();
    writeHash();
    markDirty();
  }

  // Pinned columns and field filters, each with × to remove it.
  function showFieldsBar() {
    const bar = el.cols;
    const chips = [];
    const chip = (label, act, i) => {
      const c = document.createElement('span');
      c.className = 'chip ' + act;
      c.appendChild(document.createTextNode(label));
      const x = document.createElement('button');
      x.type = 'button';
      x.dataset.act = act;
      x.dataset.i = String(i);
      x.textContent = '×';
      x.title = 'Remove';
      c.appendChild(x);
      chips.push(c);
    };
    S.cols.forEach((c, i) => chip('column ' + c, 'uncol', i));
    S.has.forEach(([f, v], i) => chip(f + ' = ' + v, 'unhas', i));
    S.not.forEach(([f, v], i) => chip(f + ' ≠ ' + v, 'unnot', i));
    bar.replaceChildren(...chips);
    bar.hidden = chips.length === 0;
  }

  function onFieldsBarClick(ev) {
    const b = ev.target.closest('button[data-act]');
    if (!b) return;
    const i = Number(b.dataset.i);
    if (b.dataset.act === 'uncol') { S.cols.splice(i, 1); S.gen++; markDirty(); } else if (b.dataset.act === 'unhas') S.has.splice(i, 1);
    else if (b.dataset.act === 'unnot') S.not.splice(i, 1);
    showFieldsBar();
    writeHash();
    if (b.dataset.act !== 'uncol') rebuildView();
  }

  // ---------- server grep ----------

  function applyServerGrep() {
    const v = el.filter.value;
    if (!v) { setGrep(''); return; }
    if (S.regex) {
      try { new RegExp(v); } catch (e) { status('Not a valid regular expression: ' + e.message, true, true); return; }
    }
    setGrep((S.matchCase ? '' : '(?i)') + (S.regex ? v : escapeRe(v)));
  }

  function setGrep(g) {
    if (g === S.grep) return;
    S.grep = g;
    el.grepChip.hidden = !g;
    el.grepText.textContent = g;
    el.serverGrep.setAttribute('aria-pressed', g ? 'true' : 'false');
    // A new filter is a new view: start again from the backlog.
    clearView();
    S.lastSeq = 0;
    S.helloSeq = null;
    S.resumable = false;
    note('grep', g ? 'server grep: ' + g : 'server grep cleared');
    reconnectNow();
  }

  // ---------- UI state ----------

  function setState(st) {
    document.body.dataset.state = st;
    el.connText.textContent = st;
  }

  function status(text, isError, transient) {
    if (!transient) S.connMsg = [text, !!isError];
    el.status.textContent = text;
    el.status.classList.toggle('error', !!isError);
  }

  function setTitle() {
    const names = S.files.size ? Array.from(S.files.keys()).slice(0, 5).join(', ') + (S.files.size > 5 ? '…' : '') + ' — logtail' : 'logtail';
    document.title = (S.unseen && document.hidden ? '(' + fmt(S.unseen) + ') ' : '') + names;
  }

  function connectionState() {
    const st = document.body ? document.body.dataset.state : '';
    if (S.paused) return 'paused';
    if (st === 'live') return 'live';
    if (st === 'connecting' || st === 'reconnecting') return 'reconnecting';
    return 'closed';
  }

  // Text that did not change is not written again: a new text node is laid out anew.
  function setText(node, text) {
    if (node.textContent !== text) node.textContent = text;
  }

  function updateCounts() {
    setText(el.stConn, connectionState());
    setText(el.stSeq, S.lastSeq ? fmt(S.lastSeq) : '–');
    setText(el.stRecv, fmt(S.count));
    setText(el.stLost, fmt(S.lost));
    el.stLostBox.classList.toggle('bad', S.lost > 0);
    setText(el.stHeld, fmt(S.heldLines) + (viewCount() !== heldCount() ? ' · ' + fmt(viewCount()) + ' shown' : ''));
    for (const b of el.levelChips || []) setText(b.lastElementChild, fmt(S.lvCount[b.dataset.lv]));
    const newLines = S.pausedNew + S.skipped;
    setText(el.pause, S.paused ? (newLines ? 'Resume · ' + fmt(newLines) + ' new' : 'Resume') : 'Pause');
    const j = el.jump;
    if (S.paused) {
      j.hidden = false;
      setText(j, newLines ? 'Paused · ' + plural(newLines, 'new line') + ' — resume' : 'Paused — resume');
    } else if (!S.follow) {
      j.hidden = false;
      const below = S.belowNew + S.skipped;
      setText(j, below ? '↓ ' + plural(below, 'new line') : '↓ Follow');
    } else j.hidden = true;
  }

  // Leaving a pause or scroll-back: if the page stopped storing, fetch what it skipped.
  function catchUp() {
    drain(Infinity);   // what arrived while overflowing is counted first
    if (!S.overflow) return;
    S.overflow = false;
    S.skipped = 0;
    S.lastSeq = S.heldSeq;
    evict();
    if (S.resumable) reconnectNow();
  }

  function setPaused(p) {
    if (p === S.paused) return;
    S.paused = p;
    document.body.dataset.paused = p ? 'true' : 'false';
    el.pause.setAttribute('aria-pressed', String(p));
    if (p) {
      S.pauseId = viewCount() ? viewIdAt(viewCount() - 1) : 0;
      S.pausedNew = 0;
      status('Paused: new lines are kept and counted (Space to resume).', false, true);
    } else {
      S.pausedNew = 0;
      if (S.connMsg) status(S.connMsg[0], S.connMsg[1]);
      if (S.follow) catchUp();
    }
    markDirty();
    updateCounts();
  }

  function setFollow(f) {
    S.follow = f;
    if (f) S.pinTop = false;
    el.follow.setAttribute('aria-pressed', String(f));
    if (f) {
      S.belowNew = 0;
      if (!S.paused) catchUp();
    }
    markDirty();
    updateCounts();
  }

  function setWrap(w) {
    S.wrap = w;
    store.set(WRAP_KEY, w ? '1' : null);
    el.log.classList.toggle('wrap', w);
    el.wrap.setAttribute('aria-pressed', String(w));
    markDirty();
  }

  function setRelTime(r) {
    S.relTime = r;
    store.set(TIME_KEY, r ? 'rel' : null);
    el.time.textContent = r ? 'Rel time' : 'Time';
    el.time.setAttribute('aria-pressed', String(r));
    S.gen++;
    markDirty();
  }

  function setRing(n) {
    if (!Number.isInteger(n) || n < RING_MIN) return;
    S.cap = n;
    store.set(RING_KEY, n === RING_DEFAULT ? null : String(n));
    if (S.heldLines > S.cap) { evict(); rebuildView(); }
    markDirty();
  }

  function cycleTheme() {
    // auto -> the opposite of what auto shows -> the other one -> auto
    const dark = matchMedia('(prefers-color-scheme: dark)').matches;
    const order = dark ? [null, 'light', 'dark'] : [null, 'dark', 'light'];
    theme = order[(order.indexOf(theme) + 1) % 3];
    if (theme) root.dataset.theme = theme; else delete root.dataset.theme;
    store.set(THEME_KEY, theme);
    showTheme();
  }

  function showTheme() {
    const label = theme ? theme[0].toUpperCase() + theme.slice(1) : 'Auto';
    el.theme.textContent = label;
    el.theme.title = 'Theme: ' + label.toLowerCase() + ' (click to change)';
  }

  function clearView() {
    drain(Infinity);
    S.E = []; S.E0 = 0; S.V = []; S.V0 = 0; S.mat = new Map(); S.openIds.clear();
    S.heldLines = 0;
    for (const l of LEVELS) S.lvCount[l] = 0;
    S.count = 0; S.pausedNew = 0; S.belowNew = 0; S.skipped = 0; S.overflow = false;
    S.startReached = ''; S.cur = null; S.top = 0;
    for (const f of S.files.values()) { f.lines = 0; f.unread = 0; }
    pickerChanged(null);
    setFollow(true);
    markDirty();
  }

  // ---------- moving around: selection, matches, errors ----------

  function scrollToIndex(i) {
    setFollow(false);
    S.top = Math.max(0, i - Math.floor(S.visRows / 3));
    markDirty();
  }

  function select(e) {
    S.cur = e;
    const i = viewIndexOf(e.id);
    if (i < S.top || i >= S.top + S.visRows - 1 || S.follow) scrollToIndex(i);
    markDirty();
  }

  // The index to search from: the selected row, else the top row on screen.
  function fromIndex() {
    if (S.cur && !gone(S.cur)) {
      const i = viewIndexOf(S.cur.id);
      if (i < viewCount() && viewIdAt(i) === S.cur.id) return i;
    }
    return S.follow ? Math.max(0, shownCount() - 1) : S.top;
  }

  function findNext(dir, test) {
    const n = shownCount();
    let i = fromIndex();
    // Past the selected row; with none, the row searched from (the last one when
    // following, else the top one on screen) is a candidate itself, in the direction it can be.
    if ((S.cur && !gone(S.cur) && i < viewCount() && viewIdAt(i) === S.cur.id) || (S.follow ? dir > 0 : dir < 0)) i += dir;
    for (; i >= 0 && i < n; i += dir) {
      const j = vIdx(i);
      if (isLine(j) && test(j)) { select(entryAt(j)); return true; }
    }
    status(dir > 0 ? 'No more below.' : 'No more above' + (S.startReached ? '.' : ' (g loads older lines).'), false, true);
    return false;
  }

  const isMatch = (j) => !!S.filterTest && S.filterTest.test(plainAt(j));
  const isError = (j) => C.lv[j] === LV_CODE.error;

  function moveCursor(dir) {
    const n = shownCount();
    if (!n) return;
    let i = fromIndex() + (S.cur ? dir : 0);
    i = Math.max(0, Math.min(n - 1, i));
    select(viewAt(i));
  }

  function toggleOpen(e) {
    if (!e || e.k !== 0 || !structured(e)) return;
    e.open = !e.open;
    if (e.open) S.openIds.add(e.id); else S.openIds.delete(e.id);
    S.cache.delete(e.id);
    markDirty();
  }

  function onRowsClick(ev) {
    const t = ev.target;
    const act = t.closest('[data-act]');
    const row = t.closest('.row');
    const e = row ? row.lt : null;
    if (act) {
      const a = act.dataset.act;
      if (a === 'older') { loadOlder(); return; }
      if (a === 'link') { copyLink(e); S.cur = e; markDirty(); return; }
      if (a === 'col') { pinColumn(act.dataset.path); return; }
      if (a === 'has' || a === 'not') {
        addFieldFilter(a === 'has' && !ev.altKey ? 'has' : 'not', act.dataset.path, act.dataset.value);
        return;
      }
    }
    if (!e || e.k !== 0) return;
    const sel = window.getSelection();
    if (sel && String(sel).length) return;   // the reader is selecting text
    S.cur = e;
    if (t.closest('.tree')) { markDirty(); return; }
    toggleOpen(e);
    markDirty();
  }

  function download(jsonl) {
    const out = [];
    const n = shownCount();
    for (let i = 0; i < n; i++) {
      const j = vIdx(i);
      if (!isLine(j)) continue;
      out.push(jsonl ? JSON.stringify({ seq: seqAt(j), file: fileAt(j), line: S.E[j] }) : S.E[j]);
    }
    const blob = new Blob([out.join('\n') + (out.length ? '\n' : '')], { type: jsonl ? 'application/jsonl' : 'text/plain' });
    const a = document.createElement('a');
    a.href = URL.createObjectURL(blob);
    const base = (S.files.size === 1 ? Array.from(S.files.keys())[0] : 'logtail').replace(/[^\w.-]+/g, '_');
    a.download = base + (jsonl ? '.jsonl' : '.log');
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
    status('Saved ' + plural(out.length, 'line') + ' as ' + a.download + '.', false, true);
  }

  // ---------- wiring ----------

  function init() {
    const $ = (id) => document.getElementById(id);
    el = {
      log: $('log'), win: $('win'), sizer: $('sizer'), files: $('files'), connText: $('conn-text'),
      filter: $('filter'), regex: $('regex'), matchCase: $('case'), hide: $('hide'), serverGrep: $('server-grep'),
      grepChip: $('grep-chip'), grepText: $('grep-text'), grepClear: $('grep-clear'), levels: $('levels'),
      pause: $('pause'), follow: $('follow'), wrap: $('wrap'), time: $('time'), download: $('download'),
      clear: $('clear'), theme: $('theme'), help: $('help'), ring: $('ring'), jump: $('jump'),
      status: $('status'), retry: $('retry'), cols: $('cols'), picker: $('picker'), fileList: $('file-list'),
      allFiles: $('all-files'), stConn: $('st-conn'), stSeq: $('st-seq'), stRecv: $('st-recv'),
      stLost: $('st-lost'), stLostBox: $('st-lost-box'), stHeld: $('st-held'),
    };
    document.body.dataset.paused = 'false';
    setState('connecting');
    showTheme();
    setWrap(S.wrap);
    setRelTime(S.relTime);
    el.ring.value = String(S.cap);
    measureRow();
    applyHash();

    const params = new URLSearchParams(location.search);
    const b = params.get('backlog');
    if (b !== null && /^\d{1,9}$/.test(b)) S.backlog = Number(b);
    const g = params.get('grep');
    if (g) {
      S.grep = g;
      el.grepChip.hidden = false;
      el.grepText.textContent = g;
      el.serverGrep.setAttribute('aria-pressed', 'true');
    }
    if (S.permalink && S.permalink.epoch !== null) {
      // Open the stream just before the linked line: the server replays from there.
      S.epoch = S.permalink.epoch;
      S.resumable = true;
      S.lastSeq = Math.max(0, S.permalink.seq - 1 - PERMALINK_CONTEXT);
      S.helloSeq = S.lastSeq;
    }

    el.filter.addEventListener('input', () => onFilterChange(false));
    el.filter.addEventListener('keydown', (e) => {
      if (e.key === 'Enter') { e.preventDefault(); onFilterChange(true); }
    });
    const toggle = (btn, key) => btn.addEventListener('click', () => {
      S[key] = !S[key];
      btn.setAttribute('aria-pressed', String(S[key]));
      onFilterChange(true);
      S.gen++;
    });
    toggle(el.regex, 'regex');
    toggle(el.matchCase, 'matchCase');
    toggle(el.hide, 'hide');
    el.serverGrep.addEventListener('click', applyServerGrep);
    el.grepClear.addEventListener('click', () => setGrep(''));
    el.levels.addEventListener('click', (ev) => {
      const btn = ev.target.closest('.lv');
      if (btn) setLevel(btn.dataset.lv, ev.altKey || ev.detail === 2);
    });
    el.pause.addEventListener('click', () => setPaused(!S.paused));
    el.follow.addEventListener('click', () => setFollow(!S.follow));
    el.jump.addEventListener('click', () => { if (S.paused) setPaused(false); setFollow(true); });
    el.wrap.addEventListener('click', () => setWrap(!S.wrap));
    el.time.addEventListener('click', () => setRelTime(!S.relTime));
    el.download.addEventListener('click', (ev) => download(ev.shiftKey));
    el.clear.addEventListener('click', clearView);
    el.theme.addEventListener('click', cycleTheme);
    el.retry.addEventListener('click', reconnectNow);
    el.ring.addEventListener('change', () => setRing(Number(el.ring.value)));
    el.levelChips = Array.from(el.levels.querySelectorAll('.lv'));
    el.win.addEventListener('click', onRowsClick);
    el.win.addEventListener('mouseover', onRowsHover);
    el.win.addEventListener('mouseleave', onRowsHover);
    el.lnk = document.createElement('button');
    el.lnk.type = 'button';
    el.lnk.className = 'lnk';
    el.lnk.dataset.act = 'link';
    el.lnk.title = 'Copy a link to this line (c)';
    el.lnk.textContent = '#';
    el.cols.addEventListener('click', onFieldsBarClick);
    el.fileList.addEventListener('click', (ev) => {
      const btn = ev.target.closest('.ftog');
      if (btn) toggleFile(btn.dataset.file, ev.altKey || ev.detail === 2);
    });
    el.allFiles.addEventListener('click', () => setShownFiles(null));

    el.log.addEventListener('scroll', onScroll, { passive: true });
    el.log.addEventListener('wheel', (ev) => {
      // Nothing to scroll yet (every row fits): a wheel up still asks for older lines.
      if (ev.deltaY < 0 && el.log.scrollTop === 0) loadOlder();
    }, { passive: true });
    window.addEventListener('resize', markDirty);

    document.addEventListener('keydown', onKey);
    document.addEventListener('click', (e) => {
      if (el.help.open && !el.help.contains(e.target)) el.help.open = false;
    });
    document.addEventListener('visibilitychange', () => {
      if (!document.hidden) {
        S.unseen = 0;
        setTitle();
        if (S.timer) reconnectNow();   // don't make a returning reader wait out a long backoff
      }
    });
    window.addEventListener('online', () => { if (S.timer) reconnectNow(); });
    // Back/forward cache: a page left with an open socket would stay connected while frozen.
    window.addEventListener('pagehide', () => { clearTimeout(S.timer); S.timer = 0; drop(); });
    window.addEventListener('pageshow', (e) => { if (e.persisted) reconnectNow(); });
    window.addEventListener('hashchange', () => {
      const t = hashValues(readHash(), 'token')[0] || '';
      applyHash();
      rebuildView();
      if (t !== token) { token = t; S.fails = 0; S.filesLoaded = false; reconnectNow(); return; }
      if (S.permalink) goToPermalink();
    });

    updateCounts();
    connect();
  }

  // A permalink opened in a page that already streams.
  function goToPermalink() {
    const link = S.permalink;
    if (link.epoch !== null && S.epoch !== null && link.epoch !== S.epoch) {
      status('That link is for an earlier run of the server; its lines are gone.', true, true);
      S.permalink = null;
      return;
    }
    for (let j = S.E0; j < S.E.length; j++) {
      if (isLine(j) && seqAt(j) !== null && seqAt(j) >= link.seq) { reachPermalink(entryAt(j)); return; }
    }
    // Not held: start the view again just before it.
    clearView();
    S.lastSeq = Math.max(0, link.seq - 1 - PERMALINK_CONTEXT);
    S.helloSeq = S.lastSeq;
    S.resumable = S.epoch !== null;
    reconnectNow();
  }

  function onScroll() {
    const log = el.log;
    if (S.progScroll !== null) {
      const expected = S.progScroll;
      S.progScroll = null;
      if (Math.abs(log.scrollTop - expected) < 2) return;
    }
    S.pinTop = false;
    const range = log.scrollHeight - log.clientHeight;
    if (range > 0 && log.scrollTop >= range - 2) {
      if (!S.follow) setFollow(true);
    } else {
      if (S.follow) setFollow(false);
      S.top = Math.floor(log.scrollTop * S.scale / S.rowH);
      if (log.scrollTop <= 0) loadOlder();
    }
    markDirty();
  }

  function onKey(e) {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const t = e.target;
    const typing = t instanceof HTMLInputElement || t instanceof HTMLTextAreaElement || (t && t.isContentEditable);
    if (typing) {
      if (e.key === 'Escape' && t === el.filter) {
        if (el.filter.value) { el.filter.value = ''; onFilterChange(true); } else el.filter.blur();
        e.preventDefault();
      }
      return;
    }
    const key = e.key;
    const handled = () => e.preventDefault();
    switch (key) {
      case ' ':
        if (t instanceof HTMLButtonElement || (t && t.tagName === 'SUMMARY')) return; // let Space press it
        handled(); setPaused(!S.paused); break;
      case '/': handled(); el.filter.focus(); el.filter.select(); break;
      case 'n': handled(); findNext(1, isMatch); break;
      case 'N': handled(); findNext(-1, isMatch); break;
      case 'e': handled(); findNext(1, isError); break;
      case 'E': handled(); findNext(-1, isError); break;
      case 'j': case 'ArrowDown': if (key === 'ArrowDown' && t !== el.log) return; handled(); moveCursor(1); break;
      case 'k': case 'ArrowUp': if (key === 'ArrowUp' && t !== el.log) return; handled(); moveCursor(-1); break;
      case 'Enter': if (t instanceof HTMLButtonElement) return; handled(); toggleOpen(S.cur); break;
      case 'c': handled(); copyLink(S.cur); break;
      case 'g': case 'Home': handled(); setFollow(false); S.top = 0; markDirty(); loadOlder(); break;
      case 'G': case 'End': handled(); setFollow(true); break;
      case 'f': handled(); setFollow(!S.follow); break;
      case 'w': handled(); setWrap(!S.wrap); break;
      case 't': handled(); setRelTime(!S.relTime); break;
      case '?': handled(); el.help.open = !el.help.open; break;
      case 'Escape':
        if (el.help.open) { el.help.open = false; break; }
        if (S.cur) { S.cur = null; markDirty(); break; }
        if (el.filter.value) { el.filter.value = ''; onFilterChange(true); }
        break;
      default:
    }
  }

  // ---------- devtools API (DESIGN.md, "The viewer page") ----------
  // In the console: logtail.lines(), logtail.state(), logtail.pause(), logtail.resume().

  const pct = (arr, count, q) => {
    const n = Math.min(count, arr.length);
    if (!n) return 0;
    const s = Array.from(arr.subarray(0, n)).sort((a, b) => a - b);
    return s[Math.min(n - 1, Math.floor(q * n))];
  };

  const api = Object.freeze({
    /** Every line the page holds, oldest first, as {seq, file, line}. */
    lines() {
      const out = [];
      for (let j = S.E0; j < S.E.length; j++) {
        if (isLine(j)) out.push({ seq: seqAt(j), file: fileAt(j), line: S.E[j] });
      }
      return out;
    },
    /** The connection, the stream it reads (epoch, last seq) and what it got or lost. */
    state() {
      return {
        connection: connectionState(), epoch: S.epoch, seq: S.lastSeq, received: S.count, lost: S.lost,
        held: S.heldLines, capacity: S.cap, shown: viewCount(), following: S.follow,
        newLines: S.pausedNew + S.skipped, domRows: el.win ? el.win.querySelectorAll('.row').length : 0,
        rowsOnScreen: S.visRows, selected: S.cur && S.cur.seq !== null ? S.cur.seq : null,
        older: S.older ? 'loading' : (S.startReached || 'more'),
      };
    },
    /** The rows of the view (filters applied), oldest first: lines and the stream's events. */
    view() {
      const out = [];
      const n = shownCount();
      for (let i = 0; i < n; i++) {
        const e = viewAt(i);
        out.push(e.k === 0 ? { kind: 'line', seq: e.seq, file: e.file, line: e.line, level: e.lv === 'none' ? '' : e.lv }
          : { kind: e.k === 1 ? 'event' : 'note', event: e.ev, file: e.file, text: e.line });
      }
      return out;
    },
    /** Frame timings (ms) of the last frames drawn. */
    perf() {
      const p = S.perf;
      const n = Math.min(p.n, PERF_FRAMES);
      return {
        frames: p.n, renderP50: pct(p.render, n, 0.5), renderP99: pct(p.render, n, 0.99),
        renderMax: pct(p.render, n, 1), frameGapP50: pct(p.gap, n, 0.5), frameGapP99: pct(p.gap, n, 0.99),
      };
    },
    pause() { setPaused(true); },
    resume() { setPaused(false); },
  });
  Object.defineProperty(window, 'logtail', { value: api, enumerable: true });

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
  else init();
})();
