/* logtail-ws viewer. Plain ES2020, no dependencies, CSP-safe (no inline code, no eval).
 * Log data is only ever written with textContent / text nodes. */
(() => {
  'use strict';

  const MAX_LINES = 5000;        // rows kept in the DOM (oldest chunk removed first)
  const CHUNK = 100;             // rows per chunk element (the unit of trimming)
  const MAX_PENDING = MAX_LINES; // rows buffered while paused or hidden
  const BACKOFF_MIN = 500;       // ms
  const BACKOFF_MAX = 10000;     // ms
  const FAIL_HINT_AFTER = 3;     // failed attempts (never opened) before the token hint
  const THEME_KEY = 'logtail.theme';
  const WRAP_KEY = 'logtail.wrap';

  const store = {
    get(k) { try { return localStorage.getItem(k); } catch (_) { return null; } },
    set(k, v) { try { if (v == null) localStorage.removeItem(k); else localStorage.setItem(k, v); } catch (_) { /* private mode */ } },
  };

  // Theme first (this script runs in <head>), so there is no flash of the wrong theme.
  const root = document.documentElement;
  let theme = store.get(THEME_KEY);
  if (theme !== 'light' && theme !== 'dark') theme = null;
  if (theme) root.dataset.theme = theme;

  const S = {
    ws: null, opened: false, everOpened: false,
    epoch: null, helloSeq: null, lastSeq: 0, resumable: false,
    attempt: 0, fails: 0, timer: 0,
    grep: '', backlog: null,
    paused: false, follow: true, wrap: store.get(WRAP_KEY) === '1',
    connMsg: null, pending: [], raf: 0, count: 0, newWhilePaused: 0, unseen: 0, titleTimer: 0,
    rows: 0, domLines: 0, domHits: 0, gw: 0,
    files: new Set(), fileState: new Map(),
    filter: null, filterTimer: 0, regex: false, matchCase: false,
    lost: 0,
  };
  let el = {};

  // Token from the fragment (#token=T); never put in a URL. Parsed by hand: '+' is a valid token char.
  const readToken = () => {
    const m = /(?:^#|&)token=([^&]*)/.exec(location.hash);
    if (!m) return '';
    try { return decodeURIComponent(m[1]); } catch (_) { return m[1]; }
  };
  let token = readToken();

  const fmt = (n) => n.toLocaleString();
  const plural = (n, w) => fmt(n) + ' ' + w + (n === 1 ? '' : 's');
  const escapeRe = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

  // ---------- connection ----------

  function wsUrl() {
    const q = ['format=json'];
    if (S.resumable && S.epoch !== null) {
      const since = S.lastSeq > 0 ? S.lastSeq : (S.helloSeq || 0);
      q.push('since=' + since, 'epoch=' + encodeURIComponent(S.epoch));
    } else if (S.backlog !== null) {
      q.push('backlog=' + S.backlog);
    }
    if (S.grep) q.push('grep=' + encodeURIComponent(S.grep));
    // Relative to the page, so that a --base-path, or a prefix a proxy adds
    // or strips, needs nothing here.
    const url = new URL('ws?' + q.join('&'), location.href);
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    url.hash = '';
    return url.href;
  }

  function connect() {
    clearTimeout(S.timer);
    S.timer = 0;
    el.retry.hidden = true;
    drop();
    setState(S.everOpened || S.fails ? 'reconnecting' : 'connecting');
    let ws;
    try {
      ws = token ? new WebSocket(wsUrl(), ['bearer.' + token]) : new WebSocket(wsUrl());
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
    ws.onmessage = (ev) => { if (ws === S.ws) onFrame(ev.data); };
    ws.onerror = () => { /* a close event follows */ };
    ws.onclose = (ev) => {
      if (ws !== S.ws) return;
      S.ws = null;
      onClose(ev);
    };
  }

  function drop() {
    const ws = S.ws;
    if (!ws) return;
    S.ws = null;
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    try { ws.close(1000); } catch (_) { /* ignore */ }
  }

  function onClose(ev) {
    const opened = S.opened;
    S.opened = false;
    if (!opened) S.fails++;
    const code = ev.code;
    const why = ev.reason ? ' (' + code + ': ' + ev.reason + ')' : ' (' + code + ')';
    let msg;
    if (code === 1013) {
      msg = 'The server closed the stream: client too slow' + why + '. Resuming where it left off…';
      note('stream closed: client too slow — resuming');
    } else if (code === 1001) {
      msg = 'The server is going away' + why + '. Reconnecting…';
      if (opened) note('server shutting down — reconnecting');
    } else if (!opened && S.grep && S.fails >= 1) {
      msg = 'Cannot connect with server grep — the server may reject this regex (HTTP 400), or is unreachable. Clear it with ×.';
    } else if (!opened && S.fails >= FAIL_HINT_AFTER) {
      msg = token
        ? 'Cannot connect — is the token right? Open /#token=… with the correct one. (Or the server is down.)'
        : 'Cannot connect — is a token needed? Open /#token=…';
    } else if (opened) {
      msg = 'Connection lost' + why + '. Reconnecting…';
      note('connection lost — reconnecting');
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
        // Keep the epoch's exact digits: a u64 would lose precision as a JS number.
        const d = /"epoch"\s*:\s*(-?\d+)/.exec(raw);
        const epoch = d ? d[1] : (m.epoch == null ? null : String(m.epoch));
        if (S.epoch !== null && epoch !== S.epoch) {
          addEvent('restart', 'server restarted — line numbers start again');
          S.lastSeq = 0;
        }
        S.epoch = epoch;
        S.helloSeq = typeof m.seq === 'number' ? m.seq : 0;
        S.resumable = true;
        S.attempt = 0;
        S.fails = 0;
        return;
      }
      case 'gap': {
        const from = Number(m.from), to = Number(m.to);
        const n = to - from + 1;
        if (n > 0) S.lost += n;
        addEvent('gap', (n > 0 ? plural(n, 'line') : 'some lines') + ' could not be replayed (gap' +
          (n > 0 ? ' #' + fmt(from) + '–' + fmt(to) : '') + ')');
        if (to > S.lastSeq) S.lastSeq = to;
        return;
      }
      case 'rotated': addEvent('rotated', (file || 'file') + ' rotated'); break;
      case 'truncated': addEvent('truncated', (file || 'file') + ' truncated — reading from the start'); break;
      case 'waiting':
      case 'following': {
        if (S.fileState.get(file) === m.event) return;  // repeated on every reconnect
        S.fileState.set(file, m.event);
        addEvent(m.event, m.event === 'waiting' ? 'waiting for ' + (file || 'the file') + ' to appear' : 'following ' + (file || 'the file'));
        return;
      }
      default: addEvent(m.event, m.event + (file ? ' — ' + file : ''));
    }
    if (m.event === 'rotated' || m.event === 'truncated') S.fileState.set(file, 'following');
  }

  function seeFile(f) {
    if (S.files.has(f)) return;
    S.files.add(f);
    const names = Array.from(S.files).join(', ');
    el.files.textContent = names;
    document.body.classList.toggle('multi', S.files.size > 1);
    setTitle();
  }

  // ---------- buffering and rendering ----------

  function addLine(seq, file, text) {
    if (file) seeFile(file);
    S.count++;
    if (S.paused) S.newWhilePaused++;
    if (document.hidden) {
      S.unseen++;
      if (!S.titleTimer) S.titleTimer = setTimeout(() => { S.titleTimer = 0; setTitle(); }, 1000);
    }
    enqueue({ k: 0, seq, file, text });
  }

  function addEvent(kind, text) { enqueue({ k: 1, kind, text: '— ' + text + ' —' }); }
  function note(text) { enqueue({ k: 2, kind: 'conn', text: '— ' + text + ' —' }); }

  function enqueue(item) {
    const p = S.pending;
    p.push(item);
    if (p.length > MAX_PENDING + 1000) p.splice(0, p.length - MAX_PENDING); // the DOM would drop them anyway
    schedule();
  }

  function schedule() {
    if (!S.raf) S.raf = requestAnimationFrame(frame);
  }

  function frame() {
    S.raf = 0;
    if (!S.paused && S.pending.length) {
      const items = S.pending;
      S.pending = [];
      render(items.length > MAX_LINES ? items.slice(-MAX_LINES) : items);
    }
    updateCounts();
  }

  // Rows live in chunks of CHUNK rows; CSS gives chunks content-visibility:auto, so the
  // browser skips layout and paint of chunks off screen, and trimming removes a whole chunk.
  function render(items) {
    const log = el.log;
    let chunk = log.lastElementChild;
    let n = chunk ? chunk.childElementCount : CHUNK;
    const tail = document.createDocumentFragment(); // rows for the chunk already in the page
    const fresh = document.createDocumentFragment(); // new chunks
    for (const it of items) {
      if (n >= CHUNK) {
        chunk = document.createElement('div');
        chunk.className = 'chunk';
        fresh.appendChild(chunk);
        n = 0;
      }
      const row = it.k === 0 ? makeLine(it) : makeSep(it);
      if (chunk.isConnected) tail.appendChild(row); else chunk.appendChild(row);
      n++;
      S.rows++;
    }
    if (tail.firstChild) log.lastElementChild.appendChild(tail);
    log.appendChild(fresh);
    trim();
    if (S.follow) log.scrollTop = log.scrollHeight;
  }

  function makeLine(it) {
    const row = document.createElement('div');
    row.className = 'line';
    if (it.seq !== null) {
      row.dataset.seq = it.seq;
      const gw = String(it.seq).length;
      if (gw > S.gw) { S.gw = gw; el.log.dataset.gw = Math.min(12, Math.max(4, gw)); }
    }
    const lv = levelOf(it.text);
    if (lv) row.dataset.level = lv;
    if (it.file) {
      row.dataset.file = it.file;
      const f = document.createElement('span');
      f.className = 'file';
      f.textContent = it.file;
      row.appendChild(f);
    }
    const t = document.createElement('span');
    t.className = 'text';
    row.appendChild(t);
    row.logtail = { seq: it.seq, file: it.file, line: it.text };  // for window.logtail.lines()
    S.domLines++;
    if (paint(row, t, it.text)) S.domHits++;
    return row;
  }

  function makeSep(it) {
    const row = document.createElement('div');
    row.className = it.k === 1 ? 'sep event' : 'sep note';
    row.dataset.event = it.kind;
    const s = document.createElement('span');
    s.textContent = it.text;
    row.appendChild(s);
    return row;
  }

  function trim() {
    if (S.rows <= MAX_LINES) return;
    const log = el.log;
    const keep = !S.follow;
    const before = keep ? log.scrollHeight : 0;
    while (S.rows > MAX_LINES && log.firstElementChild) {
      const c = log.firstElementChild;
      for (const row of c.children) {
        S.rows--;
        if (row.classList.contains('line')) {
          S.domLines--;
          if (!row.classList.contains('miss')) S.domHits--;
        }
      }
      c.remove();
    }
    if (keep) log.scrollTop -= before - log.scrollHeight; // keep what the reader looks at in place
  }

  const LV_WORD = /\b(FATAL|PANIC|CRIT(?:ICAL)?|ERROR|ERR|WARN(?:ING)?|INFO|NOTICE|DEBUG|TRACE)\b/;
  const LV_KEY = /(?:\b(?:level|lvl|severity)"?\s*[:=]\s*"?|\[)(fatal|panic|crit\w*|error|err|warn\w*|info|notice|debug|trace)\b/i;
  function levelOf(s) {
    const h = s.length > 240 ? s.slice(0, 240) : s;
    const m = LV_WORD.exec(h) || LV_KEY.exec(h);
    if (!m) return '';
    const c = m[1][0].toLowerCase();
    if (c === 'f' || c === 'p' || c === 'c' || c === 'e') return 'error';
    if (c === 'w') return 'warn';
    if (c === 'i' || c === 'n') return 'info';
    return 'debug';
  }

  // Paints text into t, highlighting filter matches; returns whether the row matches.
  function paint(row, t, text) {
    const re = S.filter;
    if (!re) {
      t.textContent = text;
      row.classList.remove('miss');
      return true;
    }
    re.lastIndex = 0;
    const frag = document.createDocumentFragment();
    let m, last = 0, hit = false, marks = 0;
    while ((m = re.exec(text)) !== null) {
      hit = true;
      const s = m.index, e = s + m[0].length;
      if (e === s) { re.lastIndex++; if (re.lastIndex > text.length) break; continue; }
      if (s > last) frag.appendChild(document.createTextNode(text.slice(last, s)));
      const mk = document.createElement('mark');
      mk.textContent = m[0];
      frag.appendChild(mk);
      last = e;
      if (++marks >= 500) break;
    }
    if (last === 0) t.textContent = text;
    else {
      if (last < text.length) frag.appendChild(document.createTextNode(text.slice(last)));
      t.textContent = '';
      t.appendChild(frag);
    }
    row.classList.toggle('miss', !hit);
    return hit;
  }

  function refilter() {
    let hits = 0;
    for (const row of el.log.querySelectorAll('.line')) {
      const t = row.lastElementChild;
      if (paint(row, t, t.textContent)) hits++;
    }
    S.domHits = hits;
    if (S.follow) el.log.scrollTop = el.log.scrollHeight;
    updateCounts();
  }

  function buildFilter() {
    const v = el.filter.value;
    el.filter.removeAttribute('aria-invalid');
    if (!v) return null;
    try {
      return new RegExp(S.regex ? v : escapeRe(v), S.matchCase ? 'g' : 'gi');
    } catch (_) {
      el.filter.setAttribute('aria-invalid', 'true');
      return null;
    }
  }

  function onFilterChange(now) {
    clearTimeout(S.filterTimer);
    const run = () => { S.filter = buildFilter(); refilter(); };
    if (now) run(); else S.filterTimer = setTimeout(run, 120);
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
    note(g ? 'server grep: ' + g : 'server grep cleared');
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
    const names = S.files.size ? Array.from(S.files).join(', ') + ' — logtail' : 'logtail';
    document.title = (S.unseen && document.hidden ? '(' + fmt(S.unseen) + ') ' : '') + names;
  }

  function updateCounts() {
    let t = plural(S.count, 'line');
    if (S.filter) t += ' · ' + fmt(S.domHits) + ' shown';
    el.count.textContent = t;
    el.pause.textContent = S.paused ? (S.newWhilePaused ? 'Resume · ' + fmt(S.newWhilePaused) + ' new' : 'Resume') : 'Pause';
    updateJump();
  }

  function updateJump() {
    const j = el.jump;
    if (S.paused) {
      j.hidden = false;
      j.textContent = S.newWhilePaused ? 'Paused · ' + plural(S.newWhilePaused, 'new line') + ' — resume' : 'Paused — resume';
    } else if (!S.follow) {
      j.hidden = false;
      j.textContent = '↓ Follow';
    } else j.hidden = true;
  }

  function setPaused(p) {
    if (p === S.paused) return;
    S.paused = p;
    document.body.dataset.paused = p ? 'true' : 'false';
    el.pause.setAttribute('aria-pressed', String(p));
    if (!p) S.newWhilePaused = 0;
    if (p) status('Paused: new lines are buffered (Space to resume).', false, true);
    else if (S.connMsg) status(S.connMsg[0], S.connMsg[1]);
    if (!p && S.follow) el.log.scrollTop = el.log.scrollHeight;
    schedule();
    updateCounts();
  }

  function setFollow(f) {
    S.follow = f;
    el.follow.setAttribute('aria-pressed', String(f));
    if (f) el.log.scrollTop = el.log.scrollHeight;
    updateJump();
  }

  function setWrap(w) {
    S.wrap = w;
    store.set(WRAP_KEY, w ? '1' : null);
    el.log.classList.toggle('wrap', w);
    el.wrap.setAttribute('aria-pressed', String(w));
    if (S.follow) el.log.scrollTop = el.log.scrollHeight;
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
    el.log.textContent = '';
    S.pending = [];
    S.count = 0;
    S.newWhilePaused = 0;
    S.rows = 0;
    S.domLines = 0;
    S.domHits = 0;
    setFollow(true);
    updateCounts();
  }

  // ---------- wiring ----------

  function init() {
    const $ = (id) => document.getElementById(id);
    el = {
      log: $('log'), files: $('files'), connText: $('conn-text'), count: $('count'),
      filter: $('filter'), regex: $('regex'), matchCase: $('case'), serverGrep: $('server-grep'),
      grepChip: $('grep-chip'), grepText: $('grep-text'), grepClear: $('grep-clear'),
      pause: $('pause'), follow: $('follow'), wrap: $('wrap'), clear: $('clear'), theme: $('theme'),
      help: $('help'), jump: $('jump'), status: $('status'), retry: $('retry'),
    };
    document.body.dataset.paused = 'false';
    setState('connecting');
    showTheme();
    setWrap(S.wrap);

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

    el.filter.addEventListener('input', () => onFilterChange(false));
    el.filter.addEventListener('keydown', (e) => {
      if (e.key === 'Enter') { e.preventDefault(); onFilterChange(true); }
    });
    const toggle = (btn, key) => btn.addEventListener('click', () => {
      S[key] = !S[key];
      btn.setAttribute('aria-pressed', String(S[key]));
      onFilterChange(true);
    });
    toggle(el.regex, 'regex');
    toggle(el.matchCase, 'matchCase');
    el.serverGrep.addEventListener('click', applyServerGrep);
    el.grepClear.addEventListener('click', () => setGrep(''));
    el.pause.addEventListener('click', () => setPaused(!S.paused));
    el.follow.addEventListener('click', () => setFollow(!S.follow));
    el.jump.addEventListener('click', () => { if (S.paused) setPaused(false); setFollow(true); });
    el.wrap.addEventListener('click', () => setWrap(!S.wrap));
    el.clear.addEventListener('click', clearView);
    el.theme.addEventListener('click', cycleTheme);
    el.retry.addEventListener('click', reconnectNow);

    el.log.addEventListener('scroll', () => {
      const log = el.log;
      const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 24;
      if (atBottom !== S.follow) setFollow(atBottom);
    }, { passive: true });
    window.addEventListener('resize', () => { if (S.follow) el.log.scrollTop = el.log.scrollHeight; });

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
      const t = readToken();
      if (t !== token) { token = t; S.fails = 0; reconnectNow(); }
    });

    updateCounts();
    connect();
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
    switch (e.key) {
      case ' ':
        if (t instanceof HTMLButtonElement || (t && t.tagName === 'SUMMARY')) return; // let Space press it
        e.preventDefault();
        setPaused(!S.paused);
        break;
      case '/':
        e.preventDefault();
        el.filter.focus();
        el.filter.select();
        break;
      case 'End':
        e.preventDefault();
        setFollow(true);
        break;
      case '?':
        e.preventDefault();
        el.help.open = !el.help.open;
        break;
      case 'Escape':
        el.help.open = false;
        break;
      default:
    }
  }

  // ---------- devtools API (DESIGN.md, "The viewer page") ----------
  // In the console: logtail.lines(), logtail.state(), logtail.pause(), logtail.resume().

  const api = Object.freeze({
    /** Every line the page holds, oldest first: shown, then buffered (paused or hidden). */
    lines() {
      const out = [];
      if (el.log) {
        for (const row of el.log.querySelectorAll('.line')) {
          if (row.logtail) out.push(Object.assign({}, row.logtail));
        }
      }
      for (const it of S.pending) {
        if (it.k === 0) out.push({ seq: it.seq, file: it.file, line: it.text });
      }
      return out;
    },
    /** The connection, the stream it reads (epoch, last seq) and what it got or lost. */
    state() {
      const st = document.body ? document.body.dataset.state : '';
      const connection = S.paused ? 'paused'
        : st === 'live' ? 'live'
          : (st === 'connecting' || st === 'reconnecting') ? 'reconnecting' : 'closed';
      return { connection, epoch: S.epoch, seq: S.lastSeq, received: S.count, lost: S.lost };
    },
    pause() { setPaused(true); },
    resume() { setPaused(false); },
  });
  Object.defineProperty(window, 'logtail', { value: api, enumerable: true });

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
  else init();
})();
