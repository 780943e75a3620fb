/**
 * hpcbridge JupyterLab extension: the "HPC Jobs" sidebar, its commands
 * (palette, launcher, file browser context menu) and the job notifications.
 */
import { ILayoutRestorer, JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ICommandPalette, Notification } from '@jupyterlab/apputils';
import { IDocumentManager } from '@jupyterlab/docmanager';
import { FileDialog, IDefaultFileBrowser } from '@jupyterlab/filebrowser';
import { ILauncher } from '@jupyterlab/launcher';

import { HpcBridgeApi, IJob } from './api';
import { IPanelHost } from './components/App';
import { hpcIcon } from './icons';
import { PanelModel } from './model';
import { HpcJobsPanel, PANEL_ID } from './panel';
import { shortId } from './status';

export const CommandIDs = {
  open: 'hpcbridge:open',
  newJob: 'hpcbridge:new-job',
  submitFolder: 'hpcbridge:submit-folder'
} as const;

const PALETTE_CATEGORY = 'HPC';

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'hpcbridge:plugin',
  description: 'Run HPC (Slurm) jobs from JupyterLab: job list, submit form, logs, results.',
  autoStart: true,
  optional: [ICommandPalette, ILauncher, IDefaultFileBrowser, IDocumentManager, ILayoutRestorer],
  activate: (
    app: JupyterFrontEnd,
    palette: ICommandPalette | null,
    launcher: ILauncher | null,
    browser: IDefaultFileBrowser | null,
    docManager: IDocumentManager | null,
    restorer: ILayoutRestorer | null
  ) => {
    const api = new HpcBridgeApi();
    const showJob = (jobId: string) => {
      app.shell.activateById(PANEL_ID);
      model.navigate({ kind: 'detail', jobId });
    };
    const model: PanelModel = new PanelModel({
      api,
      onJobFinished: (job: IJob) => notifyFinished(job, model, showJob)
    });

    const host: IPanelHost = {
      openInFileBrowser: async (path: string) => {
        if (app.commands.hasCommand('filebrowser:go-to-path')) {
          await app.commands.execute('filebrowser:go-to-path', { path });
        } else if (browser) {
          await browser.model.cd('/' + path);
        }
      },
      pickPath: docManager
        ? async () => {
            const result = await FileDialog.getExistingDirectory({
              manager: docManager,
              title: 'Choose the input folder'
            });
            if (result.button.accept && result.value && result.value.length > 0) {
              return result.value[0].path;
            }
            return null;
          }
        : undefined
    };

    const panel = new HpcJobsPanel(model, host);
    app.shell.add(panel, 'left', { rank: 1000 });
    restorer?.add(panel, PANEL_ID);

    app.commands.addCommand(CommandIDs.open, {
      label: 'HPC Jobs',
      caption: 'Show the HPC job list',
      icon: args => (args['isPalette'] ? undefined : hpcIcon),
      execute: args => {
        app.shell.activateById(PANEL_ID);
        const jobId = args['jobId'];
        if (typeof jobId === 'string' && jobId) {
          model.navigate({ kind: 'detail', jobId });
        }
      }
    });

    app.commands.addCommand(CommandIDs.newJob, {
      label: 'New HPC Job…',
      caption: 'Open the HPC job submit form',
      icon: args => (args['isPalette'] ? undefined : hpcIcon),
      execute: args => {
        app.shell.activateById(PANEL_ID);
        const upload = typeof args['path'] === 'string' ? (args['path'] as string) : undefined;
        model.openSubmit({ upload });
      }
    });

    app.commands.addCommand(CommandIDs.submitFolder, {
      label: 'Submit to HPC…',
      caption: 'Open the HPC job form with this folder as input data',
      icon: hpcIcon,
      execute: args => {
        let path = typeof args['path'] === 'string' ? (args['path'] as string) : null;
        if (path === null && browser) {
          const first = browser.selectedItems().next();
          path = first.done ? browser.model.path : first.value.path;
        }
        app.shell.activateById(PANEL_ID);
        model.openSubmit({ upload: path ?? undefined });
      }
    });

    app.contextMenu.addItem({
      command: CommandIDs.submitFolder,
      selector: '.jp-DirListing-item[data-isdir="true"]',
      rank: 20
    });

    if (palette) {
      palette.addItem({ command: CommandIDs.open, category: PALETTE_CATEGORY });
      palette.addItem({ command: CommandIDs.newJob, category: PALETTE_CATEGORY });
    }
    if (launcher) {
      launcher.add({ command: CommandIDs.open, category: 'Other', rank: 50 });
    }
  }
};

function notifyFinished(job: IJob, model: PanelModel, showJob: (id: string) => void): void {
  const what = `HPC job ${shortId(job.id)} (${model.appName(job.app)} on ${model.hpcName(job.hpc)})`;
  const message = `${what} ${job.status}${job.message ? `: ${job.message}` : ''}`;
  const options = {
    autoClose: job.status === 'failed' ? (false as const) : 8000,
    actions: [{ label: 'Show', callback: () => showJob(job.id) }]
  };
  if (job.status === 'succeeded') {
    Notification.success(message, options);
  } else if (job.status === 'failed') {
    Notification.error(message, options);
  } else {
    Notification.warning(message, options);
  }
}

export default plugin;
