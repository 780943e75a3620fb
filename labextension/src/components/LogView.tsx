import * as React from 'react';

import { ISignal } from '@lumino/signaling';

import { HpcBridgeApi, LogStream } from '../api';
import { describeError } from '../errors';
import { applyLogPiece, emptyLog, ILogBuffer, mergeLogChunk, shouldPollLog } from '../logs';
import { toApiError } from '../model';
import { ILogMessage } from '../stream';
import { usePolling } from './hooks';

const STREAMS: LogStream[] = ['stdout', 'stderr'];

/**
 * Live tail of a job's stdout/stderr, kept scrolled to the end unless the user
 * scrolled up. While the panel's event stream is `live`, the log is fetched
 * once (on opening, on switching tabs, when the job ends) and then grows from
 * the stream's `log` messages; a message that cannot be appended (no text, or
 * a gap) fetches the missing range once. Without the stream it asks for the
 * active stream from its `next_offset` every 2 s while the job runs (and until
 * the log is complete after it ended).
 */
export function LogView(props: {
  api: HpcBridgeApi;
  jobId: string;
  final: boolean;
  /** When (Date.now()) the panel first saw the job final; null while it runs. */
  finalSince: number | null;
  visible: boolean;
  /** The panel's event stream is connected. */
  live?: boolean;
  /** The stream's log messages (of every job). */
  logReceived?: ISignal<unknown, ILogMessage>;
  interval?: number;
}): JSX.Element {
  const { api, jobId } = props;
  const live = !!props.live && !!props.logReceived;
  const [tab, setTab] = React.useState<LogStream>('stdout');
  const [logs, setLogs] = React.useState<{ [s in LogStream]: ILogBuffer }>({
    stdout: emptyLog(),
    stderr: emptyLog()
  });
  const [error, setError] = React.useState<string | null>(null);
  const logsRef = React.useRef(logs);
  logsRef.current = logs;
  const tabRef = React.useRef(tab);
  tabRef.current = tab;
  const preRef = React.useRef<HTMLPreElement>(null);
  const stick = React.useRef(true);

  /** Fetch the active stream from its end once; false when nothing is left to fetch. */
  const fetchTail = async (): Promise<boolean> => {
    const buffer = logsRef.current[tab];
    const since = props.finalSince === null ? null : Date.now() - props.finalSince;
    if (!shouldPollLog(props.final, buffer, since)) {
      return false;
    }
    try {
      const answer = await api.logs(jobId, tab, buffer.nextOffset);
      // the ref too, so that a fetch right after this one starts from the new end
      const latest = mergeLogChunk(logsRef.current[tab], answer);
      if (latest !== logsRef.current[tab]) {
        logsRef.current = { ...logsRef.current, [tab]: latest };
      }
      setLogs(prev => {
        const merged = mergeLogChunk(prev[tab], answer);
        return merged === prev[tab] ? prev : { ...prev, [tab]: merged };
      });
      setError(null);
    } catch (e) {
      const err = toApiError(e);
      // 404 before the job has written anything is normal: say nothing
      setError(err.status === 404 ? null : describeError(err));
    }
    return true;
  };
  const fetchRef = React.useRef(fetchTail);
  fetchRef.current = fetchTail;

  // One fetch at a time; a wish to fetch while one runs fetches once more after it.
  const fetching = React.useRef<{ running: boolean; again: boolean }>({
    running: false,
    again: false
  });
  const fetchOnce = React.useCallback(() => {
    const state = fetching.current;
    if (state.running) {
      state.again = true;
      return;
    }
    state.running = true;
    const run = async () => {
      do {
        state.again = false;
        await fetchRef.current();
      } while (state.again);
      state.running = false;
    };
    void run();
  }, []);

  // without the stream: poll
  usePolling(
    fetchTail,
    props.interval ?? 2000,
    props.visible && !live,
    `${jobId} ${tab} ${props.final}`
  );

  // with it: fetch once (opened, tab switched, job ended, stream back, panel shown) …
  React.useEffect(() => {
    if (live && props.visible) {
      fetchOnce();
    }
  }, [live, props.visible, jobId, tab, props.final, fetchOnce]);

  // … then take the stream's pieces
  React.useEffect(() => {
    const signal = props.logReceived;
    if (!live || !signal) {
      return;
    }
    const onLog = (_: unknown, message: ILogMessage) => {
      if (
        message.job_id !== jobId ||
        (message.stream !== 'stdout' && message.stream !== 'stderr')
      ) {
        return;
      }
      const s = message.stream;
      // decided on the latest buffer seen (a stale one only fetches once more) …
      const [, fetch] = applyLogPiece(logsRef.current[s], message);
      // … and merged into the state's own (merging twice is harmless)
      setLogs(prev => {
        const [buffer] = applyLogPiece(prev[s], message);
        return buffer === prev[s] ? prev : { ...prev, [s]: buffer };
      });
      // the other tab fetches what it misses when it is opened
      if (fetch && message.stream === tabRef.current) {
        fetchOnce();
      }
    };
    signal.connect(onLog);
    return () => {
      signal.disconnect(onLog);
    };
  }, [live, props.logReceived, jobId, fetchOnce]);

  const text = logs[tab].text;
  React.useLayoutEffect(() => {
    const pre = preRef.current;
    if (pre && stick.current) {
      pre.scrollTop = pre.scrollHeight;
    }
  }, [text, tab]);

  const onScroll = () => {
    const pre = preRef.current;
    if (pre) {
      stick.current = pre.scrollHeight - pre.scrollTop - pre.clientHeight < 24;
    }
  };

  return (
    <div className="hpcbridge-logs">
      <div className="hpcbridge-tabs" role="tablist">
        {STREAMS.map(s => (
          <button
            key={s}
            type="button"
            role="tab"
            aria-selected={tab === s}
            className={`hpcbridge-tab${tab === s ? ' hpcbridge-tab-active' : ''}`}
            data-testid={`hpcbridge-log-tab-${s}`}
            onClick={() => {
              stick.current = true;
              setTab(s);
            }}
          >
            {s}
          </button>
        ))}
        <span className="hpcbridge-log-state">
          {logs[tab].complete ? 'complete' : props.final ? '' : 'live'}
        </span>
      </div>
      {logs[tab].truncated && (
        <div className="hpcbridge-muted">Earlier output is not shown (the log is long).</div>
      )}
      <pre
        ref={preRef}
        className="hpcbridge-log"
        data-testid={`hpcbridge-log-${tab}`}
        data-next-offset={logs[tab].nextOffset}
        data-complete={logs[tab].complete}
        onScroll={onScroll}
      >
        {text}
      </pre>
      {text === '' && (
        <div className="hpcbridge-muted hpcbridge-log-empty">
          {logs[tab].complete || props.final ? `No ${tab} output.` : `No ${tab} output yet.`}
        </div>
      )}
      {error && <div className="hpcbridge-inline-error">{error}</div>}
    </div>
  );
}
