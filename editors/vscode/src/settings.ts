// The extension's settings, what the server is started with, and where its binary is. Pure:
// the caller passes in the configuration reader, the environment and a file check.

import * as path from 'node:path';

export interface Settings {
  /** The `marginalia` binary: empty means "find it on PATH". */
  path: string;
  /** Sent to the server: diagnostics for codemarks (Information / Hint). */
  diagnostics: boolean;
  /** MARGINALIA_LOG for the server (its log goes to the output channel). */
  logLevel: string;
  /** MARGINALIA_DATA_DIR for the server: empty means the platform's data directory. */
  dataDir: string;
}

export const LOG_LEVELS = ['error', 'warn', 'info', 'debug', 'trace'];

/** Reads `marginalia.*` through `get` (VS Code's `WorkspaceConfiguration.get`), with defaults. */
export function readSettings(get: (key: string) => unknown): Settings {
  const text = (key: string): string => {
    const v = get(key);
    return typeof v === 'string' ? v.trim() : '';
  };
  const level = text('logLevel').toLowerCase();
  return {
    path: text('path'),
    diagnostics: get('diagnostics') === true,
    logLevel: LOG_LEVELS.includes(level) ? level : 'warn',
    dataDir: text('dataDirectory'),
  };
}

/** `initializationOptions`: what the server reads at start (and from didChangeConfiguration). */
export function initializationOptions(s: Settings): { diagnostics: boolean } {
  return { diagnostics: s.diagnostics };
}

/** The server's environment: the editor's, plus the settings that are environment variables. */
export function serverEnv(s: Settings, base: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...base, MARGINALIA_LOG: s.logLevel };
  if (s.dataDir !== '') {
    env.MARGINALIA_DATA_DIR = s.dataDir;
  }
  return env;
}

export type Binary = { ok: true; path: string } | { ok: false; message: string };

/**
 * Where `marginalia` is: the `marginalia.path` setting (a path, `~/` allowed, or a bare name to
 * look up on PATH), else `marginalia` on PATH (with PATHEXT's extensions on Windows).
 */
export function resolveBinary(
  setting: string,
  env: NodeJS.ProcessEnv,
  platform: NodeJS.Platform,
  isFile: (p: string) => boolean,
): Binary {
  const p = platform === 'win32' ? path.win32 : path.posix;
  let wanted = setting.trim();
  const home = env.HOME ?? env.USERPROFILE ?? '';
  if (wanted.startsWith('~/') && home !== '') {
    wanted = p.join(home, wanted.slice(2));
  }
  if (wanted !== '' && (wanted.includes('/') || wanted.includes('\\'))) {
    if (isFile(wanted)) {
      return { ok: true, path: wanted };
    }
    return {
      ok: false,
      message: `marginalia.path is ${setting}, but there is no file there. Install marginalia (cargo install --path . in its repository) or correct the setting.`,
    };
  }
  const name = wanted === '' ? 'marginalia' : wanted;
  const pathVar = env.PATH ?? env.Path ?? '';
  const dirs = pathVar.split(platform === 'win32' ? ';' : ':').filter((d) => d !== '');
  const exts =
    platform === 'win32' && p.extname(name) === ''
      ? (env.PATHEXT ?? '.EXE;.CMD;.BAT').split(';').filter((e) => e !== '')
      : [''];
  for (const dir of dirs) {
    for (const ext of exts) {
      const candidate = p.join(dir, name + ext.toLowerCase());
      if (isFile(candidate)) {
        return { ok: true, path: candidate };
      }
      if (ext !== '' && isFile(p.join(dir, name + ext))) {
        return { ok: true, path: p.join(dir, name + ext) };
      }
    }
  }
  return {
    ok: false,
    message: `\`${name}\` is not on PATH. Install marginalia (cargo install --path . in its repository, which puts it in ~/.cargo/bin) or set marginalia.path to the binary.`,
  };
}
