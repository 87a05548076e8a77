import { describe, expect, it } from '@jest/globals';

import {
  IPipelineState,
  asState,
  findCellSummary,
  isStepCell,
  notebookCells,
  parseStepName,
  producerLabel,
  shellWords,
  stepLine
} from '../summary';

describe('stepLine', () => {
  it.each([
    ['%%step train\nx = 1', '%%step train'],
    ['\n\n  \n%%step train  \nx = 1', '%%step train'],
    ['%%step\r\nx = 1', '%%step'],
    ['%%step', '%%step'],
    ['%%steps train', null],
    ['x = 1\n%%step train', null],
    ['%%time\n%%step train', null],
    ['', null]
  ])('%j -> %j', (source, line) => {
    expect(stepLine(source)).toBe(line);
    expect(isStepCell(source)).toBe(line !== null);
  });
});

describe('parseStepName', () => {
  it.each([
    ['%%step train\nx', 'train'],
    ['%%step', null],
    ['%%step --defer', null],
    ['%%step --instance-type ml.m5.xlarge train', 'train'],
    ['%%step --instance-type=ml.m5.xlarge train', 'train'],
    ['%%step --defer train', 'train'],
    ['%%step --use-spot-instances train', 'train'],
    ['%%step --use-spot-instances false train', 'train'],
    [
      '%%step --env "A=two words" --retry SageMaker.CAPACITY_ERROR:3 fit',
      'fit'
    ],
    ["%%step 'quoted-name' --defer", 'quoted-name'],
    ['%%step -- -load-', '-load-'],
    ['%%step --', null]
  ])('%j -> %j', (source, name) => {
    expect(parseStepName(source)).toBe(name);
  });
});

describe('shellWords', () => {
  it('groups quotes and honours escapes as a shell does', () => {
    expect(shellWords(` a "b c" 'd "e"' f\\ g "h\\"i"`)).toEqual([
      'a',
      'b c',
      'd "e"',
      'f g',
      'h"i'
    ]);
    expect(shellWords('   ')).toEqual([]);
    expect(shellWords('""')).toEqual(['']);
  });
});

describe('producerLabel', () => {
  it('names the producing step, the parameter, or says captured', () => {
    expect(producerLabel('df', { step: 'load' })).toBe('load');
    expect(producerLabel('epochs', { parameter: 'epochs' })).toBe('parameter');
    expect(producerLabel('n', { parameter: 'epochs' })).toBe(
      'parameter epochs'
    );
    expect(producerLabel('split', { value: 'function' })).toBe('captured');
    expect(producerLabel('x', { other: 'y' })).toBe('other');
    expect(producerLabel('x', {})).toBe('?');
  });
});

describe('asState', () => {
  it('accepts a state and drops what cannot be rendered', () => {
    const state = asState({
      type: 'state',
      pipeline: 'p',
      cells: [{ cell_id: 'a', role: 'step', step: 's' }, null, 3],
      problems: [{ message: 'm', severity: 'error' }, { severity: 'x' }, 'no']
    });
    expect(state).toEqual({
      type: 'state',
      pipeline: 'p',
      cells: [{ cell_id: 'a', role: 'step', step: 's' }],
      problems: [{ message: 'm', severity: 'error' }]
    });
  });
  it.each([[null], ['state'], [{ type: 'other' }], [[]]])(
    'refuses %j',
    data => {
      expect(asState(data)).toBeNull();
    }
  );
  it('tolerates missing lists and a null pipeline', () => {
    expect(asState({ type: 'state' })).toEqual({
      type: 'state',
      pipeline: null,
      cells: [],
      problems: []
    });
  });
});

describe('findCellSummary', () => {
  const state: IPipelineState = {
    type: 'state',
    pipeline: 'p',
    cells: [
      { cell_id: 'c1', role: 'step', step: 'load' },
      { cell_id: null, role: 'step', step: 'train' },
      { cell_id: 'c3', role: 'dependency', provides: ['f'], used_by: ['load'] }
    ],
    problems: []
  };
  it('finds by cell id first, then a step the kernel knows without an id', () => {
    expect(findCellSummary(state, 'c1', 'whatever')?.step).toBe('load');
    expect(findCellSummary(state, 'cX', 'train')?.step).toBe('train');
    expect(findCellSummary(state, 'cX', 'load')).toBeNull(); // known by id elsewhere: not this cell
    expect(findCellSummary(state, 'c3', null)?.role).toBe('dependency');
    expect(findCellSummary(null, 'c1', 'load')).toBeNull();
  });
});

describe('notebookCells', () => {
  it('lists every cell in order and the cells tagged parameters', () => {
    expect(
      notebookCells([
        { id: 'a', tags: undefined },
        { id: 'p', tags: ['parameters'] },
        { id: 'b', tags: ['hide-input', 'parameters'] },
        { id: 'c', tags: 'parameters' },
        { id: 'd', tags: ['injected-parameters'] }
      ])
    ).toEqual({
      cell_ids: ['a', 'p', 'b', 'c', 'd'],
      parameter_cells: ['p', 'b']
    });
  });
});
