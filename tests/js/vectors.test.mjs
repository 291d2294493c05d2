// The shared routing vectors through jco in Node.js, checked against their
// expectations and, byte for byte, against `audit-archiver route` (wasmtime).

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';

import { hostBin, hostComponentArgs, renderLine, repo, transpileRouter, wasmPath } from './common.mjs';

const vectorDir = join(repo, 'tests', 'vectors');
const cases = readdirSync(vectorDir)
  .filter((f) => f.endsWith('.json'))
  .sort()
  .flatMap((file) => {
    const doc = JSON.parse(readFileSync(join(vectorDir, file), 'utf8'));
    assert.equal(doc.format, 1, `${file}: unknown vector format`);
    return doc.cases.map((c) => ({ ...c, name: `${file}: ${c.name}` }));
  });

const toSettings = (s) => ({
  keyTemplate: s.key_template,
  timeSource: s.time_source,
  utcOffsetMinutes: s.utc_offset_minutes,
  tenantOverrides: s.tenant_overrides.map((o) => ({ queue: o.queue, tenant: o.tenant })),
});

const toMessage = (m) => {
  const message = { messageId: m.message_id, queue: m.queue, body: m.body };
  if (m.first_receive_ms !== null) message.firstReceiveMs = BigInt(m.first_receive_ms);
  if (m.sent_ms !== null) message.sentMs = BigInt(m.sent_ms);
  return message;
};

/** `route` throws the error value (jco's ComponentError.payload): as a result. */
function callRoute(router, settings, message) {
  try {
    return { tag: 'ok', val: router.route(settings, message) };
  } catch (e) {
    if (e.payload === undefined) throw e;
    return { tag: 'err', val: e.payload };
  }
}

function checkExpectation(c, result) {
  const expect = c.expect;
  if (expect.ok) {
    assert.equal(result.tag, 'ok', `${c.name}: expected a placement, got ${JSON.stringify(result.val, (_, v) => (typeof v === 'bigint' ? String(v) : v))}`);
    assert.deepEqual(
      { tenant: result.val.tenant, key: result.val.key, time_ms: Number(result.val.timeMs) },
      expect.ok,
      c.name,
    );
  } else {
    assert.equal(result.tag, 'err', `${c.name}: expected ${expect.error}, got a placement`);
    assert.equal(result.val.tag, expect.error, c.name);
    if (expect.settings_error) assert.equal(result.val.val.tag, expect.settings_error, c.name);
  }
}

/** The command-line flags that give the host a vector's settings. */
function flags(s) {
  const sign = s.utc_offset_minutes < 0 ? '-' : '+';
  const abs = Math.abs(s.utc_offset_minutes);
  const offset = `${sign}${String(Math.floor(abs / 60)).padStart(2, '0')}:${String(abs % 60).padStart(2, '0')}`;
  const args = [`--key-template=${s.key_template}`, `--time-source=${s.time_source}`, `--utc-offset=${offset}`];
  for (const o of s.tenant_overrides) {
    // --tenant-map splits its value on ','.
    assert.ok(!o.queue.includes(',') && !o.tenant.includes(','), 'no comma in a --tenant-map value');
    args.push(`--tenant-map=${o.queue}=${o.tenant}`);
  }
  return args;
}

/** A Lambda SQS record carrying a vector's message. */
function lambdaRecord(m) {
  const attributes = {};
  if (m.first_receive_ms !== null) attributes.ApproximateFirstReceiveTimestamp = String(m.first_receive_ms);
  if (m.sent_ms !== null) attributes.SentTimestamp = String(m.sent_ms);
  return { messageId: m.message_id, body: m.body, eventSourceARN: m.queue, attributes };
}

/**
 * The settings the host hands the component for a vector's settings given as
 * flags. They are the same but for one convenience of the command line:
 * `--tenant-map QUEUE=TENANT` also takes a queue URL or ARN and passes its
 * bare name (host/src/config.rs, `override_for`), where the WIT contract
 * refuses a URL as `invalid-tenant-override`.
 */
function cliSettings(s) {
  const bare = (queue) => {
    if (queue.startsWith('arn:')) return queue.slice(queue.lastIndexOf(':') + 1);
    const scheme = queue.indexOf('://');
    if (scheme < 0) return queue;
    return queue.slice(scheme + 3).split('?')[0].split('/').filter((p) => p !== '').pop() ?? '';
  };
  return {
    ...s,
    tenant_overrides: s.tenant_overrides.map((o) => ({ queue: bare(o.queue.trim()), tenant: o.tenant.trim() })),
  };
}

function runHost(args, input) {
  // The vector's settings only: no AUDIT_ARCHIVER_* variable may leak in.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('AUDIT_ARCHIVER_')));
  const run = spawnSync(hostBin, ['route', '--event', '-', ...hostComponentArgs, ...args], { input, env });
  // EPIPE: the host refused the settings and exited before reading stdin;
  // its status and output are still there to compare.
  if (run.error && run.error.code !== 'EPIPE') throw new Error(`cannot run ${hostBin} (build it: cargo build --release): ${run.error.message}`);
  // stdout stays bytes (`bytes`) for the byte-for-byte comparison.
  return { status: run.status, bytes: run.stdout, stdout: run.stdout.toString('utf8'), stderr: run.stderr.toString('utf8') };
}

describe(`routing vectors in Node.js (jco) — ${wasmPath}`, () => {
  let router;
  before(async () => {
    ({ router } = await transpileRouter('vectors'));
  });

  test('there are vectors', () => {
    assert.ok(cases.length >= 30, `only ${cases.length} vectors`);
  });

  test('route meets every expectation', () => {
    for (const c of cases) checkExpectation(c, callRoute(router, toSettings(c.settings), toMessage(c.message)));
  });

  test('validate-settings agrees with the expectations', () => {
    for (const c of cases) {
      const settingsError = c.expect.settings_error;
      if (settingsError) {
        assert.throws(() => router.validateSettings(toSettings(c.settings)), (e) => e.payload?.tag === settingsError, c.name);
      } else {
        router.validateSettings(toSettings(c.settings));
      }
    }
  });

  test('route-batch meets every expectation, in order, and equals route', () => {
    const groups = new Map();
    for (const c of cases) {
      const key = JSON.stringify(c.settings);
      if (!groups.has(key)) groups.set(key, []);
      groups.get(key).push(c);
    }
    for (const group of groups.values()) {
      const settings = toSettings(group[0].settings);
      const results = router.routeBatch(settings, group.map((c) => toMessage(c.message)));
      assert.equal(results.length, group.length);
      group.forEach((c, i) => {
        checkExpectation(c, results[i]);
        assert.deepEqual(results[i], callRoute(router, settings, toMessage(c.message)), c.name);
      });
    }
  });

  test('route-queue (1.1) gives what route gives, and the host prints the same bytes', () => {
    // One batch per settings and queue: ids and bodies packed into one string
    // (lengths in UTF-8 bytes), tenants and keys unpacked from one.
    const groups = new Map();
    for (const c of cases) {
      const key = JSON.stringify([c.settings, c.message.queue]);
      if (!groups.has(key)) groups.set(key, []);
      groups.get(key).push(c);
    }
    let hostCompared = 0;
    for (const group of groups.values()) {
      const settings = toSettings(group[0].settings);
      const queue = group[0].message.queue;
      const messages = group.map((c) => toMessage(c.message));
      const text = messages.map((m) => m.messageId + m.body).join('');
      const packed = messages.map((m) => ({
        messageIdLen: Buffer.byteLength(m.messageId),
        bodyLen: Buffer.byteLength(m.body),
        firstReceiveMs: m.firstReceiveMs,
        sentMs: m.sentMs,
      }));
      const out = router.routeQueue(settings, queue, text, packed);
      assert.equal(out.results.length, group.length);
      const placed = Buffer.from(out.text, 'utf8');
      let at = 0;
      const take = (len) => placed.subarray(at, (at += len)).toString('utf8');
      const results = out.results.map((r) =>
        r.tag === 'ok' ? { tag: 'ok', val: { tenant: take(r.val.tenantLen), key: take(r.val.keyLen), timeMs: r.val.timeMs } } : r,
      );
      assert.equal(at, placed.length, 'the text is exactly the tenants and keys');
      group.forEach((c, i) => {
        checkExpectation(c, results[i]);
        assert.deepEqual(results[i], callRoute(router, settings, messages[i]), c.name);
      });
      // The host routes a batch from one queue through route-queue too.
      const s = cliSettings(group[0].settings);
      if (JSON.stringify(s) !== JSON.stringify(group[0].settings) || results.some((r) => r.val.tag === 'invalid-settings')) continue;
      const host = runHost(flags(s), JSON.stringify({ Records: group.map((c) => lambdaRecord(c.message)) }));
      assert.equal(host.status, 0, `${group[0].name}: ${host.stderr}`);
      const expected = group.map((c, i) => renderLine(c.message.message_id, results[i]) + '\n').join('');
      assert.ok(host.bytes.equals(Buffer.from(expected, 'utf8')), `${group[0].name}: host and jco route-queue differ`);
      hostCompared += group.length;
    }
    assert.ok(hostCompared > cases.length / 2, `only ${hostCompared} vectors compared with the host`);
  });

  test('audit-archiver route prints the same bytes for text that JSON escapes', () => {
    // Not in the vectors: ids and queues that exercise serde_json's escaping
    // (quotes, backslashes, control characters, DEL, non-ASCII, U+2028) in keys
    // and in error details.
    const settings = { key_template: 'default', time_source: 'first-receive', utc_offset_minutes: 540, tenant_overrides: [] };
    const queue = 'arn:aws:sqs:ap-northeast-1:123456789012:acme-prismacloud-auditlog.fifo';
    const messages = ['é😀', 'a\u2028b', 'q"uo\'te', 'tab\there', 'nl\nx\r', 'del\u007f', 'nul\u0000', 'back\\slash', 'es\u001bc']
      .map((id) => ({ message_id: id, queue, body: '', first_receive_ms: 1750991540913, sent_ms: null }))
      .concat([{ message_id: 'm-q', queue: 'ünï-q', body: '', first_receive_ms: 1750991540913, sent_ms: null }]);
    const host = runHost(flags(settings), JSON.stringify({ Records: messages.map(lambdaRecord) }));
    assert.equal(host.status, 0, host.stderr);
    const expected = messages
      .map((m) => renderLine(m.message_id, callRoute(router, toSettings(settings), toMessage(m))) + '\n')
      .join('');
    assert.ok(expected.includes('é😀') && expected.includes('\\u0000'), expected);
    assert.equal(host.stdout, expected);
    assert.ok(host.bytes.equals(Buffer.from(expected, 'utf8')), 'host and jco differ in bytes');
  });

  test('audit-archiver route prints the same bytes', (t) => {
    const groups = new Map();
    for (const c of cases) {
      const key = JSON.stringify(c.settings);
      if (!groups.has(key)) groups.set(key, []);
      groups.get(key).push(c);
    }
    let compared = 0;
    let refused = 0;
    let translated = 0;
    for (const group of groups.values()) {
      const args = flags(group[0].settings);
      const s = cliSettings(group[0].settings);
      if (JSON.stringify(s) !== JSON.stringify(group[0].settings)) translated += group.length;
      let settingsError;
      try {
        router.validateSettings(toSettings(s));
      } catch (e) {
        settingsError = e.payload;
      }
      const input = JSON.stringify({ Records: group.map((c) => lambdaRecord(c.message)) });
      const host = runHost(args, input);
      if (settingsError) {
        // Refused at start-up: exit 2, nothing on stdout, the flag named.
        const flag = {
          'invalid-offset': '--utc-offset',
          'invalid-tenant-override': '--tenant-map',
        }[settingsError.tag] ?? '--key-template';
        assert.equal(host.status, 2, `${group[0].name}: host exit ${host.status} for settings the component refuses (${settingsError.tag}); flags ${JSON.stringify(args)}; stdout ${host.stdout}; stderr ${host.stderr}`);
        assert.equal(host.stdout, '', group[0].name);
        assert.ok(host.stderr.includes(flag), `${group[0].name}: ${flag} not named in: ${host.stderr}`);
        refused += group.length;
        continue;
      }
      assert.equal(host.status, 0, `${group[0].name}: host exit ${host.status}: ${host.stderr}`);
      const settings = toSettings(s);
      const expected = group
        .map((c) => renderLine(c.message.message_id, callRoute(router, settings, toMessage(c.message))) + '\n')
        .join('');
      // Line by line first, for a readable failure; then the whole output.
      const hostLines = host.stdout.split('\n');
      expected.split('\n').forEach((line, i) => assert.equal(hostLines[i], line, `${group[i]?.name ?? 'end'}: host and jco differ`));
      assert.equal(host.stdout, expected);
      assert.ok(host.bytes.equals(Buffer.from(expected, 'utf8')), `${group[0].name}: host and jco differ in bytes`);
      compared += group.length;
    }
    assert.equal(compared + refused, cases.length);
    t.diagnostic(
      `compared ${compared} vectors with audit-archiver route byte for byte ` +
        `(${translated} with a --tenant-map URL the command line reduces to its bare name); ` +
        `${refused} settings refused at start-up (exit 2)`,
    );
  });
});
