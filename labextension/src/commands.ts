/**
 * The pipeline commands: each runs one `%pipeline` line magic in the
 * notebook's own kernel and shows what it prints (text, errors, and the
 * ipywidgets panel) in a view beside the notebook.
 *
 * The view is an OutputArea rendered with the notebook's own rendermime,
 * which has the ipywidgets renderer of the notebook's widget manager (as
 * "Create New View for Output" does): widgets created by `%pipeline show`
 * are live, talking to the same kernel.
 */

import { JupyterFrontEnd } from '@jupyterlab/application';
import { MainAreaWidget, showDialog, Dialog } from '@jupyterlab/apputils';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { OutputArea, OutputAreaModel } from '@jupyterlab/outputarea';
import { Panel, Widget } from '@lumino/widgets';

import { KernelBridge } from './bridge';
import { NOT_LOADED_MESSAGE } from './summary';

export const CATEGORY = 'SageMaker pipeline';

export interface IPipelineCommand {
  id: string;
  label: string;
  caption: string;
  /** The output view's tab: `<title> · <notebook>`. */
  title: string;
  /** The line magic to run for a notebook. */
  code: (panel: NotebookPanel) => string;
}

/** `abalone.ipynb` -> `abalone_pipeline.py` (written next to the notebook by the kernel). */
export function exportFileName(notebookPath: string): string {
  const base = notebookPath.split('/').pop() || 'notebook.ipynb';
  const stem = base.replace(/\.ipynb$/i, '') || 'notebook';
  return `${stem}_pipeline.py`;
}

export const COMMANDS: IPipelineCommand[] = [
  {
    id: 'jupyter-smstep:preview',
    label: 'Preview pipeline',
    caption: 'Show the pipeline built from the %%step cells (%pipeline show)',
    title: 'Preview',
    code: () => '%pipeline show'
  },
  {
    id: 'jupyter-smstep:run-locally',
    label: 'Run locally',
    caption: 'Run the pipeline on this machine (%pipeline run)',
    title: 'Local run',
    code: () => '%pipeline run'
  },
  {
    id: 'jupyter-smstep:submit',
    label: 'Submit',
    caption: 'Submit the pipeline to SageMaker and start it (%pipeline submit)',
    title: 'Submit',
    code: () => '%pipeline submit'
  },
  {
    id: 'jupyter-smstep:export',
    label: 'Export as Python script',
    caption:
      'Write the pipeline as a Python script next to the notebook (%pipeline export)',
    title: 'Export',
    code: panel => `%pipeline export ${exportFileName(panel.context.path)}`
  }
];

/** What `commands.execute(...)` resolves to: handy for tests and other extensions. */
export interface ICommandResult {
  ok: boolean;
  status: 'ok' | 'error' | 'not-loaded' | 'no-notebook' | 'no-kernel';
  message?: string;
}

const CONNECT_TIMEOUT_MS = 60000;

/**
 * The output view of one command for one notebook: reused while open, so
 * running "Preview pipeline" twice refreshes the same tab.
 */
class OutputView extends MainAreaWidget<Panel> {
  constructor(panel: NotebookPanel, command: IPipelineCommand) {
    const content = new Panel();
    super({ content });
    this.addClass('jp-smstep-OutputView');
    this.id = `jupyter-smstep-${command.id.split(':')[1]}-${panel.id}`;
    const stem = panel.title.label.replace(/\.ipynb$/i, '');
    this.title.label = `${command.title} \u00b7 ${stem}`;
    this.title.caption = `${command.label} \u2014 ${panel.context.path}`;
    this.title.closable = true;
    this.header = new Widget();
    this.header.addClass('jp-smstep-OutputView-header');
    this.area = new OutputArea({
      model: new OutputAreaModel({ trusted: true }),
      rendermime: panel.content.rendermime
    });
    this.area.addClass('jp-smstep-OutputView-output');
    content.addWidget(this.header);
    content.addWidget(this.area);
  }

  setHeader(code: string, status: string): void {
    this.header.node.textContent = '';
    const codeNode = document.createElement('code');
    codeNode.textContent = code;
    const statusNode = document.createElement('span');
    statusNode.className = 'jp-smstep-OutputView-status';
    statusNode.textContent = status;
    this.header.node.append(codeNode, statusNode);
    this.header.node.dataset.status = status;
  }

  readonly header: Widget;
  readonly area: OutputArea;
}

export function registerCommands(
  app: JupyterFrontEnd,
  tracker: INotebookTracker,
  bridges: WeakMap<NotebookPanel, KernelBridge>
): void {
  const views = new Map<string, OutputView>();

  const findPanel = (args: {
    [key: string]: unknown;
  }): NotebookPanel | null => {
    const id = typeof args.notebookId === 'string' ? args.notebookId : null;
    if (id) {
      return tracker.find(p => p.id === id) || null;
    }
    return tracker.currentWidget;
  };

  for (const command of COMMANDS) {
    app.commands.addCommand(command.id, {
      label: command.label,
      caption: command.caption,
      isEnabled: () => tracker.currentWidget !== null,
      execute: async args => {
        const panel = findPanel(args);
        if (!panel) {
          return report('no-notebook', 'Open a notebook first.');
        }
        await panel.sessionContext.ready;
        const kernel = panel.sessionContext.session?.kernel;
        const bridge = bridges.get(panel);
        if (!kernel || !bridge) {
          return report(
            'no-kernel',
            'This notebook has no kernel: start one, then run %load_ext jupyter_smstep.'
          );
        }
        const connected = await withTimeout(
          bridge.connect(),
          CONNECT_TIMEOUT_MS
        );
        if (connected === null) {
          return report(
            'no-kernel',
            'The kernel did not answer within a minute (is it busy?): try again when it is idle.'
          );
        }
        if (!connected) {
          return report('not-loaded', NOT_LOADED_MESSAGE);
        }

        const key = `${command.id}|${panel.id}`;
        let view = views.get(key);
        if (!view || view.isDisposed) {
          // The first view opens beside the notebook; the others join it as tabs.
          const sibling = [...views.entries()]
            .reverse()
            .find(
              ([k, v]) =>
                k.endsWith(`|${panel.id}`) && !v.isDisposed && v.isAttached
            );
          view = new OutputView(panel, command);
          views.set(key, view);
          if (sibling) {
            app.shell.add(view, 'main', {
              mode: 'tab-after',
              ref: sibling[1].id
            });
          } else {
            app.shell.add(view, 'main', { mode: 'split-right', ref: panel.id });
          }
          const created = view;
          panel.disposed.connect(() => created.dispose());
          created.disposed.connect(() => {
            if (views.get(key) === created) {
              views.delete(key);
            }
          });
        }
        app.shell.activateById(view.id);
        const code = command.code(panel);
        view.setHeader(code, 'running…');
        view.area.model.clear();
        try {
          const reply = await executeQuietly(code, view.area, panel);
          const ok = !reply || reply.content.status === 'ok';
          view.setHeader(code, ok ? 'done' : 'failed');
          return ok
            ? { ok: true, status: 'ok' }
            : {
                ok: false,
                status: 'error',
                message: 'the magic raised an error'
              };
        } catch (error) {
          view.setHeader(code, 'failed');
          return report('error', `Could not run ${code}: ${error}`);
        }
      }
    });
  }
}

/**
 * `OutputArea.execute` with `store_history: false`: the commands must not
 * bump the notebook's execution counter or land in `In`/`Out`.
 */
async function executeQuietly(
  code: string,
  area: OutputArea,
  panel: NotebookPanel
) {
  const kernel = panel.sessionContext.session?.kernel;
  if (!kernel) {
    throw new Error('the notebook has no kernel');
  }
  const future = kernel.requestExecute(
    { code, stop_on_error: true, store_history: false },
    false
  );
  area.future = future;
  return future.done;
}

async function report(
  status: ICommandResult['status'],
  message: string
): Promise<ICommandResult> {
  void showDialog({
    title: CATEGORY,
    body: message,
    buttons: [Dialog.okButton()]
  });
  return { ok: false, status, message };
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T | null> {
  return new Promise<T | null>(resolve => {
    const timer = setTimeout(() => resolve(null), ms);
    void promise.then(value => {
      clearTimeout(timer);
      resolve(value);
    });
  });
}
