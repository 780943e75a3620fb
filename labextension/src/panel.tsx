import * as React from 'react';

import { ReactWidget, UseSignal } from '@jupyterlab/ui-components';
import { Message } from '@lumino/messaging';

import { App, IPanelHost } from './components/App';
import { hpcIcon } from './icons';
import { PanelModel } from './model';

export const PANEL_ID = 'hpcbridge-panel';

/** The "HPC Jobs" sidebar: a React view of a `PanelModel`; polls only while shown. */
export class HpcJobsPanel extends ReactWidget {
  constructor(
    readonly model: PanelModel,
    private readonly host: IPanelHost
  ) {
    super();
    this.id = PANEL_ID;
    this.addClass('hpcbridge-panel');
    this.title.icon = hpcIcon;
    this.title.caption = 'HPC Jobs';
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this.model.dispose();
    super.dispose();
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    this.model.setVisible(true);
  }

  protected onAfterHide(msg: Message): void {
    super.onAfterHide(msg);
    this.model.setVisible(false);
  }

  protected onAfterAttach(msg: Message): void {
    super.onAfterAttach(msg);
    if (this.isVisible) {
      this.model.setVisible(true);
    }
  }

  protected onBeforeDetach(msg: Message): void {
    this.model.setVisible(false);
    super.onBeforeDetach(msg);
  }

  render(): JSX.Element {
    return (
      <UseSignal signal={this.model.changed}>
        {() => <App model={this.model} host={this.host} />}
      </UseSignal>
    );
  }
}
