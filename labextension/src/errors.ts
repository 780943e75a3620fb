/**
 * Failed requests: the `ApiError` every call of `api.ts` throws, and what to
 * tell the user about it (pure, unit tested).
 */
import type { IFieldError } from './validate';

export interface IErrorLike {
  /** HTTP status; 0 when the Jupyter server itself could not be reached. */
  status: number;
  /** The API's error code (`{"error": "<code>"}`), if the answer was JSON. */
  code?: string | null;
  message?: string | null;
}

function isFieldError(d: unknown): d is IFieldError {
  const e = d as Partial<IFieldError> | null;
  return !!e && Array.isArray(e.loc) && typeof e.msg === 'string';
}

/** A failed request: HTTP status (0 = no answer), the API's error code, its message and field details. */
export class ApiError extends Error implements IErrorLike {
  constructor(
    readonly status: number,
    readonly code: string | null,
    message: string,
    readonly details: IFieldError[] | null = null
  ) {
    super(message);
    this.name = 'ApiError';
  }

  /** Build from a non-OK response, reading the JSON error body if there is one. */
  static async fromResponse(response: Response): Promise<ApiError> {
    let code: string | null = null;
    let message = response.statusText || `HTTP ${response.status}`;
    let details: IFieldError[] | null = null;
    try {
      const text = await response.text();
      if (text) {
        try {
          const body = JSON.parse(text);
          if (body && typeof body === 'object') {
            code = typeof body.error === 'string' ? body.error : null;
            if (typeof body.message === 'string' && body.message) {
              message = body.message;
            } else if (typeof body.reason === 'string' && body.reason) {
              // jupyter_server's own JSON errors
              message = body.reason;
            }
            if (Array.isArray(body.details)) {
              details = body.details.filter(isFieldError);
            }
          }
        } catch {
          // not JSON (e.g. tornado's HTML error page): keep the status text
        }
      }
    } catch {
      // body unreadable
    }
    return new ApiError(response.status, code, message, details);
  }
}

export const MIDDLEWARE_UNREACHABLE = 'hpcbridge middleware unreachable';
export const NOT_LOGGED_IN = 'Not logged in to hpcbridge';

/** One line for the panel's error banner. */
export function describeError(error: IErrorLike): string {
  const detail = error.message ? `: ${error.message}` : '';
  switch (error.status) {
    case 0:
      return `Jupyter server unreachable${detail}`;
    case 401:
      return `${NOT_LOGGED_IN} (HTTP 401) — log in to JupyterHub again${detail}`;
    case 403:
      return `Not allowed${detail}`;
    case 502:
    case 503:
    case 504:
      if (error.message && error.message.toLowerCase().startsWith(MIDDLEWARE_UNREACHABLE)) {
        // the server extension already says it: do not say it twice
        return `${error.message} (HTTP ${error.status})`;
      }
      return `${MIDDLEWARE_UNREACHABLE} (HTTP ${error.status})${detail}`;
    case 404:
      if (!error.code) {
        return 'hpcbridge server extension not found (HTTP 404) — is hpcbridge.jupyter_ext enabled in this Jupyter server?';
      }
      return `Not found${detail}`;
    default:
      return `Request failed (HTTP ${error.status})${detail}`;
  }
}

/** Errors that make the whole panel useless (as opposed to one failed action). */
export function isBlockingError(error: IErrorLike): boolean {
  return (
    error.status === 0 ||
    error.status === 401 ||
    error.status >= 502 ||
    (error.status === 404 && !error.code)
  );
}

/**
 * Text for a failed action (submit, cancel, download): the server's own
 * message for request errors it explains (400/404/409/413/422), the banner
 * text for the rest.
 */
export function actionMessage(error: IErrorLike): string {
  if (
    [400, 409, 413, 422].includes(error.status) ||
    (error.status === 404 && !!error.code) ||
    (error.status === 403 && !!error.message)
  ) {
    return error.message || `Request failed (HTTP ${error.status})`;
  }
  return describeError(error);
}
