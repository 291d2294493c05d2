// The Node.js snippet of docs/embedding.md, run as written next to a jco
// transpilation of the component, must print the documented output.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

import { repo, transpileRouter } from './common.mjs';

const guide = readFileSync(join(repo, 'docs', 'embedding.md'), 'utf8');

function block(marker, lang) {
  const re = new RegExp(`<!-- ${marker} -->\\n\`\`\`${lang}\\n([\\s\\S]*?)\\n\`\`\``, 'g');
  const found = [...guide.matchAll(re)];
  assert.equal(found.length, 1, `expected one \`<!-- ${marker} -->\` ${lang} block in docs/embedding.md`);
  return found[0][1] + '\n';
}

test('the guide’s Node.js snippet runs as documented', async () => {
  // `npx jco transpile … --name router -o router`, as the guide says.
  const { outDir } = await transpileRouter('guide/router');
  const dir = join(outDir, '..');
  writeFileSync(join(dir, 'snippet.mjs'), block('snippet: node', 'js'));
  const run = spawnSync(process.execPath, ['snippet.mjs'], { cwd: dir, encoding: 'utf8' });
  assert.equal(run.status, 0, run.stderr);
  assert.equal(run.stdout, block('output: node, python', 'text'));
});
