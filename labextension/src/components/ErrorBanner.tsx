import * as React from 'react';

import { describeError } from '../errors';
import { PanelModel } from '../model';

interface ILine {
  kind: string;
  text: string;
}

/** Lines of the banner: the failed job poll, then HPCs that are down or draining. */
export function bannerLines(model: PanelModel): ILine[] {
  const lines: ILine[] = [];
  const error = model.error;
  if (error) {
    const kind =
      error.status === 401
        ? 'auth'
        : error.status >= 502
          ? 'middleware'
          : error.status === 0
            ? 'network'
            : 'error';
    lines.push({ kind, text: describeError(error) });
  } else {
    for (const hpc of model.hpcs) {
      if (hpc.reachable === false) {
        lines.push({
          kind: 'hpc',
          text: `HPC ${hpc.name || hpc.id} unreachable${hpc.message ? `: ${hpc.message}` : ''} — jobs there wait until it is back`
        });
      } else if (hpc.draining) {
        lines.push({
          kind: 'hpc-draining',
          text: `HPC ${hpc.name || hpc.id} is draining${hpc.message ? `: ${hpc.message}` : ''} — new jobs there wait`
        });
      }
    }
  }
  return lines;
}

export function ErrorBanner(props: { model: PanelModel }): JSX.Element | null {
  const lines = bannerLines(props.model);
  if (lines.length === 0) {
    return null;
  }
  const severe = lines.some(l => l.kind !== 'hpc-draining');
  return (
    <div
      className={`hpcbridge-banner ${severe ? 'hpcbridge-banner-error' : 'hpcbridge-banner-warn'}`}
      data-testid="hpcbridge-error-banner"
      role="alert"
    >
      {lines.map((line, i) => (
        <div key={`${line.kind}-${i}`} className="hpcbridge-banner-line" data-kind={line.kind}>
          {line.text}
        </div>
      ))}
    </div>
  );
}

/** The notice that live updates fell back to polling; null while the stream works. */
export function streamNotice(model: PanelModel): string | null {
  if (!model.pollingFallback) {
    return null;
  }
  return `live updates unavailable — refreshing every ${Math.round(model.pollInterval / 1000)} s`;
}

export function StreamNotice(props: { model: PanelModel }): JSX.Element | null {
  const text = streamNotice(props.model);
  if (!text) {
    return null;
  }
  return (
    <div className="hpcbridge-stream-notice" data-testid="hpcbridge-stream-notice" role="status">
      {text}
    </div>
  );
}
