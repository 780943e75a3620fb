/**
 * Incremental log tails (pure, unit tested).
 *
 * The API answers `GET jobs/{id}/logs?stream=&offset=N` with
 * `{stream, offset, next_offset, data, complete}`; offsets count bytes of the
 * remote file. The panel keeps one `ILogBuffer` per stream and asks again from
 * `nextOffset`. Answers can arrive late or twice (a slow poll overtaken by a
 * newer one); `mergeLogChunk` makes that harmless.
 */

import type { components } from './api-types';

/** What merging needs of the API's `LogChunk`. */
export type ILogChunk = Pick<
  components['schemas']['LogChunk'],
  'offset' | 'next_offset' | 'data' | 'complete'
>;

export interface ILogBuffer {
  /** The text shown, possibly cut at the front (see `truncated`). */
  text: string;
  /** Byte offset to ask from next. */
  nextOffset: number;
  /** The server said the log will not grow any more. */
  complete: boolean;
  /** Earlier output was dropped to keep the buffer under its limit. */
  truncated: boolean;
}

/** Keep at most this many characters of a log in the page. */
export const DEFAULT_MAX_CHARS = 1_000_000;

export function emptyLog(): ILogBuffer {
  return { text: '', nextOffset: 0, complete: false, truncated: false };
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Drop the first `bytes` bytes of a string's UTF-8 form. */
export function dropLeadingBytes(data: string, bytes: number): string {
  if (bytes <= 0) {
    return data;
  }
  const encoded = encoder.encode(data);
  if (bytes >= encoded.length) {
    return '';
  }
  return decoder.decode(encoded.subarray(bytes));
}

/** The notice put into the text where bytes were never received. */
export function gapNotice(bytes: number): string {
  return `\n[… ${bytes} bytes not shown …]\n`;
}

/**
 * Merge one answer into a buffer and return the new buffer (the input is not
 * changed; the same object is returned when nothing changed).
 *
 * - chunk starts at `nextOffset`: append.
 * - chunk ends at or before `nextOffset` (stale or repeated answer): ignore,
 *   but keep a `complete` flag for the same end.
 * - chunk overlaps the end: append only the new bytes.
 * - chunk starts after `nextOffset` (the server skipped bytes, e.g. a
 *   rotated or huge log): append a notice and the data.
 */
export function mergeLogChunk(
  buffer: ILogBuffer,
  chunk: ILogChunk,
  maxChars: number = DEFAULT_MAX_CHARS
): ILogBuffer {
  const start = Number(chunk.offset) || 0;
  const end = Number(chunk.next_offset);
  const data = chunk.data ?? '';
  if (!Number.isFinite(end) || end < start) {
    return buffer;
  }
  if (end <= buffer.nextOffset) {
    if (end === buffer.nextOffset && chunk.complete && !buffer.complete) {
      return { ...buffer, complete: true };
    }
    return buffer;
  }
  let added: string;
  if (start === buffer.nextOffset) {
    added = data;
  } else if (start < buffer.nextOffset) {
    added = dropLeadingBytes(data, buffer.nextOffset - start);
  } else {
    added = gapNotice(start - buffer.nextOffset) + data;
  }
  let text = buffer.text + added;
  let truncated = buffer.truncated;
  if (text.length > maxChars) {
    text = text.slice(text.length - maxChars);
    truncated = true;
  }
  return { text, nextOffset: end, complete: !!chunk.complete, truncated };
}

/**
 * Whether a log still needs polling: while the job runs, and after it ended
 * until the server says the log is complete (bounded by `graceMs` after the
 * job finished, so a log that never completes does not poll for ever).
 */
export function shouldPollLog(
  jobFinal: boolean,
  buffer: ILogBuffer,
  finishedAgoMs: number | null,
  graceMs = 60_000
): boolean {
  if (!jobFinal) {
    return true;
  }
  if (buffer.complete) {
    return false;
  }
  return finishedAgoMs === null || finishedAgoMs < graceMs;
}

/** What an event stream `log` message needs: where its text starts, and the text. */
export interface ILogPiece {
  offset: number;
  /** null: the text was too large for the stream (fetch it). */
  text: string | null;
  /** The piece's length in bytes of the log, when the stream says it. */
  size?: number;
}

/**
 * Take a streamed piece of log into a buffer: `[buffer, fetch]`. Text that
 * starts at (or before) the buffer's end is merged as an API answer would be
 * (its byte length: `size`, else its UTF-8 length — unknown when the text has
 * a replaced character, then it is fetched);
 * a piece without text, or one after a gap (a piece missed while the stream
 * was reconnecting), leaves the buffer as it is and asks for a fetch from
 * `nextOffset` instead.
 */
export function applyLogPiece(
  buffer: ILogBuffer,
  piece: ILogPiece,
  maxChars: number = DEFAULT_MAX_CHARS
): [ILogBuffer, boolean] {
  const offset = Number(piece.offset);
  if (!Number.isFinite(offset) || offset < 0) {
    return [buffer, false];
  }
  if (piece.text === null || piece.text === undefined || offset > buffer.nextOffset) {
    return [buffer, true];
  }
  let size = Number(piece.size);
  if (!Number.isFinite(size) || size < 0) {
    if (piece.text.includes('\uFFFD')) {
      // a character cut at the piece's edge was replaced: its byte length is unknown
      return [buffer, true];
    }
    size = encoder.encode(piece.text).length;
  }
  const end = offset + size;
  const merged = mergeLogChunk(
    buffer,
    { offset, next_offset: end, data: piece.text, complete: false },
    maxChars
  );
  return [merged, false];
}
