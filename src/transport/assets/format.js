/* TEMPORARY stub until the real format.js lands */
(() => {
  const strip = (s) => s.replace(/\x1b\[[0-9;]*[A-Za-z]/g, '');
  const F = {
    hasAnsi: (s) => s.indexOf('\x1b') >= 0,
    stripAnsi: strip,
    ansiSpans: (s) => [{ text: strip(s), cls: '', fg: null, bg: null }],
    levelOf: (s) => { const m = /\b(ERROR|WARN|INFO|DEBUG)\b/.exec(s.slice(0, 200)); return m ? m[1].toLowerCase() : ''; },
    parseStructured: (s) => { if (s[0] !== '{') return null; try { const o = JSON.parse(s); return o && typeof o === 'object' ? { kind: 'json', fields: o, time: o.time || null, level: o.level || '', msg: typeof o.msg === 'string' ? o.msg : null } : null; } catch (_) { return null; } },
    fieldPaths: (o, p = '') => { const out = []; for (const k of Object.keys(o)) { const v = o[k]; if (v && typeof v === 'object' && !Array.isArray(v)) out.push(...F.fieldPaths(v, p + k + '.')); else out.push(p + k); } return out; },
    getField: (o, path) => { if (path in o) return o[path]; let v = o; for (const k of path.split('.')) { if (v == null || typeof v !== 'object') return undefined; v = v[k]; } return v; },
    formatValue: (v) => (typeof v === 'string' ? v : JSON.stringify(v)),
  };
  globalThis.LogtailFormat = Object.freeze(F);
})();
