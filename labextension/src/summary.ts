/**
 * What the kernel tells us about the pipeline, and the little parsing we do
 * ourselves so that a step's name shows while it is being typed.
 *
 * There is deliberately no second analyser here: inputs, producers and
 * outputs come only from the kernel. The payload is defined once, in
 * jupyter_smstep/ipython/comm.py (PipelineState and its cells); the interfaces
 * below declare the same fields.
 */

/** Where an input's value comes from, as the kernel resolved it. */
export interface IInputSource {
  step?: string;
  parameter?: string;
  value?: string;
  [key: string]: unknown;
}

export interface ICellSummary {
  cell_id: string | null;
  role: 'step' | 'dependency' | string;
  step?: string;
  inputs?: { [name: string]: IInputSource };
  outputs?: string[];
  when?: string | null;
  after?: string[];
  provides?: string[];
  used_by?: string[];
}

export interface IProblem {
  step?: string | null;
  line?: number | null;
  severity?: 'error' | 'warning' | string;
  message: string;
  fix?: string;
}

export interface IPipelineState {
  type: 'state';
  pipeline: string | null;
  cells: ICellSummary[];
  problems: IProblem[];
}

/** The comm target the kernel registers in `%load_ext jupyter_smstep`. */
export const COMM_TARGET = 'jupyter_smstep';

export const NOT_LOADED_MESSAGE =
  'jupyter_smstep is not loaded in this kernel: run %load_ext jupyter_smstep';

const STEP_LINE = /^%%step(?:[ \t]+(.*))?$/;

/**
 * The first line of a cell if it is a `%%step` cell, else null.
 *
 * IPython drops leading blank lines before looking for a cell magic, so do we.
 */
export function stepLine(source: string): string | null {
  const lines = source.split('\n');
  let i = 0;
  while (i < lines.length && lines[i].trim() === '') {
    i++;
  }
  if (i >= lines.length) {
    return null;
  }
  const first = lines[i].replace(/\r$/, '').trimEnd();
  return STEP_LINE.test(first) ? first : null;
}

export function isStepCell(source: string): boolean {
  return stepLine(source) !== null;
}

/**
 * The `%%step` options that take no value (`--defer`) or an optional
 * `true|false` (the boolean options): every other option consumes the next
 * token. The kernel's parser is the authority (tests/ipython/test_comm.py
 * checks this list against it).
 */
export const FLAGS_WITHOUT_VALUE = ['--defer', '-h', '--help'];
export const FLAGS_WITH_OPTIONAL_BOOL = [
  '--encrypt-inter-container-traffic',
  '--use-spot-instances'
];

/** Split a `%%step` line the way a shell does (quotes group, backslashes escape). */
export function shellWords(text: string): string[] {
  const words: string[] = [];
  let word = '';
  let inWord = false;
  let quote: string | null = null;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (quote) {
      if (ch === quote) {
        quote = null;
      } else if (ch === '\\' && quote === '"' && i + 1 < text.length) {
        word += text[++i];
      } else {
        word += ch;
      }
    } else if (ch === "'" || ch === '"') {
      quote = ch;
      inWord = true;
    } else if (ch === '\\' && i + 1 < text.length) {
      word += text[++i];
      inWord = true;
    } else if (/\s/.test(ch)) {
      if (inWord) {
        words.push(word);
      }
      word = '';
      inWord = false;
    } else {
      word += ch;
      inWord = true;
    }
  }
  if (inWord) {
    words.push(word);
  }
  return words;
}

/**
 * The step name typed on the `%%step NAME [options]` line, as the kernel's
 * parser reads it: the first positional word, skipping each option's value;
 * after `--` the next word is the name even if it starts with `-`. Null for a
 * bare `%%step` (the kernel names the step when the cell runs).
 */
export function parseStepName(source: string): string | null {
  const line = stepLine(source);
  if (line === null) {
    return null;
  }
  const words = shellWords(line.slice('%%step'.length));
  for (let i = 0; i < words.length; i++) {
    const word = words[i];
    if (word === '--') {
      return i + 1 < words.length ? words[i + 1] : null;
    }
    if (!word.startsWith('-') || word === '-') {
      return word;
    }
    if (word.includes('=') || FLAGS_WITHOUT_VALUE.includes(word)) {
      continue;
    }
    if (FLAGS_WITH_OPTIONAL_BOOL.includes(word)) {
      if (
        i + 1 < words.length &&
        /^(true|false|1|0|yes|no)$/i.test(words[i + 1])
      ) {
        i++;
      }
      continue;
    }
    i++; // the option's value
  }
  return null;
}

/** How an input's producer reads in a badge: `load`, `parameter`, `captured`. */
export function producerLabel(name: string, source: IInputSource): string {
  if (typeof source.step === 'string') {
    return source.step;
  }
  if (typeof source.parameter === 'string') {
    return source.parameter === name
      ? 'parameter'
      : `parameter ${source.parameter}`;
  }
  if ('value' in source) {
    return 'captured';
  }
  const keys = Object.keys(source);
  return keys.length ? keys[0] : '?';
}

/** A state message from the kernel, checked enough that rendering cannot throw. */
export function asState(data: unknown): IPipelineState | null {
  if (!data || typeof data !== 'object') {
    return null;
  }
  const d = data as { [key: string]: unknown };
  if (d.type !== 'state') {
    return null;
  }
  return {
    type: 'state',
    pipeline: typeof d.pipeline === 'string' ? d.pipeline : null,
    cells: Array.isArray(d.cells)
      ? (d.cells.filter(c => c && typeof c === 'object') as ICellSummary[])
      : [],
    problems: Array.isArray(d.problems)
      ? (d.problems.filter(
          p => p && typeof p === 'object' && typeof p.message === 'string'
        ) as IProblem[])
      : []
  };
}

/**
 * The kernel's record for a notebook cell: by Jupyter cell id, else (for a
 * step whose id the kernel did not get) by step name.
 */
export function findCellSummary(
  state: IPipelineState | null,
  cellId: string,
  stepName: string | null
): ICellSummary | null {
  if (!state) {
    return null;
  }
  const byId = state.cells.find(c => c.cell_id === cellId);
  if (byId) {
    return byId;
  }
  if (stepName) {
    return (
      state.cells.find(
        c => !c.cell_id && c.role === 'step' && c.step === stepName
      ) || null
    );
  }
  return null;
}

/** What the kernel needs to know of the notebook's cells: their ids in order, and which are tagged
 * `parameters` (papermill's convention; the kernel never sees cell tags otherwise, so without this a
 * kernel and `smstep` would build different pipelines from one notebook). */
export interface INotebookCells {
  cell_ids: string[];
  parameter_cells: string[];
}

export function notebookCells(
  cells: ReadonlyArray<{ id: string; tags: unknown }>
): INotebookCells {
  return {
    cell_ids: cells.map(cell => cell.id),
    parameter_cells: cells
      .filter(
        cell => Array.isArray(cell.tags) && cell.tags.includes('parameters')
      )
      .map(cell => cell.id)
  };
}
