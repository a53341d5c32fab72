// Packages the extension as dist/marginalia-<version>.vsix with @vscode/vsce (npm run package).
// The repository's LICENSE is copied in first (vsce wants one beside package.json).
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = join(dirname(fileURLToPath(import.meta.url)), '..');
const { version } = JSON.parse(readFileSync(join(here, 'package.json'), 'utf8'));
copyFileSync(join(here, '..', '..', 'LICENSE'), join(here, 'LICENSE'));
mkdirSync(join(here, 'dist'), { recursive: true });
const out = join(here, 'dist', `marginalia-${version}.vsix`);
const vsce = join(here, 'node_modules', '@vscode', 'vsce', 'vsce');
execFileSync(process.execPath, [vsce, 'package', '--allow-missing-repository', '--out', out], {
  cwd: here,
  stdio: 'inherit',
});
if (!existsSync(out) || statSync(out).size === 0) {
  console.error(`vsce did not write ${out}`);
  process.exit(1);
}
console.log(`packaged ${out} (${Math.round(statSync(out).size / 1024)} KiB)`);
