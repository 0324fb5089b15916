// Unit tests of src/transport/assets/format.js (the viewer's pure functions) and the
// labelled level corpus levels.tsv. Node >= 18, no packages:
//   node --test tests/viewer/format.test.js
// Run from cargo by tests/viewer_format.rs.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');

const F = require('../../src/transport/assets/format.js');

const ESC = '\x1b';

/** ansiSpans as [text, cls] pairs, with fg/bg only where set. */
function spans(s) {
  return F.ansiSpans(s).map((x) => {
    const out = [x.text, x.cls];
    if (x.fg !== null || x.bg !== null) out.push(x.fg, x.bg);
    return out;
  });
}

// ------------------------------------------------------------------ the module

test('the module: frozen, the same object on globalThis, the eight functions', () => {
  assert.ok(Object.isFrozen(F));
  assert.equal(globalThis.LogtailFormat, F);
  assert.deepEqual(Object.keys(F).sort(), [
    'ansiSpans', 'fieldPaths', 'formatValue', 'getField', 'hasAnsi', 'levelOf', 'parseStructured', 'stripAnsi',
  ]);
});

// ------------------------------------------------------------------ levels corpus

function corpus() {
  const file = path.join(__dirname, 'levels.tsv');
  const rows = [];
  fs.readFileSync(file, 'utf8').split('\n').forEach((line, i) => {
    if (line === '' || line.startsWith('#')) return;
    const tab = line.indexOf('\t');
    assert.ok(tab > 0, `levels.tsv:${i + 1}: no TAB`);
    const label = line.slice(0, tab);
    assert.ok(['error', 'warn', 'info', 'debug', 'none'].includes(label), `levels.tsv:${i + 1}: label ${label}`);
    rows.push({ no: i + 1, label, raw: line.slice(tab + 1).replace(/\\e/g, ESC) });
  });
  return rows;
}

test('levelOf on the labelled corpus: >= 95 % right, no false error', (t) => {
  const rows = corpus();
  assert.ok(rows.length >= 600, `only ${rows.length} lines`);
  const nonInfo = rows.filter((r) => r.label !== 'info').length;
  assert.ok(nonInfo / rows.length >= 0.3, `only ${nonInfo} non-info lines`);
  const wrong = [];
  const falseError = [];
  for (const r of rows) {
    const plain = F.stripAnsi(r.raw);
    const got = F.levelOf(plain) || 'none';
    if (got === r.label) continue;
    const row = `  levels.tsv:${r.no}: ${r.label} -> ${got}: ${plain}`;
    wrong.push(row);
    if (got === 'error') falseError.push(row);
  }
  const right = rows.length - wrong.length;
  const pct = (100 * right) / rows.length;
  t.diagnostic(`${right} of ${rows.length} right (${pct.toFixed(2)} %), ${wrong.length} wrong`);
  assert.equal(falseError.length, 0, `lines classified error that are not:\n${falseError.join('\n')}`);
  assert.ok(pct >= 95, `${pct.toFixed(2)} % right; misclassified:\n${wrong.join('\n')}`);
});

test('levelOf agrees with parseStructured(...).level on JSON lines', () => {
  for (const r of corpus()) {
    const plain = F.stripAnsi(r.raw);
    const s = F.parseStructured(plain);
    if (s && s.kind === 'json') assert.equal(s.level, F.levelOf(plain), `levels.tsv:${r.no}`);
  }
});

test('levelOf: odd input', () => {
  assert.equal(F.levelOf(''), '');
  assert.equal(F.levelOf(undefined), '');
  assert.equal(F.levelOf(42), '');
  assert.equal(F.levelOf('{"level":'), '');
  assert.equal(F.levelOf('{"level": "error"'), ''); // not an object: the text rules, which find nothing
  assert.equal(F.levelOf('[]'), '');
  assert.equal(F.levelOf('ERROR'), 'error');
  assert.equal(F.levelOf('    '), '');
  // Only the first 300 characters are read in plain text.
  assert.equal(F.levelOf('x'.repeat(400) + ' level=error'), '');
  assert.equal(F.levelOf('2024-01-01 12:00:00 ' + 'y'.repeat(400)), '');
  // Long hostile lines finish (no timing asserted).
  assert.equal(F.levelOf('['.repeat(65536)), '');
  assert.equal(F.levelOf('2024-01-01 '.repeat(6000)), '');
  assert.equal(F.levelOf('level='.repeat(10000)), '');
  assert.equal(F.levelOf('{' + '"a":{'.repeat(5000) + '}'.repeat(5001)), '');
});

test('levelOf: value forms of JSON levels', () => {
  const cases = [
    ['{"level":10}', 'debug'], ['{"level":20}', 'debug'], ['{"level":30}', 'info'],
    ['{"level":40}', 'warn'], ['{"level":50}', 'error'], ['{"level":60}', 'error'],
    ['{"level":"30"}', 'info'], ['{"level":5}', ''],
    ['{"severity":0}', 'error'], ['{"severity":3}', 'error'], ['{"severity":4}', 'warn'],
    ['{"severity":5}', 'info'], ['{"severity":6}', 'info'], ['{"severity":7}', 'debug'], ['{"severity":8}', ''],
    ['{"severityNumber":4}', 'debug'], ['{"severityNumber":8}', 'debug'], ['{"severityNumber":9}', 'info'],
    ['{"severityNumber":12}', 'info'], ['{"severityNumber":13}', 'warn'], ['{"severityNumber":16}', 'warn'],
    ['{"severityNumber":17}', 'error'], ['{"severityNumber":24}', 'error'], ['{"severityNumber":25}', ''],
    ['{"severityText":"WARN"}', 'warn'], ['{"@l":"Warning"}', 'warn'], ['{"lvl":"eror"}', 'error'],
    ['{"level":"W"}', 'warn'], ['{"level":"E"}', 'error'], ['{"level":"Notice"}', 'info'],
    ['{"level":"VERBOSE"}', 'debug'], ['{"level":"emerg"}', 'error'], ['{"level":"alert"}', 'error'],
    ['{"level":"critical"}', 'error'], ['{"level":"panic"}', 'error'], ['{"level":"trace"}', 'debug'],
    ['{"level":"unknown","severity":"warning"}', 'warn'],
    ['{"log.level":"error"}', 'error'], ['{"log":{"level":"warn"}}', 'warn'],
    ['{"msg":"no level","level":null}', ''], ['{"level":{"name":"error"}}', ''],
  ];
  for (const [line, want] of cases) assert.equal(F.levelOf(line), want, line);
});

// ------------------------------------------------------------------ hasAnsi / stripAnsi

test('hasAnsi', () => {
  assert.equal(F.hasAnsi('plain'), false);
  assert.equal(F.hasAnsi(''), false);
  assert.equal(F.hasAnsi(`a${ESC}[1mb`), true);
  assert.equal(F.hasAnsi(`${ESC}`), true);
  assert.equal(F.hasAnsi('\x9b31m'), false);
});

test('stripAnsi', () => {
  const s = 'no escapes here';
  assert.equal(F.stripAnsi(s), s);
  assert.equal(F.stripAnsi(''), '');
  assert.equal(F.stripAnsi(null), '');
  assert.equal(F.stripAnsi(`${ESC}[1;31merror${ESC}[0m: x`), 'error: x');
  assert.equal(F.stripAnsi(`a${ESC}[mb`), 'ab');
  assert.equal(F.stripAnsi(`${ESC}[2K${ESC}[1;1H${ESC}[?25lok`), 'ok');
  assert.equal(F.stripAnsi(`${ESC}[38:2::1:2:3mx`), 'x');
  assert.equal(F.stripAnsi(`${ESC}]0;title\x07rest`), 'rest');
  assert.equal(F.stripAnsi(`${ESC}]8;;https://x.test/${ESC}\\link${ESC}]8;;${ESC}\\`), 'link');
  assert.equal(F.stripAnsi(`${ESC}Pq#0;2;0;0;0${ESC}\\x`), 'x'); // DCS
  assert.equal(F.stripAnsi(`${ESC}(B${ESC}7${ESC}=x`), 'x');
  // A stray ESC goes, the text after it stays.
  assert.equal(F.stripAnsi(`a${ESC}`), 'a');
  assert.equal(F.stripAnsi(`a${ESC}${ESC}[1mb`), 'ab');
  assert.equal(F.stripAnsi(`a${ESC}\x07b`), 'a\x07b');
  // An OSC without its terminator is no sequence: only its ESC goes.
  assert.equal(F.stripAnsi(`${ESC}]0;title and more`), ']0;title and more');
  assert.equal(F.stripAnsi(`${ESC}]0;title ${ESC}[31mred`), ']0;title red');
  // A CSI cut short goes up to where it stops.
  assert.equal(F.stripAnsi(`x${ESC}[31`), 'x');
  assert.equal(F.stripAnsi(`x${ESC}[3\x07y`), 'x\x07y');
  // Other control characters stay; 8-bit CSI is not interpreted.
  assert.equal(F.stripAnsi('a\tb\x00c\x7fd\x9b31me'), 'a\tb\x00c\x7fd\x9b31me');
});

// ------------------------------------------------------------------ ansiSpans

test('ansiSpans: plain text and empty input', () => {
  assert.deepEqual(F.ansiSpans(''), []);
  assert.deepEqual(F.ansiSpans(null), []);
  assert.deepEqual(F.ansiSpans('hello\tworld'), [{ text: 'hello\tworld', cls: '', fg: null, bg: null }]);
  assert.deepEqual(F.ansiSpans(`${ESC}[31m${ESC}[0m`), []);
});

test('ansiSpans: attributes and their resets', () => {
  assert.deepEqual(spans(`${ESC}[1mB`), [['B', 'a-b']]);
  assert.deepEqual(spans(`${ESC}[2mD`), [['D', 'a-d']]);
  assert.deepEqual(spans(`${ESC}[3mI`), [['I', 'a-i']]);
  assert.deepEqual(spans(`${ESC}[4mU`), [['U', 'a-u']]);
  assert.deepEqual(spans(`${ESC}[9mS`), [['S', 'a-s']]);
  assert.deepEqual(spans(`${ESC}[8mK`), [['K', 'a-k']]);
  assert.deepEqual(spans(`${ESC}[21mU`), [['U', 'a-u']]);
  assert.deepEqual(spans(`${ESC}[4:3mU${ESC}[4:0mx`), [['U', 'a-u'], ['x', '']]);
  // One order of classes, whatever the order of the parameters.
  assert.deepEqual(spans(`${ESC}[9;8;4;3;2;1;31;42mx`), [['x', 'a-b a-d a-i a-u a-s a-k a-f1 a-g2']]);
  assert.deepEqual(spans(`${ESC}[1;2ma${ESC}[22mb`), [['a', 'a-b a-d'], ['b', '']]);
  assert.deepEqual(spans(`${ESC}[3ma${ESC}[23mb`), [['a', 'a-i'], ['b', '']]);
  assert.deepEqual(spans(`${ESC}[4ma${ESC}[24mb`), [['a', 'a-u'], ['b', '']]);
  assert.deepEqual(spans(`${ESC}[8ma${ESC}[28mb`), [['a', 'a-k'], ['b', '']]);
  assert.deepEqual(spans(`${ESC}[9ma${ESC}[29mb`), [['a', 'a-s'], ['b', '']]);
  assert.deepEqual(spans(`${ESC}[1;31;44ma${ESC}[39mb${ESC}[49mc${ESC}[0md`), [
    ['a', 'a-b a-f1 a-g4'], ['b', 'a-b a-g4'], ['c', 'a-b'], ['d', ''],
  ]);
  assert.deepEqual(spans(`${ESC}[1;4;31ma${ESC}[mb`), [['a', 'a-b a-u a-f1'], ['b', '']]);
  assert.deepEqual(spans(`${ESC}[1;31ma${ESC}[;4mb`), [['a', 'a-b a-f1'], ['b', 'a-u']]);
  // Unknown parameters are ignored (blink, fonts, overline, 999).
  assert.deepEqual(spans(`${ESC}[5;6;11;53;999;32mx`), [['x', 'a-f2']]);
});

test('ansiSpans: the 16-colour palette', () => {
  for (let i = 0; i < 8; i++) {
    assert.deepEqual(spans(`${ESC}[${30 + i}mx`), [['x', `a-f${i}`]]);
    assert.deepEqual(spans(`${ESC}[${90 + i}mx`), [['x', `a-f${8 + i}`]]);
    assert.deepEqual(spans(`${ESC}[${40 + i}mx`), [['x', `a-g${i}`]]);
    assert.deepEqual(spans(`${ESC}[${100 + i}mx`), [['x', `a-g${8 + i}`]]);
  }
  for (let n = 0; n < 16; n++) {
    assert.deepEqual(spans(`${ESC}[38;5;${n}mx`), [['x', `a-f${n}`]]);
    assert.deepEqual(spans(`${ESC}[48;5;${n}mx`), [['x', `a-g${n}`]]);
  }
  assert.deepEqual(spans(`${ESC}[38:5:9mx`), [['x', 'a-f9']]);
});

test('ansiSpans: 256 colours and true colour', () => {
  const c256 = (n) => F.ansiSpans(`${ESC}[38;5;${n}mx`)[0].fg;
  assert.equal(c256(16), 'rgb(0,0,0)');
  assert.equal(c256(196), 'rgb(255,0,0)');
  assert.equal(c256(46), 'rgb(0,255,0)');
  assert.equal(c256(21), 'rgb(0,0,255)');
  assert.equal(c256(110), 'rgb(135,175,215)');
  assert.equal(c256(208), 'rgb(255,135,0)');
  assert.equal(c256(231), 'rgb(255,255,255)');
  assert.equal(c256(232), 'rgb(8,8,8)');
  assert.equal(c256(244), 'rgb(128,128,128)');
  assert.equal(c256(255), 'rgb(238,238,238)');
  assert.deepEqual(spans(`${ESC}[48;5;124mx`), [['x', '', null, 'rgb(175,0,0)']]);
  assert.deepEqual(spans(`${ESC}[38;2;1;2;3mx`), [['x', '', 'rgb(1,2,3)', null]]);
  assert.deepEqual(spans(`${ESC}[48;2;10;20;30mx`), [['x', '', null, 'rgb(10,20,30)']]);
  assert.deepEqual(spans(`${ESC}[38;2;300;256;999mx`), [['x', '', 'rgb(255,255,255)', null]]);
  assert.deepEqual(spans(`${ESC}[38;2;;;mx`), [['x', '', 'rgb(0,0,0)', null]]);
  assert.deepEqual(spans(`${ESC}[38:2::10:20:30mx`), [['x', '', 'rgb(10,20,30)', null]]);
  assert.deepEqual(spans(`${ESC}[38:2:10:20:30mx`), [['x', '', 'rgb(10,20,30)', null]]);
  assert.deepEqual(spans(`${ESC}[48:5:196mx`), [['x', '', null, 'rgb(255,0,0)']]);
  // A palette colour replaces a true colour and the other way round.
  assert.deepEqual(spans(`${ESC}[38;2;1;2;3ma${ESC}[31mb${ESC}[38;5;200mc`), [
    ['a', '', 'rgb(1,2,3)', null], ['b', 'a-f1'], ['c', '', 'rgb(255,0,215)', null],
  ]);
  // After an extended colour, the parameters go on.
  assert.deepEqual(spans(`${ESC}[38;5;196;1;48;2;0;0;1;4mx`), [['x', 'a-b a-u', 'rgb(255,0,0)', 'rgb(0,0,1)']]);
  // 58 (underline colour) is read and dropped, its arguments with it.
  assert.deepEqual(spans(`${ESC}[58;5;4;1mx`), [['x', 'a-b']]);
  assert.deepEqual(spans(`${ESC}[58;2;1;2;3;3mx`), [['x', 'a-i']]);
  assert.deepEqual(spans(`${ESC}[58:2::1:2:3;9mx`), [['x', 'a-s']]);
});

test('ansiSpans: inverse', () => {
  assert.deepEqual(spans(`${ESC}[7mx`), [['x', 'a-fi a-gi']]);
  assert.deepEqual(spans(`${ESC}[31;7mx`), [['x', 'a-fi a-g1']]);
  assert.deepEqual(spans(`${ESC}[7;44mx`), [['x', 'a-f4 a-gi']]);
  assert.deepEqual(spans(`${ESC}[31;44;7mx`), [['x', 'a-f4 a-g1']]);
  assert.deepEqual(spans(`${ESC}[7;1;91;102mx`), [['x', 'a-b a-f10 a-g9']]);
  assert.deepEqual(spans(`${ESC}[38;2;1;2;3;7mx`), [['x', 'a-fi', null, 'rgb(1,2,3)']]);
  assert.deepEqual(spans(`${ESC}[48;5;196;7mx`), [['x', 'a-gi', 'rgb(255,0,0)', null]]);
  assert.deepEqual(spans(`${ESC}[38;2;1;2;3;48;2;4;5;6;7mx`), [['x', '', 'rgb(4,5,6)', 'rgb(1,2,3)']]);
  assert.deepEqual(spans(`${ESC}[7;31ma${ESC}[27mb${ESC}[7mc${ESC}[0md`), [
    ['a', 'a-fi a-g1'], ['b', 'a-f1'], ['c', 'a-fi a-g1'], ['d', ''],
  ]);
});

test('ansiSpans: runs of one style are merged, no empty spans', () => {
  assert.deepEqual(spans(`${ESC}[31ma${ESC}[31mb${ESC}[1m${ESC}[22mc`), [['abc', 'a-f1']]);
  assert.deepEqual(spans(`a${ESC}[0mb${ESC}[mc`), [['abc', '']]);
  assert.deepEqual(spans(`${ESC}[1m${ESC}[0m${ESC}[32m${ESC}[39mx`), [['x', '']]);
  assert.deepEqual(spans(`${ESC}[38;5;1mA${ESC}[31mB`), [['AB', 'a-f1']]);
  assert.deepEqual(spans(`${ESC}[38;5;196mA${ESC}[38;2;255;0;0mB`), [['AB', '', 'rgb(255,0,0)', null]]);
  for (const x of F.ansiSpans(`${ESC}[1m${ESC}[2K${ESC}[0m${ESC}[31m`)) assert.notEqual(x.text, '');
});

test('ansiSpans: control characters as their own ctl spans', () => {
  assert.deepEqual(spans('a\x00b'), [['a', ''], ['\u2400', 'ctl'], ['b', '']]);
  assert.deepEqual(spans('\x07\x08\r\n\x1f'), [
    ['\u2407', 'ctl'], ['\u2408', 'ctl'], ['\u240d', 'ctl'], ['\u240a', 'ctl'], ['\u241f', 'ctl'],
  ]);
  assert.deepEqual(spans('x\x7fy'), [['x', ''], ['\u2421', 'ctl'], ['y', '']]);
  assert.deepEqual(spans('\x80\x85\x9b\x9f'), [['<80>', 'ctl'], ['<85>', 'ctl'], ['<9b>', 'ctl'], ['<9f>', 'ctl']]);
  assert.deepEqual(spans('\x9b31mx'), [['<9b>', 'ctl'], ['31mx', '']]);
  assert.deepEqual(spans('tab\tstays'), [['tab\tstays', '']]);
  // A control in a style keeps the style's classes.
  assert.deepEqual(spans(`${ESC}[1;31ma\x07b`), [['a', 'a-b a-f1'], ['\u2407', 'a-b a-f1 ctl'], ['b', 'a-b a-f1']]);
  assert.deepEqual(spans(`${ESC}[38;5;100m\x01`), [['\u2401', 'ctl', 'rgb(135,135,0)', null]]);
  // Text after a control does not merge into text before it.
  assert.deepEqual(spans(`a\x00${ESC}[0mb`), [['a', ''], ['\u2400', 'ctl'], ['b', '']]);
  // Unicode beyond C1 is text.
  assert.deepEqual(spans('é \u00a0 \u2028 😀'), [['é \u00a0 \u2028 😀', '']]);
});

test('ansiSpans: sequences that are not SGR are shown', () => {
  assert.deepEqual(spans(`a${ESC}[2Kb`), [['a', ''], ['\u241b[2K', 'ctl'], ['b', '']]);
  assert.deepEqual(spans(`${ESC}[1;1H${ESC}[?25l`), [['\u241b[1;1H', 'ctl'], ['\u241b[?25l', 'ctl']]);
  assert.deepEqual(spans(`${ESC}[>4;2m${ESC}[1 q`), [['\u241b[>4;2m', 'ctl'], ['\u241b[1 q', 'ctl']]);
  assert.deepEqual(spans(`${ESC}]0;my title\x07rest`), [['\u241b]0;my title\u2407', 'ctl'], ['rest', '']]);
  assert.deepEqual(spans(`${ESC}]8;;https://x.test/${ESC}\\link${ESC}]8;;${ESC}\\`), [
    ['\u241b]8;;https://x.test/\u241b\\', 'ctl'], ['link', ''], ['\u241b]8;;\u241b\\', 'ctl'],
  ]);
  assert.deepEqual(spans(`${ESC}(B${ESC}7${ESC}\\`), [['\u241b(B', 'ctl'], ['\u241b7', 'ctl'], ['\u241b\\', 'ctl']]);
  assert.deepEqual(spans(`${ESC}[31m${ESC}[2Kx`), [['\u241b[2K', 'a-f1 ctl'], ['x', 'a-f1']]);
  // A long OSC is cut to 40 characters and an ellipsis.
  const long = F.ansiSpans(`${ESC}]2;${'t'.repeat(100)}\x07after`);
  assert.equal(long.length, 2);
  assert.equal(long[0].text, '\u241b]2;' + 't'.repeat(36) + '\u2026');
  assert.equal(long[0].cls, 'ctl');
  assert.deepEqual(long[1], { text: 'after', cls: '', fg: null, bg: null });
  // Controls inside an OSC are shown as pictures too.
  assert.deepEqual(spans(`${ESC}]0;a\x01b\x07`), [['\u241b]0;a\u2401b\u2407', 'ctl']]);
});

test('ansiSpans: stray ESC and malformed sequences never throw', () => {
  assert.deepEqual(spans(ESC), [['\u241b', 'ctl']]);
  assert.deepEqual(spans(`a${ESC}`), [['a', ''], ['\u241b', 'ctl']]);
  assert.deepEqual(spans(`${ESC}${ESC}[1mx`), [['\u241b', 'ctl'], ['x', 'a-b']]);
  assert.deepEqual(spans(`${ESC}\x07`), [['\u241b', 'ctl'], ['\u2407', 'ctl']]);
  assert.deepEqual(spans(`${ESC}é`), [['\u241b', 'ctl'], ['é', '']]);
  // Colours without all their arguments: no colour, and the rest of the sequence is dropped.
  assert.deepEqual(spans(`${ESC}[38;5mx`), [['x', '']]);
  assert.deepEqual(spans(`${ESC}[38;2;1mx`), [['x', '']]);
  assert.deepEqual(spans(`${ESC}[48;2;1;2mx`), [['x', '']]);
  assert.deepEqual(spans(`${ESC}[38mx`), [['x', '']]);
  assert.deepEqual(spans(`${ESC}[38;7;1mx`), [['x', '']]);
  assert.deepEqual(spans(`${ESC}[1;38;5mx`), [['x', 'a-b']]);
  assert.deepEqual(spans(`${ESC}[38;5;256mx`), [['x', '']]);
  assert.deepEqual(spans(`${ESC}[38:5mx${ESC}[38:2:1mx`), [['xx', '']]);
  assert.deepEqual(spans(`${ESC}[${'9'.repeat(400)}mx`), [['x', '']]);
  // An OSC without a terminator: a stray ESC, the rest is text.
  assert.deepEqual(spans(`${ESC}]0;title`), [['\u241b', 'ctl'], [']0;title', '']]);
  assert.deepEqual(spans(`${ESC}]0;t ${ESC}[1mx`), [['\u241b', 'ctl'], [']0;t ', ''], ['x', 'a-b']]);
  // A CSI cut short (end of line, or a byte that cannot be in it).
  assert.deepEqual(spans(`x${ESC}[31`), [['x', ''], ['\u241b[31', 'ctl']]);
  assert.deepEqual(spans(`x${ESC}[`), [['x', ''], ['\u241b[', 'ctl']]);
  assert.deepEqual(spans(`${ESC}[3\x07y`), [['\u241b[3', 'ctl'], ['\u2407', 'ctl'], ['y', '']]);
  assert.deepEqual(spans(`${ESC}[1é`), [['\u241b[1', 'ctl'], ['é', '']]);
});

test('ansiSpans: random input keeps every character of text, in styled runs', () => {
  // A small LCG, so that a failure repeats.
  let seed = 12345;
  const rand = (n) => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed % n;
  };
  const alphabet = [ESC, '[', ']', ';', ':', 'm', 'H', '\x07', '\\', '3', '8', '5', '2', '1', '0', '7', 'a', ' ', '\x00', '\x9b', '?', 'é'];
  const ctl = /[\x00-\x08\x0a-\x1f\x7f-\x9f]/g;
  for (let round = 0; round < 3000; round++) {
    let s = '';
    const len = rand(40);
    for (let i = 0; i < len; i++) s += alphabet[rand(alphabet.length)];
    const out = F.ansiSpans(s);
    let text = '';
    for (let i = 0; i < out.length; i++) {
      const x = out[i];
      assert.ok(x.text.length > 0, JSON.stringify(s));
      assert.equal(typeof x.cls, 'string');
      if (/(^| )ctl$/.test(x.cls)) continue;
      assert.ok(!ctl.test(x.text), JSON.stringify(s));
      text += x.text;
      const prev = out[i - 1];
      if (prev && !/(^| )ctl$/.test(prev.cls)) {
        assert.ok(prev.cls !== x.cls || prev.fg !== x.fg || prev.bg !== x.bg, `unmerged runs for ${JSON.stringify(s)}`);
      }
    }
    assert.equal(text, F.stripAnsi(s).replace(ctl, ''), JSON.stringify(s));
  }
});

test('ansiSpans: the line tracing-subscriber prints', () => {
  const line = `${ESC}[2m2024-05-01T10:15:32.123456Z${ESC}[0m ${ESC}[33m WARN${ESC}[0m ${ESC}[2mapp::tail${ESC}[0m${ESC}[2m:${ESC}[0m truncated ${ESC}[3mpath${ESC}[0m${ESC}[2m=${ESC}[0m/x`;
  assert.deepEqual(spans(line), [
    ['2024-05-01T10:15:32.123456Z', 'a-d'], [' ', ''], [' WARN', 'a-f3'], [' ', ''], ['app::tail:', 'a-d'],
    [' truncated ', ''], ['path', 'a-i'], ['=', 'a-d'], ['/x', ''],
  ]);
  assert.equal(F.levelOf(F.stripAnsi(line)), 'warn');
});

// ------------------------------------------------------------------ parseStructured

test('parseStructured: JSON', () => {
  const line = '  {"level":"warn","ts":1704067200.5,"msg":"disk low","disk":{"free":"9%","dev":"sda"},"tags":["a","b"]}  ';
  assert.deepEqual(F.parseStructured(line), {
    kind: 'json',
    fields: { level: 'warn', ts: 1704067200.5, msg: 'disk low', disk: { free: '9%', dev: 'sda' }, tags: ['a', 'b'] },
    time: '2024-01-01T00:00:00.500Z',
    level: 'warn',
    msg: 'disk low',
  });
  assert.equal(F.parseStructured('{"level":30,"time":1704067200123,"msg":"hi"}').time, '2024-01-01T00:00:00.123Z');
  assert.equal(F.parseStructured('{"level":30,"time":1704067200123,"msg":"hi"}').level, 'info');
  assert.equal(F.parseStructured('{"time":"2024-05-01T10:15:32Z"}').time, '2024-05-01T10:15:32Z');
  assert.equal(F.parseStructured('{"ts":1704067200}').time, '2024-01-01T00:00:00.000Z');
  assert.equal(F.parseStructured('{"ts":"1704067200123456"}').time, '2024-01-01T00:00:00.123456Z');
  assert.equal(F.parseStructured('{"ts":1704067200123456789}').time.slice(0, 23), '2024-01-01T00:00:00.123');
  assert.equal(F.parseStructured('{"t":42}').time, '42');
  assert.equal(F.parseStructured('{"date":"yesterday"}').time, 'yesterday');
  assert.equal(F.parseStructured('{"@timestamp":"2024-01-01T00:00:00Z","time":null}').time, '2024-01-01T00:00:00Z');
  assert.equal(F.parseStructured('{"timestamp":"third","ts":"second","time":"first"}').time, 'first'); // key order
  assert.equal(F.parseStructured('{"timestamp":"third","ts":"second"}').time, 'second');
  assert.equal(F.parseStructured('{"t":{"$date":"2024-05-01T10:15:32.123+00:00"},"s":"W","c":"NET","ctx":"x","msg":"m"}').time, '2024-05-01T10:15:32.123+00:00');
  assert.equal(F.parseStructured('{"t":{"$date":{"$numberLong":"1704067200000"}}}').time, '2024-01-01T00:00:00.000Z');
  assert.equal(F.parseStructured('{"a":1}').time, null);
  assert.equal(F.parseStructured('{"a":1}').level, '');
  assert.equal(F.parseStructured('{"a":1}').msg, null);
  assert.deepEqual(F.parseStructured('{}'), { kind: 'json', fields: {}, time: null, level: '', msg: null });
  // Nested ECS level, the dotted key, and message keys in their order.
  assert.equal(F.parseStructured('{"log":{"level":"error"},"message":"m"}').level, 'error');
  assert.equal(F.parseStructured('{"log.level":"debug"}').level, 'debug');
  assert.equal(F.parseStructured('{"message":"second","msg":"first"}').msg, 'first');
  assert.equal(F.parseStructured('{"event":"user logged in"}').msg, 'user logged in');
  assert.equal(F.parseStructured('{"msg":{"a":1},"message":"text"}').msg, 'text');
  assert.equal(F.parseStructured('{"msg":12}').msg, '12');
  // Docker's json-file: the level from the text, one trailing newline off the message.
  assert.deepEqual(F.parseStructured('{"log":"2024-01-01 00:00:00 WARN x\\n","stream":"stdout","time":"2024-01-01T00:00:00.1Z"}'), {
    kind: 'json',
    fields: { log: '2024-01-01 00:00:00 WARN x\n', stream: 'stdout', time: '2024-01-01T00:00:00.1Z' },
    time: '2024-01-01T00:00:00.1Z',
    level: 'warn',
    msg: '2024-01-01 00:00:00 WARN x',
  });
  // Not an object.
  assert.equal(F.parseStructured('[1,2]'), null);
  assert.equal(F.parseStructured('{"a":1'), null);
  assert.equal(F.parseStructured('{"a":1} trailing'), null);
  assert.equal(F.parseStructured('{not json}'), null);
  assert.equal(F.parseStructured(''), null);
  assert.equal(F.parseStructured(undefined), null);
});

test('parseStructured: OpenTelemetry and Serilog', () => {
  const otel = F.parseStructured('{"timeUnixNano":"1704067200123456789","severityNumber":17,"severityText":"ERROR","body":{"stringValue":"payment declined"},"attributes":[]}');
  assert.equal(otel.kind, 'json');
  assert.equal(otel.time, '2024-01-01T00:00:00.123456789Z');
  assert.equal(otel.level, 'error');
  assert.equal(otel.msg, 'payment declined');
  const unset = F.parseStructured('{"timeUnixNano":"0","observedTimeUnixNano":"1704067200000000000","severityNumber":9,"body":{"stringValue":"x"}}');
  assert.equal(unset.time, '2024-01-01T00:00:00.000Z');
  assert.equal(unset.level, 'info');
  assert.equal(F.parseStructured('{"severityNumber":"SEVERITY_NUMBER_WARN2"}').level, 'warn');
  assert.equal(F.parseStructured('{"body":{"intValue":"3"}}').msg, null);
  const clef = F.parseStructured('{"@t":"2024-01-01T00:00:00Z","@mt":"Hello {User}, {{literal}} {Missing} {Count:000} {@Obj}","User":"bob","Count":7,"Obj":{"a":1}}');
  assert.equal(clef.time, '2024-01-01T00:00:00Z');
  assert.equal(clef.level, 'info'); // CLEF: no @l is Information
  assert.equal(clef.msg, 'Hello bob, {literal} {Missing} 7 {"a":1}');
  assert.equal(F.parseStructured('{"@t":"2024-01-01T00:00:00Z","@m":"rendered","@mt":"x {A}","@l":"Error"}').msg, 'rendered');
  assert.equal(F.parseStructured('{"@t":"2024-01-01T00:00:00Z","@m":"rendered","@l":"Error"}').level, 'error');
});

test('parseStructured: logfmt', () => {
  assert.deepEqual(F.parseStructured('level=info ts=1704067200 caller=main.go:12 msg="hello \\"world\\"\\tok" path=/a/b dur=1.2ms empty= a.b=1 c-d=2 e/f=3'), {
    kind: 'logfmt',
    fields: {
      level: 'info', ts: '1704067200', caller: 'main.go:12', msg: 'hello "world"\tok', path: '/a/b',
      dur: '1.2ms', empty: '', 'a.b': '1', 'c-d': '2', 'e/f': '3',
    },
    time: '2024-01-01T00:00:00.000Z',
    level: 'info',
    msg: 'hello "world"\tok',
  });
  const s = F.parseStructured('time="2024-05-01T10:15:32Z" level=warning msg="caf\\u00e9 \\x41 \\\\ \\q"');
  assert.equal(s.time, '2024-05-01T10:15:32Z');
  assert.equal(s.level, 'warn');
  assert.equal(s.msg, 'café A \\ \\q');
  assert.equal(F.parseStructured('t=2024-05-01T10:15:32+0000 lvl=eror msg="x"').level, 'error');
  assert.equal(F.parseStructured('at=error code=H12 desc="Request timeout"').level, 'error');
  assert.equal(F.parseStructured('ts=1 severity=4').level, 'warn');
  assert.equal(F.parseStructured('a=1 b=2').level, '');
  assert.equal(F.parseStructured('a=1 b=2').msg, null);
  assert.equal(F.parseStructured('a=1 b=2').time, null);
  assert.equal(F.parseStructured('  a=1\tb=2  ').kind, 'logfmt');
  // Last value of a repeated key.
  assert.deepEqual(F.parseStructured('a=1 a=2').fields, { a: '2' });
  // __proto__ is a field like any other.
  const p = F.parseStructured('__proto__=x a=b');
  assert.equal(Object.getPrototypeOf(p.fields), Object.prototype);
  assert.deepEqual(Object.keys(p.fields), ['__proto__', 'a']);
  assert.equal(F.getField(p.fields, '__proto__'), 'x');
  // Not logfmt.
  for (const line of [
    'hello a=b', 'a=b', 'a=b free text', 'a=b c', 'a="unterminated b=c', 'a="x"y b=c', '=x b=c',
    '1a=b c=d', 'a = b c = d', 'GET /?a=b&c=d HTTP/1.1', '2024-01-01 level=info msg=x',
  ]) {
    assert.equal(F.parseStructured(line), null, line);
  }
});

test('parseStructured after levelOf: the parsed object is handed out once', () => {
  const line = '{"level":"warn","a":{"b":1}}';
  assert.equal(F.levelOf(line), 'warn');
  const one = F.parseStructured(line);
  const two = F.parseStructured(line);
  assert.deepEqual(one, two);
  assert.notEqual(one.fields, two.fields);
  one.fields.a.b = 2;
  assert.equal(F.levelOf(line), 'warn');
  assert.equal(F.parseStructured(line).fields.a.b, 1);
  assert.equal(F.levelOf('{"level":"error"'), '');
  assert.equal(F.parseStructured('{"level":"error"'), null);
});

// ------------------------------------------------------------------ fields

test('fieldPaths', () => {
  const fields = { a: 1, b: { c: 2, d: { e: 3 } }, f: [1, { x: 2 }], g: {}, 'h.i': 4, j: null, k: '' };
  assert.deepEqual(F.fieldPaths(fields), ['a', 'b.c', 'b.d.e', 'f', 'g', 'h.i', 'j', 'k']);
  assert.deepEqual(F.fieldPaths({}), []);
  assert.deepEqual(F.fieldPaths(null), []);
  assert.deepEqual(F.fieldPaths([1, 2]), []);
  assert.deepEqual(F.fieldPaths({ 'a.b': 1, a: { b: 2 } }), ['a.b']);
  // Deep nesting ends in a leaf.
  let deep = { leaf: 1 };
  for (let i = 0; i < 100; i++) deep = { n: deep };
  const paths = F.fieldPaths(deep);
  assert.equal(paths.length, 1);
  assert.equal(paths[0].split('.').length, 33);
  assert.deepEqual(F.fieldPaths(F.parseStructured('{"log":{"level":"info","logger":"x"},"log.origin":"y"}').fields), ['log.level', 'log.logger', 'log.origin']);
});

test('getField', () => {
  const fields = { 'log.level': 'literal', log: { level: 'nested', 'a.b': { c: 1 } }, f: [10, 20], n: null, z: 0 };
  assert.equal(F.getField(fields, 'log.level'), 'literal');
  assert.equal(F.getField({ log: { level: 'nested' } }, 'log.level'), 'nested');
  assert.equal(F.getField(fields, 'log.a.b.c'), 1);
  assert.deepEqual(F.getField(fields, 'log.a.b'), { c: 1 });
  assert.equal(F.getField(fields, 'f.1'), 20);
  assert.deepEqual(F.getField(fields, 'f'), [10, 20]);
  assert.equal(F.getField(fields, 'n'), null);
  assert.equal(F.getField(fields, 'n.x'), undefined);
  assert.equal(F.getField(fields, 'z'), 0);
  assert.equal(F.getField(fields, 'missing'), undefined);
  assert.equal(F.getField(fields, 'log.missing'), undefined);
  assert.equal(F.getField(fields, 'constructor'), undefined);
  assert.equal(F.getField(fields, 'log.toString'), undefined);
  assert.equal(F.getField(fields, '__proto__'), undefined);
  assert.equal(F.getField(fields, ''), undefined);
  assert.equal(F.getField(null, 'a'), undefined);
  assert.equal(F.getField('str', 'length'), undefined);
  assert.equal(F.getField(fields, 5), undefined);
  // Every path fieldPaths gives leads to a value.
  const parsed = F.parseStructured('{"a":{"b":{"c":1}},"d.e":2,"f":{"g.h":{"i":3}}}').fields;
  assert.deepEqual(F.fieldPaths(parsed).map((p) => F.getField(parsed, p)), [1, 2, 3]);
});

test('formatValue', () => {
  assert.equal(F.formatValue('text'), 'text');
  assert.equal(F.formatValue(''), '');
  assert.equal(F.formatValue(1.5), '1.5');
  assert.equal(F.formatValue(0), '0');
  assert.equal(F.formatValue(true), 'true');
  assert.equal(F.formatValue(null), 'null');
  assert.equal(F.formatValue(undefined), '');
  assert.equal(F.formatValue({ a: 1, b: [1, 'x'] }), '{"a":1,"b":[1,"x"]}');
  assert.equal(F.formatValue([]), '[]');
  assert.equal(F.formatValue(10n), '10');
  const cycle = {};
  cycle.self = cycle;
  assert.equal(F.formatValue(cycle), '[object Object]');
});
