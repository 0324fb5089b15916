/*
 * format.js: pure functions the viewer runs on every line (ANSI, levels, JSON/logfmt).
 * Loaded before viewer.js; defines the frozen `globalThis.LogtailFormat` (and, in node,
 * `module.exports`). No DOM, no dependencies, no eval, ES2020. Unit tests and the
 * labelled level corpus: tests/viewer/.
 *
 * Decisions the viewer relies on:
 * - ansiSpans: every control character (C0 but TAB, DEL, C1) and every escape sequence
 *   that is not SGR becomes its own span (never merged with a neighbour, even another
 *   control) whose cls is the current style's classes plus `ctl` (`ctl` alone for the
 *   default style). Its text: C0 -> the control picture U+2400+code (ESC -> U+241B,
 *   NUL -> U+2400), DEL -> U+2421, C1 -> `<9b>` (two lowercase hex digits; Unicode has
 *   no pictures for C1). A non-SGR sequence -> U+241B then the rest of the sequence, its
 *   controls as pictures, cut to 40 characters with a trailing U+2026. Text spans of
 *   one style are merged; no span has empty text.
 * - 8-bit CSI (U+009B) is not interpreted: a raw 0x9b byte cannot survive UTF-8
 *   decoding, so U+009B is a control character (shown as `<9b>`, kept by stripAnsi).
 * - An OSC/DCS/SOS/PM/APC string without its terminator (BEL or ESC \) is no sequence:
 *   its ESC is a stray ESC (shown as U+241B, dropped by stripAnsi) and the rest is text,
 *   so an unterminated string never hides the rest of a line. A CSI cut short by a byte
 *   that cannot belong to it (or by the end of the line) is dropped by stripAnsi up to
 *   that byte and shown as one ctl span by ansiSpans.
 * - Inverse with a default side uses `a-fi` (foreground = theme background) and `a-gi`
 *   (background = theme foreground). SGR 21 (double underline) counts as `a-u`.
 * - levelOf looks at the first 300 characters, except that a JSON object is parsed
 *   whole. For a JSON line, parseStructured(p).level === levelOf(p); call
 *   parseStructured first and levelOf only when it returns null (levelOf keeps its
 *   last JSON.parse so that parseStructured on the same line does not parse again).
 * - parseStructured: msg has one trailing newline removed (Docker's json-file `log`);
 *   a Serilog `@mt` template is rendered with the event's properties when `@m` is absent.
 * - fieldPaths: an empty object or array is a leaf; objects nested deeper than 32 levels
 *   are leaves.
 */
(function (root) {
  'use strict';

  const HEAD = 300; // levelOf reads this many characters of a plain-text line
  const SHOW = 40; // longest text of a ctl span for a sequence

  // ---------------------------------------------------------------- escape sequences

  const ESC = 0x1b;
  const K_STRAY = 0; // an ESC that starts no sequence
  const K_SGR = 1; // CSI ... m (the only sequence applied)
  const K_CSI = 2; // any other complete CSI
  const K_STR = 3; // OSC/DCS/SOS/PM/APC with its terminator
  const K_ESC2 = 4; // ESC, intermediates, final (ESC ( B, ESC 7, ESC \ ...)
  const K_PART = 5; // a CSI cut short

  // scanEsc's result (module state, so that no object is allocated per sequence).
  let seqEnd = 0;
  let seqKind = 0;
  let seqA = 0; // SGR parameters: s.slice(seqA, seqB)
  let seqB = 0;

  /** Reads the escape sequence starting at s[i] (an ESC). Linear: a scan never passes
   * the next ESC, where the caller resumes. */
  function scanEsc(s, i) {
    const n = s.length;
    if (i + 1 >= n) {
      seqKind = K_STRAY;
      seqEnd = i + 1;
      return;
    }
    const c = s.charCodeAt(i + 1);
    if (c === 0x5b) {
      let j = i + 2;
      let priv = false;
      while (j < n) {
        const d = s.charCodeAt(j);
        if (d < 0x30 || d > 0x3f) break;
        if (d >= 0x3c) priv = true;
        j++;
      }
      const pb = j;
      while (j < n) {
        const d = s.charCodeAt(j);
        if (d < 0x20 || d > 0x2f) break;
        j++;
      }
      if (j < n) {
        const d = s.charCodeAt(j);
        if (d >= 0x40 && d <= 0x7e) {
          seqEnd = j + 1;
          seqKind = d === 0x6d && j === pb && !priv ? K_SGR : K_CSI;
          seqA = i + 2;
          seqB = pb;
          return;
        }
      }
      seqKind = K_PART;
      seqEnd = j;
      return;
    }
    if (c === 0x5d || c === 0x50 || c === 0x58 || c === 0x5e || c === 0x5f) {
      for (let j = i + 2; j < n; j++) {
        const d = s.charCodeAt(j);
        if (d === 0x07 || d === 0x9c) {
          seqKind = K_STR;
          seqEnd = j + 1;
          return;
        }
        if (d === ESC) {
          if (j + 1 < n && s.charCodeAt(j + 1) === 0x5c) {
            seqKind = K_STR;
            seqEnd = j + 2;
            return;
          }
          break;
        }
      }
      seqKind = K_STRAY;
      seqEnd = i + 1;
      return;
    }
    let j = i + 1;
    while (j < n) {
      const d = s.charCodeAt(j);
      if (d < 0x20 || d > 0x2f) break;
      j++;
    }
    if (j < n) {
      const d = s.charCodeAt(j);
      if (d >= 0x30 && d <= 0x7e) {
        seqKind = K_ESC2;
        seqEnd = j + 1;
        return;
      }
    }
    seqKind = K_STRAY;
    seqEnd = i + 1;
  }

  function hasAnsi(s) {
    return typeof s === 'string' && s.indexOf('\x1b') >= 0;
  }

  function stripAnsi(s) {
    if (typeof s !== 'string') return '';
    let i = s.indexOf('\x1b');
    if (i < 0) return s;
    let out = '';
    let last = 0;
    while (i >= 0) {
      out += s.slice(last, i);
      scanEsc(s, i);
      last = seqEnd;
      i = s.indexOf('\x1b', last);
    }
    return out + s.slice(last);
  }

  // ---------------------------------------------------------------- ansiSpans

  // Any character ansiSpans shows as a control: C0 but TAB, DEL, C1.
  const CTL_RE = /[\x00-\x08\x0a-\x1f\x7f-\x9f]/;

  function isCtl(c) {
    return (c < 0x20 && c !== 0x09) || (c >= 0x7f && c <= 0x9f);
  }

  function picture(c) {
    if (c < 0x20) return String.fromCharCode(0x2400 + c);
    if (c === 0x7f) return '\u2421';
    return '<' + c.toString(16) + '>';
  }

  /** The text of the ctl span for s[i, end): ␛, the rest printable, at most SHOW. */
  function showSeq(s, i, end) {
    let out = '\u241b';
    for (let j = i + 1; j < end; j++) {
      if (out.length >= SHOW) {
        // Do not end on half a surrogate pair.
        const last = out.charCodeAt(out.length - 1);
        if (last >= 0xd800 && last <= 0xdbff) out = out.slice(0, -1);
        return out + '\u2026';
      }
      const c = s.charCodeAt(j);
      out += isCtl(c) ? picture(c) : s[j];
    }
    return out;
  }

  const CUBE = [0, 95, 135, 175, 215, 255];

  /** The colour of 256-colour index n (0..255): a palette index (number) or 'rgb(...)'. */
  function xterm256(n) {
    if (n < 16) return n;
    if (n >= 232) {
      const v = 8 + 10 * (n - 232);
      return 'rgb(' + v + ',' + v + ',' + v + ')';
    }
    const k = n - 16;
    return 'rgb(' + CUBE[(k / 36) | 0] + ',' + CUBE[((k / 6) | 0) % 6] + ',' + CUBE[k % 6] + ')';
  }

  function clampByte(str) {
    const v = toInt(str);
    return v > 255 ? 255 : v;
  }

  /** A parameter's value: '' is 0; digits only (the SGR check guarantees that). */
  function toInt(str) {
    if (str === undefined || str === '') return 0;
    const v = parseInt(str, 10);
    return v >= 0 ? v : 0;
  }

  function rgb(r, g, b) {
    return 'rgb(' + clampByte(r) + ',' + clampByte(g) + ',' + clampByte(b) + ')';
  }

  function Style() {
    this.reset();
  }
  Style.prototype.reset = function () {
    this.b = false; // bold
    this.d = false; // dim
    this.i = false; // italic
    this.u = false; // underline
    this.s = false; // strikethrough
    this.k = false; // hidden
    this.inv = false;
    this.fg = -1; // palette index 0..15, or -1 (default), or an 'rgb(...)' string
    this.bg = -1;
  };
  /** Sets fg (which 38) or bg (48) from an extended colour; 58 (underline colour) is
   * read and dropped. */
  Style.prototype.extended = function (which, colour) {
    if (colour === null) return;
    if (which === 38) this.fg = colour;
    else if (which === 48) this.bg = colour;
  };

  /** Applies SGR parameters s.slice(a, b) (digits, ';' and ':' only). */
  function applySgr(st, s, a, b) {
    if (a === b) {
      st.reset();
      return;
    }
    const ps = s.slice(a, b).split(';');
    const len = ps.length;
    for (let k = 0; k < len; k++) {
      const p = ps[k];
      if (p.indexOf(':') >= 0) {
        colonGroup(st, p.split(':'));
        continue;
      }
      const n = toInt(p);
      if (n === 38 || n === 48 || n === 58) {
        const mode = k + 1 < len ? toInt(ps[k + 1]) : -1;
        if (mode === 5 && k + 2 < len) {
          const idx = toInt(ps[k + 2]);
          st.extended(n, idx <= 255 ? xterm256(idx) : null);
          k += 2;
        } else if (mode === 2 && k + 4 < len) {
          st.extended(n, rgb(ps[k + 2], ps[k + 3], ps[k + 4]));
          k += 4;
        } else {
          return; // malformed: the rest of this sequence is ignored
        }
        continue;
      }
      sgrCode(st, n);
    }
  }

  /** `38:5:N`, `38:2::R:G:B` / `38:2:R:G:B`, `4:N` (underline style); others ignored. */
  function colonGroup(st, sub) {
    const n = toInt(sub[0]);
    if (n === 38 || n === 48 || n === 58) {
      const mode = toInt(sub[1]);
      if (mode === 5 && sub.length >= 3) {
        const idx = toInt(sub[2]);
        st.extended(n, idx <= 255 ? xterm256(idx) : null);
      } else if (mode === 2 && sub.length >= 6) {
        st.extended(n, rgb(sub[3], sub[4], sub[5]));
      } else if (mode === 2 && sub.length === 5) {
        st.extended(n, rgb(sub[2], sub[3], sub[4]));
      }
    } else if (n === 4) {
      st.u = toInt(sub[1]) !== 0;
    }
  }

  function sgrCode(st, n) {
    if (n >= 30 && n <= 37) st.fg = n - 30;
    else if (n >= 40 && n <= 47) st.bg = n - 40;
    else if (n >= 90 && n <= 97) st.fg = n - 82;
    else if (n >= 100 && n <= 107) st.bg = n - 92;
    else {
      switch (n) {
        case 0: st.reset(); break;
        case 1: st.b = true; break;
        case 2: st.d = true; break;
        case 3: st.i = true; break;
        case 4: case 21: st.u = true; break;
        case 7: st.inv = true; break;
        case 8: st.k = true; break;
        case 9: st.s = true; break;
        case 22: st.b = false; st.d = false; break;
        case 23: st.i = false; break;
        case 24: st.u = false; break;
        case 27: st.inv = false; break;
        case 28: st.k = false; break;
        case 29: st.s = false; break;
        case 39: st.fg = -1; break;
        case 49: st.bg = -1; break;
        default: break; // blink, fonts, overline, ...: ignored
      }
    }
  }

  /** The rendering of a style: [cls, fg, bg]. */
  function render(st) {
    let cls = '';
    if (st.b) cls += ' a-b';
    if (st.d) cls += ' a-d';
    if (st.i) cls += ' a-i';
    if (st.u) cls += ' a-u';
    if (st.s) cls += ' a-s';
    if (st.k) cls += ' a-k';
    let fg = null;
    let bg = null;
    // Inverse: the foreground shows the background's colour and the other way round.
    const f = st.inv ? st.bg : st.fg;
    const g = st.inv ? st.fg : st.bg;
    if (typeof f === 'string') fg = f;
    else if (f >= 0) cls += ' a-f' + f;
    else if (st.inv) cls += ' a-fi';
    if (typeof g === 'string') bg = g;
    else if (g >= 0) cls += ' a-g' + g;
    else if (st.inv) cls += ' a-gi';
    return [cls.slice(1), fg, bg];
  }

  function ansiSpans(s) {
    if (typeof s !== 'string' || s === '') return [];
    if (s.indexOf('\x1b') < 0 && !CTL_RE.test(s)) {
      return [{ text: s, cls: '', fg: null, bg: null }];
    }
    const out = [];
    const st = new Style();
    let look = ['', null, null];
    let dirty = false;
    let lastText = null; // the last span, if it is a text span (mergeable)

    function text(t) {
      if (dirty) {
        look = render(st);
        dirty = false;
      }
      if (lastText !== null && lastText.cls === look[0] && lastText.fg === look[1] && lastText.bg === look[2]) {
        lastText.text += t;
        return;
      }
      lastText = { text: t, cls: look[0], fg: look[1], bg: look[2] };
      out.push(lastText);
    }
    function ctl(t) {
      if (dirty) {
        look = render(st);
        dirty = false;
      }
      out.push({ text: t, cls: look[0] ? look[0] + ' ctl' : 'ctl', fg: look[1], bg: look[2] });
      lastText = null;
    }

    const n = s.length;
    let run = 0; // start of the pending plain text
    let i = 0;
    while (i < n) {
      const c = s.charCodeAt(i);
      if (!isCtl(c)) {
        i++;
        continue;
      }
      if (i > run) text(s.slice(run, i));
      if (c === ESC) {
        scanEsc(s, i);
        if (seqKind === K_SGR) {
          applySgr(st, s, seqA, seqB);
          dirty = true;
        } else if (seqKind === K_STRAY) {
          ctl('\u241b');
        } else {
          ctl(showSeq(s, i, seqEnd));
        }
        i = seqEnd;
      } else {
        ctl(picture(c));
        i++;
      }
      run = i;
    }
    if (run < n) text(s.slice(run));
    return out;
  }

  // ---------------------------------------------------------------- level words

  const E = 'error';
  const W = 'warn';
  const I = 'info';
  const D = 'debug';

  function dict(o) {
    return Object.assign(Object.create(null), o);
  }

  // Level names, lower case, as they appear in text and values (logrus ERRO/DEBU,
  // log15 eror/dbug, zerolog/Serilog three letters, syslog, JUL SEVERE/FINE, zap dpanic).
  const WORDS = dict({
    error: E, err: E, eror: E, erro: E, fatal: E, fata: E, ftl: E, panic: E, pani: E,
    pnc: E, dpanic: E, critical: E, crit: E, crt: E, alert: E, emerg: E, emergency: E,
    severe: E,
    warn: W, warning: W, wrn: W,
    info: I, inf: I, information: I, informational: I, notice: I,
    debug: D, dbg: D, debu: D, dbug: D, trace: D, trac: D, trc: D, trce: D,
    verbose: D, vrb: D, fine: D, finer: D, finest: D,
    success: I, // loguru
  });
  // Only as a value or in brackets: single letters, and MySQL's [Note] / [System].
  // winston's http and silly.
  const VALUE_WORDS = dict({
    e: E, f: E, c: E, w: W, i: I, n: I, d: D, v: D, t: D, note: I, system: I, http: I, silly: D,
  });
  // Only before a colon at the start of a message: .NET's console logger `fail:`,
  // PostgreSQL's `LOG:`.
  const COLON_WORDS = dict({ fail: E, log: I });
  // Letters of klog, Ruby's Logger, Android logcat and MongoDB's "s".
  const LETTERS = dict({ E: E, F: E, A: E, W: W, I: I, N: I, D: D, V: D, T: D });

  /** A level name in a value or a bracket ('' if it names none). */
  function nameLevel(v) {
    if (typeof v !== 'string' || v.length > 32) return '';
    let w = v.trim().toLowerCase();
    let l = WORDS[w] || VALUE_WORDS[w];
    if (l) return l;
    // Go slog's "WARN+2", PostgreSQL's DEBUG1..5, Apache's trace1..8, OTel's "ERROR2".
    w = w.replace(/[+-]?\d+$/, '');
    return WORDS[w] || '';
  }

  function pinoLevel(n) {
    if (n >= 50) return E;
    if (n >= 40) return W;
    if (n >= 30) return I;
    if (n >= 10) return D;
    return '';
  }

  function syslogLevel(n) {
    if (n < 0 || n > 7 || n !== Math.floor(n)) return '';
    return n <= 3 ? E : n === 4 ? W : n <= 6 ? I : D;
  }

  function otelLevel(n) {
    if (n >= 1 && n <= 8) return D;
    if (n >= 9 && n <= 12) return I;
    if (n >= 13 && n <= 16) return W;
    if (n >= 17 && n <= 24) return E;
    return '';
  }

  const NUMERIC = /^\s*\d+(?:\.\d+)?\s*$/;

  /** A value that is a name, or a number read by `num` (numbers as strings too). */
  function valueLevel(v, num) {
    if (typeof v === 'number') return num ? num(v) : '';
    if (typeof v !== 'string') return '';
    if (num && NUMERIC.test(v)) return num(Number(v));
    return nameLevel(v);
  }

  // ---------------------------------------------------------------- JSON

  // levelOf's last JSON.parse (never handed out): parseStructured takes it over.
  let cacheSrc = null;
  let cacheVal = null;

  function looksLikeObject(t) {
    return t.charCodeAt(0) === 0x7b && t.charCodeAt(t.length - 1) === 0x7d;
  }

  /** The object t (trimmed) holds, or null. */
  function parseObject(t) {
    if (!looksLikeObject(t)) return null;
    try {
      const v = JSON.parse(t);
      return v !== null && typeof v === 'object' && !Array.isArray(v) ? v : null;
    } catch (e) {
      return null;
    }
  }

  function own(o, k) {
    return Object.prototype.hasOwnProperty.call(o, k);
  }

  // [key, how numbers read] in the order they are tried.
  const JSON_KEYS = [
    ['level', pinoLevel],
    ['lvl', pinoLevel],
    ['@level', null], // hclog's JSON (Vault, Consul, Nomad)
    ['severity', syslogLevel],
    ['log.level', null],
    ['@l', null],
    ['severityText', null],
    ['severityNumber', otelLevel],
    ['levelname', null], // python-json-logger
    ['loglevel', null],
    ['log_level', null],
    ['logLevel', null],
    ['Level', pinoLevel], // Serilog's JSON formatter, .NET
    ['LEVEL', pinoLevel],
    ['Severity', syslogLevel],
    ['PRIORITY', syslogLevel], // journalctl -o json
    ['priority', syslogLevel],
  ];

  /** The level of a parsed JSON object ('' if none); depth limits the text fallback. */
  function objectLevel(o, depth) {
    for (let k = 0; k < JSON_KEYS.length; k++) {
      const key = JSON_KEYS[k][0];
      if (!own(o, key)) continue;
      let v = o[key];
      if (key === 'severityNumber' && typeof v === 'string' && v.indexOf('SEVERITY_NUMBER_') === 0) {
        v = v.slice(16); // protobuf JSON's enum name
      }
      const l = valueLevel(v, JSON_KEYS[k][1]);
      if (l) return l;
    }
    // ECS written nested: {"log": {"level": "warn"}}.
    if (own(o, 'log') && o.log !== null && typeof o.log === 'object') {
      const l = valueLevel(o.log.level, null);
      if (l) return l;
    }
    // MongoDB 4.4+: {"t":{"$date":..},"s":"W","c":"NETWORK","ctx":..,"msg":..}.
    if (typeof o.s === 'string' && own(o, 'c') && own(o, 'ctx')) {
      const l = LETTERS[o.s.charAt(0)];
      if (l && o.s.length <= 2) return l;
    }
    // Serilog CLEF: an event without @l is Information.
    if (own(o, '@t') && (own(o, '@mt') || own(o, '@m'))) return I;
    // Docker's json-file ({"log": "...", "stream": ...}), or a message that starts with
    // its level: the text rules on that text (once).
    if (depth < 1) {
      const keys = ['log', 'message', 'msg'];
      for (let k = 0; k < keys.length; k++) {
        const v = o[keys[k]];
        if (typeof v === 'string' && own(o, keys[k])) {
          const l = levelIn(v, depth + 1);
          if (l) return l;
        }
      }
    }
    return '';
  }

  // ---------------------------------------------------------------- plain-text levels

  const MON = '(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)';
  const DAY = '(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)';
  const TIME = '\\d\\d?:\\d\\d(?::\\d\\d)?(?:[.,]\\d+)?(?: ?[AaPp][Mm])?';
  const TZ = '(?: ?(?:Z|[+-]\\d\\d(?::?\\d\\d)?|UTC|GMT|CES?T|EES?T|[ECMP][SD]T|BST|IST|JST|MSK|[A-Z][a-z]+/[A-Z][A-Za-z_]+))?';
  // Dates that stand alone, and those that count only with a time after them.
  const DATE = '(?:\\d{4}[-/.]\\d\\d?[-/.]\\d\\d?|\\d\\d?[-/.]\\d\\d?[-/.]\\d{4}|\\d\\d?[-/ ]' + MON + '[-/ ]\\d{4})';
  const WEAK_DATE = '(?:(?:' + DAY + ',? )?' + MON + ' +\\d\\d?(?:,? \\d{4})?|\\d\\d-\\d\\d|\\d{6})';
  const AT = '(?:T|, | |:|_)' + TIME + '(?: \\d{4})?';
  const TS_RE = new RegExp(
    '(?:' + DATE + '(?:' + AT + ')?|' + WEAK_DATE + AT + '|' + TIME + ')' + TZ + '(?![0-9A-Za-z])',
    'y'
  );
  const KLOG_RE = /[IWEF]\d{4} \d\d:\d\d:\d\d/y;
  const REDIS_RE = /\d+:[XCSM] /y;
  const DMESG_RE = /[a-z]+ *:(emerg|alert|crit|err|warn|notice|info|debug) *: /y;
  const RAILS_RE = /([DIWEF]), \[/y;
  const LOGCAT_RE = /([VDIWEFA])\/[^\s(:]*\s*(?:\(\s*\d+\))?: /y;
  const KEY_RE = /(?:log[._]?)?(?:level|severity|lvl)\s*[:=]\s*["']?([A-Za-z]+\d?)/iy;
  const PHRASE_RE = /(?:PHP )?(Fatal error|Parse error|Catchable fatal error|Recoverable fatal error|fatal error|Warning|Notice|Deprecated|Strict Standards):/y;
  const PHRASES = dict({
    'Fatal error': E, 'Parse error': E, 'Catchable fatal error': E,
    'Recoverable fatal error': E, 'fatal error': E, Warning: W, Notice: I, Deprecated: W,
    'Strict Standards': I,
  });
  const NUM_RE = /\d+(?:\.\d+)?(?:e[+-]?\d+)?(?:[#:]\d+)*:?(?=[\s,]|$)/y;
  const SEP_RE = /[-|:,\]>»│]+/y;
  const TAG_RE = /[A-Za-z_][\w.\-/@]*(?:\[[\w.\-:]+\])?:(?=\s|$)/y;
  const PID_TAG_RE = /[A-Za-z_][\w.\-/@]*\[[\w.\-:]+\]:(?=\s|$)/y;
  const HOST_RE = /[A-Za-z0-9][\w.\-]* +(?=[A-Za-z_][\w.\-/@]*(?:\[[\w.\-:]+\])?:(?:\s|$))/y;
  const DASH_NAME_RE = /[\w.<>]+(?= +- )/y;
  const COMPOSE_RE = /[\w.\-]+ +\| /y;
  const STREAM_RE = /(?:stdout|stderr)(?: [FP])?(?= )/y;
  const USER_AT_RE = /[\w.\-]*@[\w.\-]+(?=\s)/y;
  const BRACE_RE = /\{[^\s{}"]{1,80}\}/y;
  const KV_RE = /[A-Za-z_][\w.]*=[^\s"]+(?=\s)/y;
  // Whole-line forms of particular tools, tried at the start of the line.
  const RUST_PANIC_RE = /thread '[^']*' panicked at /y;
  const NPM_RE = /npm (ERR!|WARN|warn|error|notice|info|http|verb|timing|sill) /y;
  const NPM = dict({ 'ERR!': E, WARN: W, warn: W, error: E, notice: I, info: I, http: I, verb: D, timing: D, sill: D });
  const NODE_WARNING_RE = /\(node:\d+\) /y; // process.emitWarning's output
  const GITHUB_RE = /::(error|warning|notice|debug)[ :]/y; // Actions workflow commands
  const GITHUB = dict({ error: E, warning: W, notice: I, debug: D });
  const BUILDKIT_RE = /#\d+ (?:\d+\.\d+ )?/y; // docker build's step prefix
  const PROGRAM_RE = /[a-z][\w.\-]*: /y; // `psql: error: ...`, `nginx: [emerg] ...`
  const PROGRAM_LEVEL_RE = /[a-z][\w\-]*:([A-Za-z]+)(?= )/y; // `prisma:warn ...`
  const MONOLOG_RE = /[\w\-]+\.([A-Z]+):/y; // Monolog's `channel.LEVEL:`
  const LOGFMT_RE = /(?:^|\s)(?:level|lvl|severity|loglevel|log_level|log\.level|at)=("?)([A-Za-z]+\d?)/gi;

  function at(re, s, p) {
    re.lastIndex = p;
    return re.test(s);
  }

  function isLetter(c) {
    return (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
  }
  function isDigit(c) {
    return c >= 0x30 && c <= 0x39;
  }
  function isSpace(c) {
    return c === 0x20 || c === 0x09;
  }

  /** The level a bracket's content names: `ERROR`, ` WARN `, `E`, `core:error`,
   * `Server thread/INFO`. */
  function bracketLevel(content) {
    const t = content.trim();
    if (t.length === 0 || t.length > 40) return '';
    let l = nameLevel(t);
    if (l) return l;
    const sep = Math.max(t.lastIndexOf(':'), t.lastIndexOf('/'));
    if (sep >= 0 && /^[\w .#\-]*$/.test(t.slice(0, sep))) {
      const w = t.slice(sep + 1);
      if (w.length > 1) l = nameLevel(w);
    }
    return l;
  }

  /** A level word starting at p in h, by the rules of its case; '' if none. */
  function wordAt(h, p, lastNum) {
    const n = h.length;
    let j = p;
    while (j < n && isLetter(h.charCodeAt(j))) j++;
    let k = j;
    if (k < n && isDigit(h.charCodeAt(k))) k++; // DEBUG1, trace8
    const next = k < n ? h.charCodeAt(k) : -1;
    if (next >= 0 && (isLetter(next) || isDigit(next) || next === 0x5f)) return '';
    const w = h.slice(p, j);
    const lower = w.toLowerCase();
    const upper = w === w.toUpperCase();
    if (w.length === 1) {
      // logcat's threadtime format: `01-01 12:00:00.123  1234  5678 E Tag: msg`.
      return lastNum && isSpace(next) && 'VDIWEFA'.indexOf(w) >= 0 ? LETTERS[w] : '';
    }
    const l = WORDS[lower];
    const ch = next < 0 ? '' : String.fromCharCode(next);
    if (!l) {
      return ch === ':' && (lower === 'fail' ? w === 'fail' : w === 'LOG') ? COLON_WORDS[lower] : '';
    }
    if (upper) {
      // ERROR, WARN[0000], ERROR:, INFO|, WARNING/MainProcess, ERR!
      return next < 0 || isSpace(next) || ':]|>),;![/-'.indexOf(ch) >= 0 ? l : '';
    }
    const cap = w === w.charAt(0).toUpperCase() + lower.slice(1);
    if (cap || w === lower) {
      // error:, Warning:, info| ; zap's console encoder separates with tabs; rustc's
      // error[E0308]:.
      if (':]|>)'.indexOf(ch) >= 0 || next === 0x09) return l;
      if (ch === '[' && w === lower && /^\[E\d{4}\]:/.test(h.slice(k, k + 8))) return l;
      return '';
    }
    return '';
  }

  /** A level stated at p: a word, a bracketed or angled word, a phrase, a key. */
  function levelAt(h, p, lastNum) {
    const c = h.charCodeAt(p);
    if (c === 0x5b || c === 0x3c) {
      const close = h.indexOf(c === 0x5b ? ']' : '>', p + 1);
      if (close > p && close - p <= 41) return bracketLevel(h.slice(p + 1, close));
      return '';
    }
    if (!isLetter(c)) return '';
    if (at(LOGCAT_RE, h, p)) return LETTERS[h[p]];
    if (at(KEY_RE, h, p)) {
      KEY_RE.lastIndex = p;
      const m = KEY_RE.exec(h);
      const l = m ? nameLevel(m[1]) : '';
      if (l) return l;
    }
    PHRASE_RE.lastIndex = p;
    const m = PHRASE_RE.exec(h);
    if (m) return PHRASES[m[1]];
    return wordAt(h, p, lastNum);
  }

  /** The level of a plain line by the text rules; depth limits JSON inside it. */
  function textLevel(line, depth) {
    const h = line.length > HEAD ? line.slice(0, HEAD) : line;
    const n = h.length;
    let p = 0;
    // Syslog's <PRI> (RFC 3164/5424, kernel, systemd's stderr): severity = PRI mod 8.
    if (h.charCodeAt(0) === 0x3c) {
      const m = /^<(\d{1,3})>/.exec(h);
      if (m && Number(m[1]) < 192) return syslogLevel(Number(m[1]) & 7);
    }
    if (at(RAILS_RE, h, 0)) return LETTERS[h[0]];
    if (at(DMESG_RE, h, 0)) {
      DMESG_RE.lastIndex = 0;
      return nameLevel(DMESG_RE.exec(h)[1]);
    }
    if (at(RUST_PANIC_RE, h, 0)) return E;
    if (at(NODE_WARNING_RE, h, 0)) return W;
    if (at(GITHUB_RE, h, 0)) return GITHUB[h.slice(2, GITHUB_RE.lastIndex - 1)];
    if (at(COMPOSE_RE, h, 0)) p = COMPOSE_RE.lastIndex;
    else if (at(BUILDKIT_RE, h, 0)) p = BUILDKIT_RE.lastIndex;
    if (at(NPM_RE, h, p)) return NPM[h.slice(p + 4, NPM_RE.lastIndex - 1)];
    if (at(PROGRAM_RE, h, p)) {
      // A program's name, then its level at once, or this rule does not apply.
      const l = levelAt(h, PROGRAM_RE.lastIndex, false);
      if (l) return l;
    }
    if (at(PROGRAM_LEVEL_RE, h, p)) {
      PROGRAM_LEVEL_RE.lastIndex = p;
      const w = WORDS[PROGRAM_LEVEL_RE.exec(h)[1].toLowerCase()];
      if (w) return w;
    }
    let sawTime = false;
    let lastNum = false;
    let redis = false;
    let justTime = false; // the token before this one was a timestamp
    for (let steps = 0; steps < 16; steps++) {
      while (p < n && isSpace(h.charCodeAt(p))) p++;
      if (p >= n) break;
      const c = h.charCodeAt(p);
      if (redis && sawTime && p + 1 < n && h.charCodeAt(p + 1) === 0x20) {
        // Redis: `1:M 01 Jan 2024 12:00:00.123 # msg`: # warning, * notice, - verbose, . debug.
        const mark = '#*-.'.indexOf(h[p]);
        if (mark >= 0) return [W, I, D, D][mark];
      }
      const l = levelAt(h, p, lastNum);
      if (l) return l;
      if (at(KLOG_RE, h, p)) return LETTERS[h[p]];
      if (at(MONOLOG_RE, h, p)) {
        MONOLOG_RE.lastIndex = p;
        const w = WORDS[MONOLOG_RE.exec(h)[1].toLowerCase()];
        if (w) return w;
      }
      if (c === 0x7b && depth < 1) {
        // JSON after a prefix (CRI, `docker logs -t`): the object's level.
        const rest = line.slice(p).trim();
        const o = parseObject(rest);
        if (o) return objectLevel(o, depth + 1);
      }
      lastNum = false;
      const afterTime = justTime;
      justTime = false;
      if (at(TS_RE, h, p)) {
        p = TS_RE.lastIndex;
        sawTime = true;
        justTime = true;
        continue;
      }
      if (c === 0x5b) {
        const close = h.indexOf(']', p + 1);
        if (close < 0 || close - p > 100) break;
        // `[2024-01-01T12:00:00Z ERROR target]` (env_logger), `[12:00:00 INF]` (Serilog):
        // read on inside the bracket; any other bracket is skipped whole.
        if (at(TS_RE, h, p + 1)) p = p + 1;
        else p = close + 1;
        continue;
      }
      if (redis === false && at(REDIS_RE, h, p)) {
        p = REDIS_RE.lastIndex;
        redis = true;
        continue;
      }
      if (at(NUM_RE, h, p)) {
        p = NUM_RE.lastIndex;
        lastNum = true;
        continue;
      }
      if (at(SEP_RE, h, p)) {
        p = SEP_RE.lastIndex;
        continue;
      }
      if (c === 0x7b && at(BRACE_RE, h, p)) {
        p = BRACE_RE.lastIndex; // Airflow's {taskinstance.py:1234}
        continue;
      }
      if (at(PID_TAG_RE, h, p)) {
        p = PID_TAG_RE.lastIndex; // sshd[123]:, heroku[router]:
        continue;
      }
      if (sawTime) {
        if (at(STREAM_RE, h, p)) {
          p = STREAM_RE.lastIndex; // CRI: `stdout F`
          continue;
        }
        if (at(TAG_RE, h, p)) {
          p = TAG_RE.lastIndex; // kernel:
          continue;
        }
        if (afterTime && at(HOST_RE, h, p) && !levelAt(h, HOST_RE.lastIndex, false)) {
          p = HOST_RE.lastIndex; // the host before a syslog tag (a tag, not a level)
          continue;
        }
        if (at(KV_RE, h, p)) {
          p = KV_RE.lastIndex; // pid=4121 (Sidekiq), request_id=F7x2 (Phoenix)
          continue;
        }
        if (at(USER_AT_RE, h, p)) {
          p = USER_AT_RE.lastIndex; // PostgreSQL's user@db
          continue;
        }
        if (at(DASH_NAME_RE, h, p)) {
          p = DASH_NAME_RE.lastIndex; // Python's `asctime - name - LEVEL - msg`
          continue;
        }
      }
      break;
    }
    // logfmt: level=, lvl=, severity=, at= (Heroku) as a key, outside quoted values.
    LOGFMT_RE.lastIndex = 0;
    let m;
    while ((m = LOGFMT_RE.exec(h)) !== null) {
      if (quotesBefore(h, m.index) % 2 === 1) continue;
      const l = nameLevel(m[2]);
      if (l) return l;
    }
    return '';
  }

  /** How many unescaped double quotes h has before index end. */
  function quotesBefore(h, end) {
    let q = 0;
    for (let i = h.indexOf('"'); i >= 0 && i < end; i = h.indexOf('"', i + 1)) {
      if (i === 0 || h.charCodeAt(i - 1) !== 0x5c) q++;
    }
    return q;
  }

  function levelIn(plain, depth) {
    let i = 0;
    while (i < plain.length && plain.charCodeAt(i) <= 0x20) i++;
    if (plain.charCodeAt(i) === 0x7b) {
      let o;
      if (plain === cacheSrc) {
        o = cacheVal;
      } else {
        o = parseObject(plain.trim());
        if (depth === 0) {
          cacheSrc = plain;
          cacheVal = o;
        }
      }
      if (o) return objectLevel(o, depth);
    }
    return textLevel(plain, depth);
  }

  function levelOf(plain) {
    if (typeof plain !== 'string' || plain === '') return '';
    return levelIn(plain, 0);
  }

  // ---------------------------------------------------------------- structured lines

  const TIME_KEYS = ['time', 'ts', 'timestamp', '@t', 't', 'date', 'datetime', '@timestamp', 'timeUnixNano', 'observedTimeUnixNano'];
  const MSG_KEYS = ['msg', 'message', '@m', '@mt', 'body', 'event', 'log'];
  const LOGFMT_LEVEL_KEYS = [['level', pinoLevel], ['lvl', pinoLevel], ['severity', syslogLevel], ['log.level', null], ['loglevel', null], ['log_level', null], ['at', null]];
  const EPOCH_RE = /^(\d{9,19})(?:\.(\d{1,9})\d*)?$/;

  /** An epoch (s, ms, µs or ns by its number of digits) as ISO 8601 UTC, or null. */
  function epochIso(v) {
    const str = typeof v === 'number' ? (Number.isFinite(v) && v >= 0 && v < 1e20 ? v.toFixed(9).replace(/\.?0+$/, '') : '') : v.trim();
    const m = EPOCH_RE.exec(str);
    if (!m) return null;
    const digits = m[1];
    let secs = digits;
    let frac = m[2] || '';
    const unit = digits.length >= 17 ? 9 : digits.length >= 14 ? 6 : digits.length >= 11 ? 3 : 0;
    if (unit) {
      secs = digits.slice(0, -unit);
      frac = digits.slice(-unit);
    }
    const d = new Date(Number(secs) * 1000);
    if (isNaN(d.getTime())) return null;
    frac = frac.replace(/0+$/, '');
    while (frac.length < 3) frac += '0';
    return d.toISOString().slice(0, 19) + '.' + frac + 'Z';
  }

  function timeValue(v, key) {
    if (v !== null && typeof v === 'object' && !Array.isArray(v) && own(v, '$date')) {
      v = v.$date; // MongoDB extended JSON
      if (v !== null && typeof v === 'object' && own(v, '$numberLong')) v = v.$numberLong;
    }
    const otel = key === 'timeUnixNano' || key === 'observedTimeUnixNano';
    if (typeof v === 'number') {
      if (otel && v === 0) return null;
      return epochIso(v) || String(v);
    }
    if (typeof v === 'string' && v.trim() !== '') {
      if (otel && /^0+$/.test(v)) return null;
      return epochIso(v) || v;
    }
    return null;
  }

  function pickTime(fields) {
    for (let k = 0; k < TIME_KEYS.length; k++) {
      const key = TIME_KEYS[k];
      if (!own(fields, key)) continue;
      const t = timeValue(fields[key], key);
      if (t !== null) return t;
    }
    return null;
  }

  /** Serilog's message template, its {Property} holes filled from the event. */
  function renderTemplate(mt, fields) {
    return mt.replace(/\{\{|\}\}|\{([@$]?)([A-Za-z0-9_]+)(?:,[^:}]*)?(?::[^}]*)?\}/g, function (all, sigil, name) {
      if (all === '{{') return '{';
      if (all === '}}') return '}';
      return own(fields, name) ? formatValue(fields[name]) : all;
    });
  }

  function pickMsg(fields) {
    for (let k = 0; k < MSG_KEYS.length; k++) {
      const key = MSG_KEYS[k];
      if (!own(fields, key)) continue;
      let v = fields[key];
      if (v !== null && typeof v === 'object' && !Array.isArray(v) && typeof v.stringValue === 'string') {
        v = v.stringValue; // OTel's AnyValue
      }
      if (typeof v === 'number' || typeof v === 'boolean') v = String(v);
      if (typeof v !== 'string') continue;
      if (key === '@mt') v = renderTemplate(v, fields);
      return v.replace(/\r?\n$/, '');
    }
    return null;
  }

  const KEY_START = /[A-Za-z_]/;

  /** A logfmt line's fields, or null: only key=value pairs, at least two. */
  function parseLogfmt(t) {
    const n = t.length;
    const fields = {};
    let pairs = 0;
    let i = 0;
    while (i < n) {
      while (i < n && isSpace(t.charCodeAt(i))) i++;
      if (i >= n) break;
      if (!KEY_START.test(t[i])) return null;
      const ks = i;
      i++;
      while (i < n) {
        const c = t.charCodeAt(i);
        if (isLetter(c) || isDigit(c) || c === 0x5f || c === 0x2e || c === 0x2d || c === 0x2f) i++;
        else break;
      }
      if (t.charCodeAt(i) !== 0x3d) return null;
      const key = t.slice(ks, i);
      i++;
      let value;
      if (t.charCodeAt(i) === 0x22) {
        i++;
        value = '';
        let closed = false;
        while (i < n) {
          const c = t.charCodeAt(i);
          if (c === 0x22) {
            closed = true;
            i++;
            break;
          }
          if (c === 0x5c && i + 1 < n) {
            const e = t[i + 1];
            const hex = e === 'u' ? 4 : e === 'x' ? 2 : 0;
            const digits = hex ? t.slice(i + 2, i + 2 + hex) : '';
            if (digits.length === hex && hex && /^[0-9a-fA-F]+$/.test(digits)) {
              value += String.fromCharCode(parseInt(digits, 16));
              i += 2 + hex;
              continue;
            }
            value += e === 'n' ? '\n' : e === 't' ? '\t' : e === 'r' ? '\r' : e === '"' || e === '\\' ? e : '\\' + e;
            i += 2;
            continue;
          }
          value += t[i];
          i++;
        }
        if (!closed) return null;
        if (i < n && !isSpace(t.charCodeAt(i))) return null;
      } else {
        const vs = i;
        while (i < n && !isSpace(t.charCodeAt(i))) i++;
        value = t.slice(vs, i);
      }
      if (key === '__proto__') {
        Object.defineProperty(fields, key, { value: value, enumerable: true, writable: true, configurable: true });
      } else {
        fields[key] = value;
      }
      pairs++;
    }
    return pairs >= 2 ? fields : null;
  }

  function logfmtLevel(fields) {
    for (let k = 0; k < LOGFMT_LEVEL_KEYS.length; k++) {
      const key = LOGFMT_LEVEL_KEYS[k][0];
      if (!own(fields, key)) continue;
      const l = key === 'at' ? WORDS[fields[key].toLowerCase()] || '' : valueLevel(fields[key], LOGFMT_LEVEL_KEYS[k][1]);
      if (l) return l;
    }
    return '';
  }

  function parseStructured(plain) {
    if (typeof plain !== 'string') return null;
    const t = plain.trim();
    if (t === '') return null;
    if (t.charCodeAt(0) === 0x7b) {
      let o;
      if (plain === cacheSrc) {
        o = cacheVal;
        cacheSrc = null; // handed out: the next call parses afresh
        cacheVal = null;
      } else {
        o = parseObject(t);
      }
      if (!o) return null;
      return { kind: 'json', fields: o, time: pickTime(o), level: objectLevel(o, 0), msg: pickMsg(o) };
    }
    const f = parseLogfmt(t);
    if (!f) return null;
    return { kind: 'logfmt', fields: f, time: pickTime(f), level: logfmtLevel(f), msg: pickMsg(f) };
  }

  // ---------------------------------------------------------------- fields

  const MAX_DEPTH = 32;

  function isPlainObject(v) {
    return v !== null && typeof v === 'object' && !Array.isArray(v);
  }

  function fieldPaths(fields) {
    const out = [];
    if (!isPlainObject(fields)) return out;
    const seen = Object.create(null);
    (function walk(o, prefix, depth) {
      const keys = Object.keys(o);
      for (let k = 0; k < keys.length; k++) {
        const path = prefix + keys[k];
        const v = o[keys[k]];
        if (isPlainObject(v) && depth < MAX_DEPTH && Object.keys(v).length > 0) {
          walk(v, path + '.', depth + 1);
        } else if (!seen[path]) {
          seen[path] = true;
          out.push(path);
        }
      }
    })(fields, '', 0);
    return out;
  }

  function getField(fields, path) {
    if (fields === null || typeof fields !== 'object' || typeof path !== 'string') return undefined;
    return lookup(fields, path, 0);
  }

  function lookup(o, path, depth) {
    if (own(o, path)) return o[path];
    if (depth >= MAX_DEPTH) return undefined;
    // The longest literal key first: "log.level" wins over log → level.
    for (let i = path.lastIndexOf('.'); i > 0; i = path.lastIndexOf('.', i - 1)) {
      const head = path.slice(0, i);
      if (own(o, head)) {
        const v = o[head];
        if (v !== null && typeof v === 'object') {
          const r = lookup(v, path.slice(i + 1), depth + 1);
          if (r !== undefined) return r;
        }
      }
    }
    return undefined;
  }

  function formatValue(v) {
    if (typeof v === 'string') return v;
    if (v === undefined) return '';
    try {
      const s = JSON.stringify(v);
      return s === undefined ? String(v) : s;
    } catch (e) {
      return String(v); // BigInt, cycles
    }
  }

  const LogtailFormat = Object.freeze({
    hasAnsi: hasAnsi,
    stripAnsi: stripAnsi,
    ansiSpans: ansiSpans,
    levelOf: levelOf,
    parseStructured: parseStructured,
    fieldPaths: fieldPaths,
    getField: getField,
    formatValue: formatValue,
  });
  root.LogtailFormat = LogtailFormat;
  if (typeof module !== 'undefined' && module.exports) module.exports = LogtailFormat;
})(typeof globalThis !== 'undefined' ? globalThis : this);
