import * as React from 'react';

import { statusClass, statusLabel } from '../status';

export function StatusBadge(props: { status: string; testid?: string }): JSX.Element {
  return (
    <span
      className={`hpcbridge-status ${statusClass(props.status)}`}
      data-status={props.status}
      data-testid={props.testid}
      title={statusLabel(props.status)}
    >
      {props.status}
    </span>
  );
}
