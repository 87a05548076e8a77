/**
 * jupyter-smstep: `%%step` cells you can see, and the pipeline one click away.
 *
 * For each notebook: a KernelBridge (comm to jupyter_smstep in the kernel),
 * a CellDecorator (badges on step cells and their dependencies) and a
 * "Pipeline" toolbar button; globally: the command-palette commands.
 * Everything is created lazily per notebook and does no work for a kernel
 * that does not have jupyter_smstep loaded.
 */

import {
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette, ToolbarButton } from '@jupyterlab/apputils';
import { DocumentRegistry } from '@jupyterlab/docregistry';
import {
  INotebookModel,
  INotebookTracker,
  NotebookActions,
  NotebookPanel
} from '@jupyterlab/notebook';
import { DisposableDelegate, IDisposable } from '@lumino/disposable';
import { Menu } from '@lumino/widgets';

import { KernelBridge } from './bridge';
import { CATEGORY, COMMANDS, registerCommands } from './commands';
import { CellDecorator } from './decorations';
import { INotebookCells, notebookCells } from './summary';

/** Cells after which a kernel may have gained (or changed) jupyter_smstep. */
const RELEVANT_CELL = /jupyter_smstep|^\s*%%step|%pipeline/m;

class PipelineToolbarExtension implements DocumentRegistry.IWidgetExtension<
  NotebookPanel,
  INotebookModel
> {
  constructor(
    private app: JupyterFrontEnd,
    private bridges: WeakMap<NotebookPanel, KernelBridge>
  ) {}

  createNew(panel: NotebookPanel): IDisposable {
    const cells = (): INotebookCells =>
      notebookCells(
        panel.content.widgets.map(cell => ({
          id: cell.model.id,
          tags: cell.model.getMetadata('tags')
        }))
      );
    const bridge = new KernelBridge(panel.sessionContext, cells);
    this.bridges.set(panel, bridge);
    // Deleting, moving or (un)tagging cells changes the pipeline: let the kernel know (debounced).
    let syncTimer: number | undefined;
    const scheduleSync = (): void => {
      window.clearTimeout(syncTimer);
      syncTimer = window.setTimeout(() => bridge.syncCells(), 300);
    };
    const watchTags = (): void => {
      // a tag is cell metadata: each cell's changes are watched (connecting twice is a no-op)
      for (const cell of panel.content.widgets) {
        cell.model.metadataChanged.connect(scheduleSync);
      }
    };
    watchTags();
    panel.content.model?.cells.changed.connect(() => {
      watchTags();
      scheduleSync();
    });
    panel.disposed.connect(() => window.clearTimeout(syncTimer));
    const decorator = new CellDecorator(panel, bridge);

    const menu = new Menu({ commands: this.app.commands });
    menu.addClass('jp-smstep-menu');
    menu.title.label = 'Pipeline';
    for (const command of COMMANDS) {
      menu.addItem({ command: command.id, args: { notebookId: panel.id } });
    }
    const button = new ToolbarButton({
      className: 'jp-smstep-toolbar-button',
      label: 'Pipeline',
      tooltip: 'SageMaker pipeline: preview, run locally, submit, export',
      onClick: () => {
        const rect = button.node.getBoundingClientRect();
        menu.open(rect.left, rect.bottom);
      }
    });
    panel.toolbar.insertItem(10, 'smstepPipeline', button);

    return new DisposableDelegate(() => {
      button.dispose();
      menu.dispose();
      decorator.dispose();
      bridge.dispose();
      this.bridges.delete(panel);
    });
  }
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'jupyter-smstep:plugin',
  description:
    'Marks %%step cells with their SageMaker pipeline step and adds the pipeline commands.',
  autoStart: true,
  requires: [INotebookTracker],
  optional: [ICommandPalette],
  activate: (
    app: JupyterFrontEnd,
    tracker: INotebookTracker,
    palette: ICommandPalette | null
  ) => {
    const bridges = new WeakMap<NotebookPanel, KernelBridge>();
    app.docRegistry.addWidgetExtension(
      'Notebook',
      new PipelineToolbarExtension(app, bridges)
    );
    registerCommands(app, tracker, bridges);
    if (palette) {
      COMMANDS.forEach((command, rank) =>
        palette.addItem({ command: command.id, category: CATEGORY, rank })
      );
    }
    NotebookActions.executed.connect((_, { notebook, cell }) => {
      const panel = tracker.find(p => p.content === notebook);
      const bridge = panel ? bridges.get(panel) : undefined;
      if (!bridge || bridge.status === 'connected') {
        return; // a connected kernel pushes its state itself
      }
      if (RELEVANT_CELL.test(cell.model.sharedModel.getSource())) {
        bridge.refresh();
      }
    });
  }
};

export default plugin;
