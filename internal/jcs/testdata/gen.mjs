// Known-answer vectors for Rampart's RFC 8785 (JCS) encoder, computed by an independent
// implementation: the npm package canonicalize@5.1.0 (Samuel Erdtman's JavaScript
// implementation, by one of the RFC's authors) on Node.js. Rampart's Go code does not run here.
//
// Regenerate (the outputs are committed; the Go tests only read them):
//
//   cd "$(mktemp -d)" && npm install --save-exact canonicalize@5.1.0 &&
//   NODE_PATH=$PWD/node_modules node --input-type=module < .../internal/jcs/testdata/gen.mjs
//
// It writes vectors.json (whole documents) and numbers.txt (IEEE-754 bit patterns and their
// canonical spelling) in the current directory.
import { createRequire } from 'node:module';
import { writeFileSync } from 'node:fs';
const require = createRequire(process.env.NODE_PATH + '/');
const canonicalize = (await import(require.resolve('canonicalize'))).default;

// Inputs are JSON texts. Every non-ASCII character is written as a \u escape so that the file
// itself says exactly which code points are meant.
const asciiJSON = (v) => JSON.stringify(v).replace(/[\u007f-\uffff]/g, (c) => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0'));

const docs = [
  // RFC 8785 section 3.2.2 (the sample of "Input" and "Output").
  ['rfc8785-3.2.2', '{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001], "string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/", "literals": [null, true, false]}'],
  // RFC 8785 section 3.2.3: sorting by UTF-16 code units.
  ['rfc8785-3.2.3', '{"\\u20ac": "Euro Sign", "\\r": "Carriage Return", "\\ufb33": "Hebrew Letter Dalet With Dagesh", "1": "One", "\\ud83d\\ude00": "Emoji: Grinning Face", "\\u0080": "Control", "\\u00f6": "Latin Small Letter O With Diaeresis"}'],
  ['empty-object', '{}'],
  ['empty-array', '[]'],
  ['nested', '{"b":[{"z":1,"a":2},[],{}],"a":{"d":null,"c":[true,false]}}'],
  ['whitespace', ' \n\t{ "b" : 1 ,\r\n "a" : [ 1 , 2 ] } \n'],
  ['html-and-slash', '{"m":"grant <g1> & more / less"}'],
  ['line-separators', '{"m":"a\\u2028b\\u2029c"}'],
  ['controls', '{"c":"\\u0000\\u0001\\u0007\\b\\t\\n\\u000b\\f\\r\\u000e\\u001f\\u007f"}'],
  ['bom-and-replacement', '{"\\ufeff":"\\ufffd"}'],
  ['supplementary-keys', '{"\\ud83d\\ude00":1,"\\uffff":2,"\\ue000":3,"\\ud800\\udc00":4}'],
  ['key-prefixes', '{"aa":1,"a":2,"ab":3,"":4,"A":5,"a\\u0000":6}'],
  ['numbers-in-context', '{"seq":7,"time":1764121183000,"neg":-0,"f":-1.5e-7,"big":1e21,"small":1e-7,"int-ish":100.0}'],
  // The shape of a Rampart ledger entry (grant.activate with its tally).
  ['ledger-entry', asciiJSON({
    activity_id: 1, activity_name: 'Assign Privileges', actor: { user: { name: 'rampart', type: 'System' } },
    category_name: 'Identity & Access Management', category_uid: 3, class_name: 'User Access Management', class_uid: 3005,
    message: 'alice granted weights-reader-frontier-7 until 2026-11-26T02:39:43Z (approved by bob, dave)',
    metadata: { event_code: 'grant.activate', log_name: 'rampart-ledger', product: { name: 'Rampart', vendor_name: 'Rampart' }, sequence: 7, version: '1.3.0' },
    privileges: ['weights-reader-frontier-7'], severity: 'Informational', severity_id: 1, status: 'Success', status_id: 1,
    time: 1764121183000, time_dt: '2026-11-26T01:39:43Z', type_uid: 300501,
    unmapped: { approvers: ['bob', 'dave'], policy: 'frontier-weights', tally: { steps: [{ name: 'owners', from: ['weights-owners'], need: 1, counted: ['bob'] }, { from: ['security'], need: 1, counted: ['dave'] }], satisfied: true }, reason: 'eval \u2028 run \u00e9 \ud83d\ude00' },
    user: { name: 'alice' },
  })],
];

// Every code point class a string can hold, one string per block of 64 code points below
// U+3000, then a sample above, and surrogate pairs.
const cps = [];
for (let c = 0; c < 0x3000; c++) cps.push(c);
for (const c of [0xd7ff, 0xe000, 0xfeff, 0xfffc, 0xfffd, 0xffff, 0x10000, 0x1f600, 0x10ffff]) cps.push(c);
for (let i = 0; i < cps.length; i += 64) {
  const s = String.fromCodePoint(...cps.slice(i, i + 64).filter((c) => c < 0xd800 || c > 0xdfff));
  docs.push([`strings-${i}`, asciiJSON({ s, [s]: i })]);
}

const vectors = docs.map(([name, input]) => ({ name, input, output: canonicalize(JSON.parse(input)) }));
writeFileSync('vectors.json', JSON.stringify(vectors, null, 1) + '\n');

// Numbers: special values, then pseudo-random bit patterns (a fixed xorshift64*, so the file is
// reproducible) over all exponents, and random integers near the safe-integer bound.
const buf = new DataView(new ArrayBuffer(8));
const bitsOf = (x) => { buf.setFloat64(0, x); return buf.getBigUint64(0).toString(16).padStart(16, '0'); };
const fromBits = (b) => { buf.setBigUint64(0, b); return buf.getFloat64(0); };
const specials = [0, -0, 1, -1, 0.1, 0.2, 0.3, 1 / 3, 2 / 3, 10, 100, 1e20, 1e21, 1e22, 123456789012345680000, 1e-6, 1e-7, 0.000001, 0.0000001,
  1.5e-7, 9007199254740991, 9007199254740992, -9007199254740991, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308,
  333333333.33333329, 1e30, 4.5, 2e-3, 1e-27, 295147905179352830000, 4.35, 0.002, 1e23, 9.999999999999999e22, 1.0000000000000001e21];
let state = 0x9e3779b97f4a7c15n;
const next = () => {
  state ^= state >> 12n; state ^= (state << 25n) & 0xffffffffffffffffn; state ^= state >> 27n;
  return (state * 0x2545f4914f6cdd1dn) & 0xffffffffffffffffn;
};
const lines = [];
const add = (x) => { if (Number.isFinite(x)) lines.push(`${bitsOf(x)} ${canonicalize(x)}`); };
specials.forEach(add);
for (let i = 0; i < 8000; i++) add(fromBits(next()));
for (let i = 0; i < 1000; i++) add(Number(next() % 18014398509481984n) - 9007199254740992);
for (let i = 0; i < 1000; i++) add(Number(next() % 100000000n) / 1000); // decimals like durations and sizes
writeFileSync('numbers.txt', lines.join('\n') + '\n');
