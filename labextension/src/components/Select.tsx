import * as React from 'react';

import { HTMLSelect } from '@jupyterlab/ui-components';

/**
 * JupyterLab's themed <select> (with its caret). Every prop, data-testid
 * included, goes to the <select> element itself; `className` styles the wrapper.
 */
export function Select(
  props: React.SelectHTMLAttributes<HTMLSelectElement> & { [data: `data-${string}`]: unknown }
): JSX.Element {
  const { className, children, ...rest } = props;
  return (
    <HTMLSelect className={`hpcbridge-select${className ? ` ${className}` : ''}`} {...rest}>
      {children}
    </HTMLSelect>
  );
}
