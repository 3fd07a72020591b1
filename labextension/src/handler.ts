import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import { Page } from './models';

/** Where the server extension mounts its routes, under the server's base URL. */
export const API_PATH = 'opx/api';

/**
 * A failed call to /opx/api: the HTTP status plus the server's JSON
 * `{code, message, …}` body (see jupyter_opx/server/handlers.py).
 * `status` is 0 when the server could not be reached at all.
 */
export class OpxRequestError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly fields: Record<string, unknown> = {}
  ) {
    super(message);
    this.name = 'OpxRequestError';
  }
}

let settings: ServerConnection.ISettings | null = null;

/** The server connection settings (made once, shared by every request). */
export function serverSettings(): ServerConnection.ISettings {
  if (!settings) {
    settings = ServerConnection.makeSettings();
  }
  return settings;
}

/** The absolute URL of an API path such as `runs/3/output`. */
export function apiUrl(endPoint: string): string {
  return URLExt.join(serverSettings().baseUrl, API_PATH, endPoint);
}

/**
 * Call `/opx/api/{endPoint}` and return its JSON body.
 *
 * Authentication (token or cookie, plus the XSRF header) comes from
 * JupyterLab's ServerConnection.
 *
 * @throws OpxRequestError for a network failure or any non-2xx answer.
 */
export async function requestAPI<T>(
  endPoint = '',
  init: RequestInit = {}
): Promise<T> {
  const s = serverSettings();
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(apiUrl(endPoint), init, s);
  } catch (error) {
    throw new OpxRequestError(
      0,
      'network',
      `cannot reach the Jupyter server: ${String(error)}`
    );
  }
  const text = await response.text();
  let body: any = null;
  if (text.length > 0) {
    try {
      body = JSON.parse(text);
    } catch {
      body = null;
    }
  }
  if (!response.ok) {
    const fields = body && typeof body === 'object' ? body : {};
    const code =
      typeof fields.code === 'string' ? fields.code : `http_${response.status}`;
    const message =
      typeof fields.message === 'string'
        ? fields.message
        : `${response.status} ${response.statusText}`.trim();
    throw new OpxRequestError(response.status, code, message, fields);
  }
  return body as T;
}

/** POST a JSON body. */
export function postAPI<T>(endPoint: string, body: unknown = {}): Promise<T> {
  return requestAPI<T>(endPoint, {
    method: 'POST',
    body: JSON.stringify(body),
    headers: { 'Content-Type': 'application/json' }
  });
}

/** The items of a list answer (a page `{items, …}`, or a bare array). */
export function itemsOf<T>(page: Page<T> | T[] | null | undefined): T[] {
  if (!page) {
    return [];
  }
  return Array.isArray(page) ? page : (page.items ?? []);
}

/** A query string from the defined values of `params` (`?a=1&b=x`). */
export function query(params: Record<string, unknown>): string {
  const parts = Object.entries(params)
    .filter(([, v]) => v !== undefined && v !== null && v !== '')
    .map(
      ([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(String(v))}`
    );
  return parts.length ? `?${parts.join('&')}` : '';
}

/** A path segment made safe (`churn/3` → `churn%2F3`). */
export function seg(value: string | number): string {
  return encodeURIComponent(String(value));
}
