// The routing component composed into standard WASI worlds
// (scripts/build-adapters.sh), run by hosts we did not write:
// - the wasi:http/proxy component served by `jco serve` and `wasmtime serve`;
// - the wasi:cli/command component run by `wasmtime run` and `jco run`.
// Each routes the shared vectors, and its output must equal
// `audit-archiver route`'s, byte for byte. A missing tool or artifact fails
// the test (scripts/setup.sh links wasmtime into .tools/bin).

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';

import { componentWit } from '@bytecodealliance/jco';

import { here, hostBin, hostComponentArgs, jsonString, repo } from './common.mjs';

const httpWasm = resolve(process.env.ADAPTER_HTTP_WASM ?? join(repo, 'target/adapters/audit-archiver-http.wasm'));
const cliWasm = resolve(process.env.ADAPTER_CLI_WASM ?? join(repo, 'target/adapters/audit-archiver-route.wasm'));
const wasmtime = resolve(process.env.WASMTIME ?? join(repo, '.tools/bin/wasmtime'));
const jco = join(here, 'node_modules/.bin/jco');

for (const [what, path, fix] of [
  ['the composed HTTP component', httpWasm, 'scripts/build-adapters.sh'],
  ['the composed CLI component', cliWasm, 'scripts/build-adapters.sh'],
  ['wasmtime (the wasmtime CLI, 48)', wasmtime, 'scripts/setup.sh --component-hosts'],
  ['jco', jco, 'npm ci in tests/js (scripts/test-runtimes.sh does it)'],
]) {
  if (!existsSync(path)) throw new Error(`${what} is missing at ${path}: run ${fix}`);
}

// ---------------------------------------------------------------------------
// The vectors, grouped by settings, and what the host prints for each group.

const vectorDir = join(repo, 'tests', 'vectors');
const cases = readdirSync(vectorDir)
  .filter((f) => f.endsWith('.json'))
  .sort()
  .flatMap((file) => {
    const doc = JSON.parse(readFileSync(join(vectorDir, file), 'utf8'));
    assert.equal(doc.format, 1, `${file}: unknown vector format`);
    return doc.cases.map((c) => ({ ...c, name: `${file}: ${c.name}` }));
  });

/** Not in the vectors: ids and queues that exercise serde_json's escaping. */
const escapingGroup = (() => {
  const settings = { key_template: 'default', time_source: 'first-receive', utc_offset_minutes: 540, tenant_overrides: [] };
  const queue = 'arn:aws:sqs:ap-northeast-1:123456789012:acme-prismacloud-auditlog.fifo';
  const ids = ['é😀', 'a\u2028b', 'q"uo\'te', 'tab\there', 'nl\nx\r', 'del\u007f', 'nul\u0000', 'back\\slash', 'es\u001bc'];
  const messages = ids
    .map((id) => ({ message_id: id, queue, body: '', first_receive_ms: 1750991540913, sent_ms: null }))
    .concat([{ message_id: 'm-q', queue: 'ünï-q', body: '', first_receive_ms: 1750991540913, sent_ms: null }]);
  return { name: 'text that JSON escapes', settings, messages };
})();

function groupsOf(list) {
  const groups = new Map();
  for (const c of list) {
    const key = JSON.stringify(c.settings);
    if (!groups.has(key)) groups.set(key, { name: c.name, settings: c.settings, messages: [] });
    groups.get(key).messages.push(c.message);
  }
  return [...groups.values(), escapingGroup];
}

/** `audit-archiver route`'s flags for a vector's settings. */
function flags(s) {
  const sign = s.utc_offset_minutes < 0 ? '-' : '+';
  const abs = Math.abs(s.utc_offset_minutes);
  const offset = `${sign}${String(Math.floor(abs / 60)).padStart(2, '0')}:${String(abs % 60).padStart(2, '0')}`;
  const args = [`--key-template=${s.key_template}`, `--time-source=${s.time_source}`, `--utc-offset=${offset}`];
  for (const o of s.tenant_overrides) {
    assert.ok(!o.queue.includes(',') && !o.tenant.includes(','), 'no comma in a --tenant-map value');
    args.push(`--tenant-map=${o.queue}=${o.tenant}`);
  }
  return args;
}

/** One SQS record (Lambda's shape) per line: what the CLI reads. */
function ndjson(messages) {
  return messages
    .map((m) => {
      const attributes = {};
      if (m.first_receive_ms !== null) attributes.ApproximateFirstReceiveTimestamp = String(m.first_receive_ms);
      if (m.sent_ms !== null) attributes.SentTimestamp = String(m.sent_ms);
      return JSON.stringify({ messageId: m.message_id, body: m.body, eventSourceARN: m.queue, attributes }) + '\n';
    })
    .join('');
}

/**
 * The settings the host hands the component for a vector's settings given as
 * flags: `--tenant-map` takes a queue URL or ARN and passes its bare name
 * (host/src/config.rs), where the WIT contract refuses a URL. The HTTP
 * adapter gets these, so that it routes what the host routes.
 */
function hostSettings(s) {
  const bare = (queue) => {
    if (queue.startsWith('arn:')) return queue.slice(queue.lastIndexOf(':') + 1);
    const scheme = queue.indexOf('://');
    if (scheme < 0) return queue;
    return queue.slice(scheme + 3).split('?')[0].split('/').filter((p) => p !== '').pop() ?? '';
  };
  return { ...s, tenant_overrides: s.tenant_overrides.map((o) => ({ queue: bare(o.queue.trim()), tenant: o.tenant.trim() })) };
}

/** The environment without AUDIT_ARCHIVER_* settings: the flags only. */
const cleanEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('AUDIT_ARCHIVER_')));

function runHost(group) {
  const run = spawnSync(hostBin, ['route', '--event', '-', ...hostComponentArgs, ...flags(group.settings)], {
    input: ndjson(group.messages),
    env: cleanEnv,
  });
  // EPIPE: the host refused the settings and exited before reading stdin.
  if (run.error && run.error.code !== 'EPIPE') throw new Error(`cannot run ${hostBin} (cargo build --release): ${run.error.message}`);
  return { status: run.status, stdout: run.stdout, stderr: run.stderr.toString('utf8') };
}

const groups = groupsOf(cases);
/** Per group: the host's exit status and stdout bytes. */
const hostRuns = new Map();
function hostRun(group) {
  if (!hostRuns.has(group)) hostRuns.set(group, runHost(group));
  return hostRuns.get(group);
}

// ---------------------------------------------------------------------------
// What the composed components import and export (wasm-tools, inside jco).

async function worldOf(wasm) {
  const wit = await componentWit(readFileSync(wasm));
  const items = (kind) => [...wit.matchAll(new RegExp(`^\\s*${kind} ([^;{]+);`, 'gm'))].map((m) => m[1].trim());
  return { wit, imports: items('import'), exports: items('export') };
}

/** Every import the wasi:http/proxy world (WASI 0.2) allows. */
const PROXY_IMPORTS = new Set([
  'wasi:io/poll',
  'wasi:io/error',
  'wasi:io/streams',
  'wasi:clocks/monotonic-clock',
  'wasi:clocks/wall-clock',
  'wasi:random/random',
  'wasi:cli/stdout',
  'wasi:cli/stderr',
  'wasi:cli/stdin',
  'wasi:http/types',
  'wasi:http/outgoing-handler',
]);

const unversioned = (name) => name.replace(/@0\.2\.\d+$/, '');

describe('the composed components', () => {
  test(`${httpWasm} imports only what wasi:http/proxy allows and exports the incoming handler`, async () => {
    const { wit, imports, exports } = await worldOf(httpWasm);
    assert.ok(imports.length > 0, wit);
    for (const name of imports) {
      assert.match(name, /@0\.2\.\d+$/, `${name}: not a WASI 0.2 interface`);
      assert.ok(PROXY_IMPORTS.has(unversioned(name)), `${name} is outside wasi:http/proxy:\n${wit}`);
    }
    assert.deepEqual(exports.map(unversioned), ['wasi:http/incoming-handler']);
  });

  test(`${cliWasm} is a wasi:cli/command with the router plugged in`, async () => {
    const { wit, imports, exports } = await worldOf(cliWasm);
    for (const name of imports) {
      assert.match(name, /^wasi:(cli|io|clocks|filesystem|random|sockets)\/[a-z-]+@0\.2\.\d+$/, `${name}: not in wasi:cli/command:\n${wit}`);
    }
    assert.deepEqual(exports.map((e) => e.replace(/@0\.2\.\d+$/, '')), ['wasi:cli/run']);
  });
});

// ---------------------------------------------------------------------------
// HTTP: `jco serve` and `wasmtime serve`.

function freePort() {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolvePort(port));
    });
  });
}

/** Starts a server we did not write, and waits until it answers (404 for `/`). */
async function startServer(name, command, args, port) {
  // Its own process group: `jco serve` runs the server in a child process,
  // and stopping must end both.
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let log = '';
  child.stdout.on('data', (d) => (log += d));
  child.stderr.on('data', (d) => (log += d));
  const exited = new Promise((done) => child.on('exit', done));
  const killGroup = (signal) => {
    try {
      process.kill(-child.pid, signal);
    } catch (e) {
      if (e.code !== 'ESRCH') throw e;
    }
  };
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 120_000;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      killGroup('SIGKILL');
      throw new Error(`${name} exited (${child.exitCode ?? child.signalCode}): ${log}`);
    }
    try {
      const response = await fetch(`${url}/`);
      await response.arrayBuffer();
      assert.equal(response.status, 404, `${name}: GET / answered ${response.status}`);
      break;
    } catch (e) {
      if (e instanceof assert.AssertionError) throw e;
    }
    if (Date.now() > deadline) {
      killGroup('SIGKILL');
      throw new Error(`${name} did not answer on ${url} within 120 s: ${log}`);
    }
    await sleep(200);
  }
  return {
    url,
    log: () => log,
    stop: async () => {
      killGroup('SIGTERM');
      await exited;
      child.stdout.destroy();
      child.stderr.destroy();
    },
  };
}

async function post(server, body, path = '/route') {
  const response = await fetch(`${server.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: response.status, headers: response.headers, bytes: Buffer.from(await response.arrayBuffer()) };
}

const servers = [
  ['jco serve', async (port) => [jco, ['serve', '--host', '127.0.0.1', '--port', String(port), httpWasm]]],
  ['wasmtime serve', async (port) => [wasmtime, ['serve', '--addr', `127.0.0.1:${port}`, httpWasm]]],
];

for (const [name, command] of servers) {
  describe(`POST /route under ${name}`, () => {
    let server;
    before(async () => {
      const port = await freePort();
      const [bin, args] = await command(port);
      server = await startServer(name, bin, args, port);
    });
    after(async () => {
      await server?.stop();
    });

    test('a batch per settings answers audit-archiver route\'s bytes', async (t) => {
      let compared = 0;
      let refused = 0;
      for (const group of groups) {
        const host = hostRun(group);
        const response = await post(server, { settings: hostSettings(group.settings), messages: group.messages });
        if (host.status === 2) {
          // The host refuses these settings at start-up; the adapter, with 400.
          assert.equal(response.status, 400, `${group.name}: ${response.bytes}`);
          const refusal = JSON.parse(response.bytes);
          assert.equal(refusal.error, 'invalid-settings', `${group.name}: ${response.bytes}`);
          assert.ok(refusal.settings_error && refusal.detail, `${group.name}: ${response.bytes}`);
          refused += group.messages.length;
          continue;
        }
        assert.equal(host.status, 0, `${group.name}: host: ${host.stderr}`);
        assert.equal(response.status, 200, `${group.name}: ${response.bytes}`);
        assert.equal(response.headers.get('content-type'), 'application/x-ndjson');
        assert.equal(response.bytes.toString('utf8'), host.stdout.toString('utf8'), `${group.name}: ${name} and the host differ`);
        assert.ok(response.bytes.equals(host.stdout), `${group.name}: ${name} and the host differ in bytes`);
        compared += group.messages.length;
      }
      assert.equal(compared + refused, cases.length + escapingGroup.messages.length);
      t.diagnostic(`${compared} messages equal to audit-archiver route byte for byte; ${refused} refused as the host refuses them`);
    });

    test('one message per request meets every vector\'s expectation', async () => {
      for (const c of cases) {
        const response = await post(server, { settings: c.settings, message: c.message });
        if (c.expect.ok) {
          assert.equal(response.status, 200, `${c.name}: ${response.bytes}`);
          const line = `{"message_id":${jsonString(c.message.message_id)},"tenant":${jsonString(c.expect.ok.tenant)},"key":${jsonString(c.expect.ok.key)}}\n`;
          assert.equal(response.bytes.toString('utf8'), line, c.name);
        } else {
          assert.equal(response.status, 400, `${c.name}: ${response.bytes}`);
          const refusal = JSON.parse(response.bytes);
          // Settings are checked before the message: a bad template is
          // `invalid-settings` whatever the message.
          assert.equal(refusal.error, c.expect.error, `${c.name}: ${response.bytes}`);
          if (c.expect.settings_error) assert.equal(refusal.settings_error, c.expect.settings_error, c.name);
          else assert.equal(refusal.message_id, c.message.message_id, c.name);
          assert.ok(refusal.detail.length > 0, c.name);
        }
      }
    });

    test('bad requests: 400 with the case; wrong method 405; other paths 404', async () => {
      const message = cases.find((c) => c.expect.ok).message;
      const refused = async (body, error) => {
        const response = await post(server, body);
        assert.equal(response.status, 400, `${body}: ${response.bytes}`);
        assert.equal(JSON.parse(response.bytes).error, error, String(response.bytes));
      };
      await refused('not json', 'invalid-request');
      await refused({ settings: {}, message, messages: [message] }, 'invalid-request');
      await refused({ settings: {} }, 'invalid-request');
      await refused({ settings: { key_template: 'default', colour: 'red' }, message }, 'invalid-request');
      await refused({ settings: { time_source: 'yesterday' }, message }, 'invalid-request');
      await refused({ settings: { utc_offset_minutes: 900 }, message }, 'invalid-settings');

      // Settings may be left out: the defaults are audit-archiver route's.
      const defaults = await post(server, { message });
      assert.equal(defaults.status, 200, String(defaults.bytes));
      assert.equal(JSON.parse(defaults.bytes).key, `acme/2025/06/27/prismacloud-auditlog-acme-20250627-113220-${message.message_id}.json`);

      for (const method of ['GET', 'PUT', 'DELETE']) {
        const response = await fetch(`${server.url}/route`, { method });
        await response.arrayBuffer();
        assert.equal(response.status, 405, method);
        assert.equal(response.headers.get('allow'), 'POST');
      }
      const elsewhere = await post(server, { message }, '/routes');
      assert.equal(elsewhere.status, 404);
      assert.equal(JSON.parse(elsewhere.bytes).error, 'not-found');
    });
  });
}

// ---------------------------------------------------------------------------
// Unix filter: `wasmtime run` and `jco run`.

/** Runs a command with `input` on stdin: its status, stdout and stderr (bytes). */
function run(bin, args, input) {
  return new Promise((done, fail) => {
    const child = spawn(bin, args, { env: cleanEnv });
    const stdout = [];
    const stderr = [];
    child.stdout.on('data', (d) => stdout.push(d));
    child.stderr.on('data', (d) => stderr.push(d));
    child.on('error', (e) => fail(new Error(`cannot run ${bin}: ${e.message}`)));
    child.on('close', (status) => done({ status, stdout: Buffer.concat(stdout), stderr: Buffer.concat(stderr) }));
    // A command that refuses its flags exits before reading stdin (EPIPE).
    child.stdin.on('error', (e) => {
      if (e.code !== 'EPIPE') fail(e);
    });
    child.stdin.end(input);
  });
}

/** `work(item)` for every item, at most `width` at a time; results in order. */
async function inPool(items, width, work) {
  const results = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await work(items[i]);
    }
  };
  await Promise.all(Array.from({ length: width }, worker));
  return results;
}

/** The exit status of a failed wasi:cli/run under both hosts (WASI 0.2). */
const FAILED = 1;

const runners = [
  ['wasmtime run', (args) => [wasmtime, ['run', cliWasm, ...args]]],
  ['jco run', (args) => [jco, ['run', cliWasm, ...args]]],
];

for (const [name, command] of runners) {
  describe(`the CLI component under ${name}`, () => {
    test('every group of vectors prints audit-archiver route\'s bytes', async (t) => {
      // Two runs at a time: a `jco run` transpiles the component each time
      // (~1.7 s, one core), and CI has two.
      const runs = await inPool(groups, 2, (group) => {
        const [bin, args] = command(flags(group.settings));
        return run(bin, args, ndjson(group.messages));
      });
      let compared = 0;
      let refused = 0;
      groups.forEach((group, i) => {
        const host = hostRun(group);
        const out = runs[i];
        const stderr = out.stderr.toString('utf8');
        if (host.status === 2) {
          // Refused at start-up, naming the flag, as the host does. The host
          // exits 2; WASI 0.2's wasi:cli/exit carries only success or
          // failure, so a component host exits 1.
          assert.equal(out.status, FAILED, `${group.name}: ${name} exit ${out.status}: ${stderr}`);
          assert.equal(out.stdout.length, 0, group.name);
          const flag = host.stderr.match(/--(utc-offset|tenant-map|key-template)/)[0];
          assert.ok(stderr.includes(flag), `${group.name}: ${flag} not named in ${stderr}`);
          refused += group.messages.length;
          return;
        }
        assert.equal(out.status, 0, `${group.name}: ${name} exit ${out.status}: ${stderr}`);
        assert.equal(out.stdout.toString('utf8'), host.stdout.toString('utf8'), `${group.name}: ${name} and the host differ`);
        assert.ok(out.stdout.equals(host.stdout), `${group.name}: ${name} and the host differ in bytes`);
        compared += group.messages.length;
      });
      assert.equal(compared + refused, cases.length + escapingGroup.messages.length);
      t.diagnostic(`${compared} records equal to audit-archiver route byte for byte; ${refused} refused at start-up as the host refuses them`);
    });

    test('records the host refuses before routing, and bad flags', () => {
      const input =
        '{"messageId":"m-body","body":{"not":"a string"},"eventSourceARN":"acme-q","attributes":{"ApproximateFirstReceiveTimestamp":"1750991540913"}}\n' +
        '{"messageId":"m-time","body":"","eventSourceARN":"acme-q","attributes":{"ApproximateFirstReceiveTimestamp":"soon"}}\n' +
        '{"Records":[{"messageId":"m-ok","body":"","eventSourceARN":"acme-q","attributes":{"ApproximateFirstReceiveTimestamp":"1750991540913"}}]}\n';
      const args = ['--key-template', 'seed'];
      const host = spawnSync(hostBin, ['route', '--event', '-', ...hostComponentArgs, ...args], { input, env: cleanEnv });
      assert.equal(host.status, 0, String(host.stderr));
      const [bin, runArgs] = command(args);
      const run = spawnSync(bin, runArgs, { input, env: cleanEnv });
      assert.equal(run.status, 0, String(run.stderr));
      assert.equal(run.stdout.toString('utf8'), host.stdout.toString('utf8'));
      assert.equal(run.stdout.toString('utf8').split('\n').length, 4);

      for (const [bad, flag] of [
        [['--utc-offset', '+25:00'], '--utc-offset'],
        [['--time-source', 'yesterday'], '--time-source'],
        [['--tenant-map', 'no-equals-sign'], '--tenant-map'],
        [['--colour'], '--colour'],
      ]) {
        const [b, a] = command(bad);
        const refused = spawnSync(b, a, { input: '', env: cleanEnv });
        assert.equal(refused.status, FAILED, `${bad}: ${refused.stderr}`);
        assert.ok(String(refused.stderr).includes(flag), `${flag} not named in ${refused.stderr}`);
      }
    });
  });
}
