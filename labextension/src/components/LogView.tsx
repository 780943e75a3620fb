import * as React from 'react';

import { HpcBridgeApi, LogStream } from '../api';
import { describeError } from '../errors';
import { emptyLog, ILogBuffer, mergeLogChunk, shouldPollLog } from '../logs';
import { toApiError } from '../model';
import { usePolling } from './hooks';

const STREAMS: LogStream[] = ['stdout', 'stderr'];

/**
 * Live tail of a job's stdout/stderr: asks for the active stream from its
 * `next_offset` every 2 s while the job runs (and until the log is complete
 * after it ended), and keeps the view scrolled to the end unless the user
 * scrolled up.
 */
export function LogView(props: {
  api: HpcBridgeApi;
  jobId: string;
  final: boolean;
  /** When (Date.now()) the panel first saw the job final; null while it runs. */
  finalSince: number | null;
  visible: boolean;
  interval?: number;
}): JSX.Element {
  const { api, jobId } = props;
  const [tab, setTab] = React.useState<LogStream>('stdout');
  const [logs, setLogs] = React.useState<{ [s in LogStream]: ILogBuffer }>({
    stdout: emptyLog(),
    stderr: emptyLog()
  });
  const [error, setError] = React.useState<string | null>(null);
  const logsRef = React.useRef(logs);
  logsRef.current = logs;
  const preRef = React.useRef<HTMLPreElement>(null);
  const stick = React.useRef(true);

  usePolling(
    async () => {
      const buffer = logsRef.current[tab];
      const since = props.finalSince === null ? null : Date.now() - props.finalSince;
      if (!shouldPollLog(props.final, buffer, since)) {
        return false;
      }
      try {
        const answer = await api.logs(jobId, tab, buffer.nextOffset);
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
    },
    props.interval ?? 2000,
    props.visible,
    `${jobId} ${tab} ${props.final}`
  );

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
