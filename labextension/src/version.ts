/**
 * This extension's version; it must equal labextension/package.json's and
 * jupyter_opx/_version.py's (tests/test_labextension.py checks it).
 */
export const EXTENSION_VERSION = '0.1.0';

/** Same major.minor: the REST contract changes only with those. */
export function compatible(
  server: string,
  client = EXTENSION_VERSION
): boolean {
  const mm = (v: string) => v.split('.').slice(0, 2).join('.');
  return mm(server) === mm(client);
}
