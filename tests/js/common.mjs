// Shared by the Node.js tests: where the component and the host are, jco
// transpilation, and rendering results exactly as `audit-archiver route` does.

import { transpile } from '@bytecodealliance/jco';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const here = dirname(fileURLToPath(import.meta.url));
export const repo = resolve(here, '..', '..');

/**
 * The component under test: env ROUTER_WASM (relative to the current
 * directory), else the release build, which is also what the host embeds.
 */
export const wasmPath = process.env.ROUTER_WASM
  ? resolve(process.env.ROUTER_WASM)
  : resolve(here, '../../target/component/wasm32-wasip2/release/audit_archiver_transform.wasm');

/**
 * The host's flags that make it run that same component: none by default
 * (host/build.rs embeds the release build), `--component` for ROUTER_WASM.
 */
export const hostComponentArgs = process.env.ROUTER_WASM ? ['--component', wasmPath] : [];

/** The host binary: env AUDIT_ARCHIVER_BIN (relative to the current directory), else the release build. */
export const hostBin = process.env.AUDIT_ARCHIVER_BIN
  ? resolve(process.env.AUDIT_ARCHIVER_BIN)
  : resolve(here, '../../target/release/audit-archiver');

/**
 * Transpiles the component with jco into `.transpiled/<name>/router.js` (a
 * fresh directory per caller: test files run in parallel) and imports it.
 */
export async function transpileRouter(name) {
  const outDir = join(here, '.transpiled', name);
  await rm(outDir, { recursive: true, force: true });
  const bytes = await readFile(wasmPath);
  const { files, imports, exports } = await transpile(bytes, {
    name: 'router',
    outDir,
    quiet: true,
    noTypescript: true,
  });
  if (imports.length !== 0) {
    throw new Error(`the component must import nothing, jco reports imports ${JSON.stringify(imports)}`);
  }
  if (!exports.some(([n]) => n === 'audit-archiver:routing/router@1.1.0')) {
    throw new Error(`no audit-archiver:routing/router@1.1.0 export in ${JSON.stringify(exports)}`);
  }
  for (const [file, contents] of Object.entries(files)) {
    await mkdir(dirname(file), { recursive: true });
    await writeFile(file, contents);
  }
  const module = await import(pathToFileURL(join(outDir, 'router.js')).href);
  return { outDir, router: module.router };
}

/**
 * A JSON string exactly as serde_json writes it: `"` and `\` escaped,
 * control characters U+0000..U+001F as \b \t \n \f \r or \u00xx (lowercase
 * hex), everything else (`/`, DEL, non-ASCII, U+2028) as is.
 */
export function jsonString(s) {
  const short = { 0x08: '\\b', 0x09: '\\t', 0x0a: '\\n', 0x0c: '\\f', 0x0d: '\\r', 0x22: '\\"', 0x5c: '\\\\' };
  let out = '"';
  for (const ch of s) {
    const c = ch.codePointAt(0);
    if (short[c] !== undefined) out += short[c];
    else if (c < 0x20) out += '\\u' + c.toString(16).padStart(4, '0');
    else out += ch;
  }
  return out + '"';
}

/** The text of a WIT error value: `case: detail` (nested for invalid-settings). */
export function errorText(error) {
  return typeof error.val === 'string' ? `${error.tag}: ${error.val}` : `${error.tag}: ${errorText(error.val)}`;
}

/** One output line of `audit-archiver route`, from a WIT result. */
export function renderLine(messageId, result) {
  if (result.tag === 'ok') {
    return `{"message_id":${jsonString(messageId)},"tenant":${jsonString(result.val.tenant)},"key":${jsonString(result.val.key)}}`;
  }
  return `{"message_id":${jsonString(messageId)},"error":${jsonString(errorText(result.val))}}`;
}
