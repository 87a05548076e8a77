/**
 * Marks a notebook's cells: `%%step` cells get a coloured left border and a
 * badge (step name, inputs with their producers, outputs, problems);
 * ordinary cells that steps depend on get a dashed border and "used by …".
 *
 * The badge lives in the cell's header widget (`.jp-CellHeader`, empty and
 * zero-height by default): it belongs to the cell, so it survives the
 * notebook's windowing (cells detached and re-attached while scrolling)
 * without us touching the cell's layout.
 *
 * Nothing is shown unless jupyter_smstep is loaded in the kernel: a kernel
 * without it is an ordinary notebook, except for one line on each `%%step`
 * cell saying how to load it (IPython's own "magic not found" says nothing of
 * jupyter_smstep).
 */

import { Cell } from '@jupyterlab/cells';
import { Notebook, NotebookActions, NotebookPanel } from '@jupyterlab/notebook';
import { IDisposable } from '@lumino/disposable';
import { PanelLayout, Widget } from '@lumino/widgets';

import { KernelBridge } from './bridge';
import {
  ICellSummary,
  IPipelineState,
  IProblem,
  findCellSummary,
  parseStepName,
  producerLabel,
  stepLine
} from './summary';

const STEP_CLASS = 'jp-smstep-step';
const DEPENDENCY_CLASS = 'jp-smstep-dependency';
const PROBLEM_CLASS = 'jp-smstep-has-problem';
const HINTED_CLASS = 'jp-smstep-hinted'; // a %%step cell showing the hint: its header opens for it
const BADGE_CLASS = 'jp-smstep-badge';
const HEADER_CLASS = 'jp-CellHeader';
const HINT_CLASS = 'jp-smstep-hint';
export const NOT_LOADED_HINT =
  'jupyter_smstep is not loaded in this kernel: run %load_ext jupyter_smstep in a cell above, then this cell again';

export class CellDecorator implements IDisposable {
  constructor(panel: NotebookPanel, bridge: KernelBridge) {
    this._panel = panel;
    this._bridge = bridge;
    bridge.changed.connect(this._schedule, this);
    const notebook = panel.content;
    notebook.modelContentChanged.connect(this._schedule, this);
    notebook.model?.cells.changed.connect(this._schedule, this);
    notebook.modelChanged.connect(this._schedule, this);
    NotebookActions.executionScheduled.connect(this._onScheduled, this);
    void panel.context.ready.then(() => this._schedule());
  }

  get isDisposed(): boolean {
    return this._isDisposed;
  }

  dispose(): void {
    if (this._isDisposed) {
      return;
    }
    this._isDisposed = true;
    if (this._frame) {
      cancelAnimationFrame(this._frame);
    }
    this._bridge.changed.disconnect(this._schedule, this);
    NotebookActions.executionScheduled.disconnect(this._onScheduled, this);
    const notebook = this._panel.content;
    if (!notebook.isDisposed) {
      notebook.modelContentChanged.disconnect(this._schedule, this);
      notebook.modelChanged.disconnect(this._schedule, this);
      notebook.model?.cells.changed.disconnect(this._schedule, this);
      notebook.widgets.forEach(cell => clear(cell));
    }
  }

  /**
   * Remember each step cell's `%%step` line as it is sent to the kernel: the
   * kernel's record of a cell is out of date once that line is edited.
   */
  private _onScheduled(
    _: unknown,
    args: { notebook: Notebook; cell: Cell }
  ): void {
    if (args.notebook !== this._panel.content) {
      return;
    }
    const model = args.cell.model;
    this._ranLines.set(model.id, stepLine(model.sharedModel.getSource()) || '');
  }

  /** Render on the next frame: typing fires many content changes. */
  private _schedule(): void {
    if (this._isDisposed || this._frame) {
      return;
    }
    this._frame = requestAnimationFrame(() => {
      this._frame = 0;
      this.render();
    });
  }

  /** Bring every cell's marks up to date (cheap: a regex on each first line). */
  render(): void {
    if (this._isDisposed) {
      return;
    }
    const notebook: Notebook = this._panel.content;
    const state = this._bridge.state;
    const notLoaded = state === null && this._bridge.status === 'not-loaded';
    notebook.widgets.forEach(cell => {
      if (notLoaded) {
        hint(cell, this._schedule.bind(this));
      } else if (state === null) {
        clear(cell);
      } else {
        decorate(cell, state, this._ranLines, this._schedule.bind(this));
      }
    });
  }

  private _panel: NotebookPanel;
  private _bridge: KernelBridge;
  private _ranLines = new Map<string, string>();
  private _frame = 0;
  private _isDisposed = false;
}

function header(cell: Cell): Widget | null {
  const layout = cell.layout as PanelLayout | null;
  if (!layout || !layout.widgets) {
    return null;
  }
  return layout.widgets.find(w => w.hasClass(HEADER_CLASS)) || null;
}

/** The cell's header, or null after asking for ``retry`` once the cell is rendered (notebook windowing). */
function renderedHeader(cell: Cell, retry: () => void): Widget | null {
  const head = header(cell);
  if (!head) {
    void cell.ready.then(retry);
  }
  return head;
}

function clear(cell: Cell): void {
  if (cell.isDisposed) {
    return;
  }
  cell.removeClass(STEP_CLASS);
  cell.removeClass(DEPENDENCY_CLASS);
  cell.removeClass(PROBLEM_CLASS);
  cell.removeClass(HINTED_CLASS);
  const head = header(cell);
  head?.node.querySelector(`.${BADGE_CLASS}`)?.remove();
  head?.node.querySelector(`.${HINT_CLASS}`)?.remove();
}

/** A `%%step` cell in a kernel without jupyter_smstep: one line saying how to load it; other cells: nothing. */
function hint(cell: Cell, retry: () => void): void {
  if (cell.isDisposed) {
    return;
  }
  const isStep =
    cell.model.type === 'code' &&
    stepLine(cell.model.sharedModel.getSource()) !== null;
  if (!isStep) {
    clear(cell);
    return;
  }
  const head = renderedHeader(cell, retry);
  if (!head) {
    return;
  }
  head.node.querySelector(`.${BADGE_CLASS}`)?.remove();
  cell.addClass(HINTED_CLASS);
  if (!head.node.querySelector(`.${HINT_CLASS}`)) {
    head.node.appendChild(el('div', HINT_CLASS, NOT_LOADED_HINT));
  }
}

function decorate(
  cell: Cell,
  state: IPipelineState,
  ranLines: Map<string, string>,
  retry: () => void
): void {
  if (cell.isDisposed) {
    return;
  }
  const source = cell.model.sharedModel.getSource();
  const line = cell.model.type === 'code' ? stepLine(source) : null;
  const isStep = line !== null;
  const name = isStep ? parseStepName(source) : null;
  const summary = findCellSummary(state, cell.model.id, name);
  const isDependency =
    !isStep &&
    cell.model.type === 'code' &&
    summary !== null &&
    summary.role === 'dependency';

  if (!isStep && !isDependency) {
    clear(cell);
    return;
  }
  const head = renderedHeader(cell, retry);
  if (!head) {
    return;
  }
  const stepSummary = summary && summary.role === 'step' ? summary : null;
  const stale =
    stepSummary !== null &&
    isStale(line || '', name, stepSummary, ranLines.get(cell.model.id));
  const badge = isStep
    ? stepBadge(name, stepSummary, stale, state)
    : dependencyBadge(summary as ICellSummary);
  const problems =
    isStep && stepSummary && !stale
      ? problemsOf(state, stepSummary.step || null)
      : [];
  cell.toggleClass(STEP_CLASS, isStep);
  cell.toggleClass(DEPENDENCY_CLASS, isDependency);
  cell.toggleClass(
    PROBLEM_CLASS,
    problems.some(p => p.severity !== 'warning')
  );
  head.node.querySelector(`.${HINT_CLASS}`)?.remove(); // loaded since: the badge replaces the hint
  cell.removeClass(HINTED_CLASS);
  const old = head.node.querySelector(`.${BADGE_CLASS}`);
  // keep an expanded problem list expanded across re-renders
  if (old?.querySelector('details[open]')) {
    badge.querySelector('details')?.setAttribute('open', '');
  }
  if (old && old.isEqualNode(badge)) {
    return; // unchanged: leave the DOM alone
  }
  if (old) {
    old.replaceWith(badge);
  } else {
    head.node.appendChild(badge);
  }
}

function el(
  tag: string,
  className: string,
  text?: string,
  title?: string
): HTMLElement {
  const node = document.createElement(tag);
  node.className = className;
  if (text !== undefined) {
    node.textContent = text;
  }
  if (title) {
    node.title = title;
  }
  return node;
}

function problemsOf(state: IPipelineState, step: string | null): IProblem[] {
  return step ? state.problems.filter(p => p.step === step) : [];
}

/**
 * Whether the kernel's record of a step cell predates an edit of its `%%step`
 * line. We compare with the line as it was when the cell last ran from this
 * page; for a cell run before the page was opened, only an unambiguous name
 * change counts (an option's value can look like a name: `--instance-type X`).
 */
function isStale(
  line: string,
  typedName: string | null,
  summary: ICellSummary,
  ranLine: string | undefined
): boolean {
  if (ranLine !== undefined) {
    return ranLine !== line;
  }
  const hasOptions = /\s-/.test(line);
  return (
    !hasOptions && !!typedName && !!summary.step && typedName !== summary.step
  );
}

function stepBadge(
  typedName: string | null,
  summary: ICellSummary | null,
  stale: boolean,
  state: IPipelineState
): HTMLElement {
  const badge = el('div', `${BADGE_CLASS} jp-smstep-badge-step`);
  const name = (!stale && summary?.step) || typedName || '\u2026';
  badge.dataset.step = name;
  badge.appendChild(el('span', 'jp-smstep-kind', 'step'));
  badge.appendChild(
    el('span', 'jp-smstep-name', name, 'SageMaker pipeline step')
  );

  if (!summary) {
    badge.appendChild(
      el(
        'span',
        'jp-smstep-pending',
        'run the cell to see its inputs and outputs'
      )
    );
    return badge;
  }
  if (stale) {
    badge.appendChild(
      el('span', 'jp-smstep-pending', 'edited: run the cell to update')
    );
    return badge;
  }

  if (summary.when) {
    badge.appendChild(
      el(
        'span',
        'jp-smstep-when',
        `when ${summary.when}`,
        'the step runs only when this condition holds (--when)'
      )
    );
  }
  const after = summary.after || [];
  if (after.length) {
    badge.appendChild(
      el(
        'span',
        'jp-smstep-after',
        `after ${after.join(', ')}`,
        'runs after these steps although no data passes between them (--after)'
      )
    );
  }
  const inputs = Object.entries(summary.inputs || {});
  if (inputs.length) {
    const list = el('span', 'jp-smstep-inputs');
    for (const [input, source] of inputs) {
      const producer = producerLabel(input, source || {});
      const item = el(
        'span',
        'jp-smstep-input',
        `${input} \u2190 ${producer}`,
        explainInput(input, source || {})
      );
      item.dataset.input = input;
      item.dataset.producer = producer;
      list.appendChild(item);
    }
    badge.appendChild(list);
  }
  const outputs = summary.outputs || [];
  if (outputs.length) {
    badge.appendChild(
      el(
        'span',
        'jp-smstep-outputs',
        `\u2192 ${outputs.join(', ')}`,
        'values this step returns to later steps'
      )
    );
  }
  const problems = problemsOf(state, summary.step || null);
  if (problems.length) {
    badge.appendChild(problemList(problems));
  }
  return badge;
}

function problemText(problem: IProblem): string {
  const where = problem.line ? `line ${problem.line}: ` : '';
  return `${where}${problem.message}`;
}

/** One problem inline; several folded into "N problems" (click to expand). */
function problemList(problems: IProblem[]): HTMLElement {
  const severity = problems.some(p => p.severity !== 'warning')
    ? 'error'
    : 'warning';
  const item = (problem: IProblem, tag: string) =>
    el(
      tag,
      `jp-smstep-problem jp-smstep-problem-${problem.severity === 'warning' ? 'warning' : 'error'}`,
      problemText(problem) + (problem.fix ? ` \u2014 fix: ${problem.fix}` : ''),
      problem.fix ? `fix: ${problem.fix}` : undefined
    );
  if (problems.length === 1) {
    const single = item(problems[0], 'div');
    single.classList.add('jp-smstep-problems');
    return single;
  }
  const details = el(
    'details',
    `jp-smstep-problems jp-smstep-problem-${severity}`
  );
  const summary = el(
    'summary',
    'jp-smstep-problems-summary',
    `${problems.length} ${severity === 'error' ? 'problems' : 'warnings'}`,
    problems.map(problemText).join('\n')
  );
  details.appendChild(summary);
  for (const problem of problems) {
    details.appendChild(item(problem, 'div'));
  }
  return details;
}

function explainInput(
  name: string,
  source: { [key: string]: unknown }
): string {
  if (typeof source.step === 'string') {
    return `${name} is returned by step ${source.step}`;
  }
  if (typeof source.parameter === 'string') {
    return `${name} is the pipeline parameter ${source.parameter}`;
  }
  if ('value' in source) {
    return `${name} is captured by value from the kernel`;
  }
  return name;
}

function dependencyBadge(summary: ICellSummary): HTMLElement {
  const badge = el('div', `${BADGE_CLASS} jp-smstep-badge-dependency`);
  const usedBy = summary.used_by || [];
  const provides = summary.provides || [];
  badge.appendChild(
    el(
      'span',
      'jp-smstep-used-by',
      usedBy.length ? `used by ${usedBy.join(', ')}` : 'used by the pipeline',
      provides.length
        ? `the steps capture ${provides.join(', ')} from this cell`
        : undefined
    )
  );
  if (provides.length) {
    badge.appendChild(
      el('span', 'jp-smstep-provides', `provides ${provides.join(', ')}`)
    );
  }
  return badge;
}
