/**
 * One notebook's link to jupyter_smstep in its kernel.
 *
 * We open a comm to the `jupyter_smstep` target and ask for the state; the
 * kernel answers and pushes a new state after each cell that changes the
 * pipeline. A kernel without the extension closes the comm at once (no such
 * target): we then say "not loaded" and try again only when it may have
 * changed (a cell mentioning jupyter_smstep, %%step or %pipeline ran, a
 * command was invoked, the kernel restarted or was replaced), so a kernel
 * without the extension is not pestered after every cell.
 */

import { ISessionContext } from '@jupyterlab/apputils';
import { Kernel, KernelMessage } from '@jupyterlab/services';
import { IDisposable } from '@lumino/disposable';
import { ISignal, Signal } from '@lumino/signaling';

import {
  COMM_TARGET,
  INotebookCells,
  IPipelineState,
  asState
} from './summary';

/**
 * - `unknown`: no answer yet (no kernel, kernel starting or restarting)
 * - `connecting`: comm opened, waiting for the first state
 * - `connected`: the kernel has jupyter_smstep loaded; `state` is current
 * - `not-loaded`: the kernel has no `jupyter_smstep` comm target
 */
export type BridgeStatus =
  'unknown' | 'connecting' | 'connected' | 'not-loaded';

export class KernelBridge implements IDisposable {
  /**
   * @param cells the notebook's cell ids in order (the kernel forgets steps
   * whose cell was deleted and orders steps as the notebook does) and the
   * cells tagged `parameters`.
   */
  constructor(
    sessionContext: ISessionContext,
    cells: () => INotebookCells = () => ({ cell_ids: [], parameter_cells: [] })
  ) {
    this._sessionContext = sessionContext;
    this._cells = cells;
    sessionContext.kernelChanged.connect(this._onKernelChanged, this);
    sessionContext.statusChanged.connect(this._onStatusChanged, this);
    void sessionContext.ready.then(() => {
      if (!this._isDisposed) {
        void this.connect();
      }
    });
  }

  get status(): BridgeStatus {
    return this._status;
  }

  /** The last state the kernel sent, or null unless connected. */
  get state(): IPipelineState | null {
    return this._status === 'connected' ? this._state : null;
  }

  /** Emits when the status or the state changes. */
  get changed(): ISignal<this, void> {
    return this._changed;
  }

  get isDisposed(): boolean {
    return this._isDisposed;
  }

  /**
   * Make sure we are connected: resolves true once the kernel has sent its
   * state, false when it has no jupyter_smstep (or there is no kernel).
   */
  connect(): Promise<boolean> {
    if (this._status === 'connected') {
      return Promise.resolve(true);
    }
    if (this._pending) {
      return this._pending;
    }
    const kernel = this._sessionContext.session?.kernel;
    if (!kernel || this._isDisposed) {
      return Promise.resolve(false);
    }
    let comm: Kernel.IComm;
    try {
      comm = kernel.createComm(COMM_TARGET);
    } catch (error) {
      console.warn('jupyter-smstep: cannot open a comm', error);
      return Promise.resolve(false);
    }
    this._comm = comm;
    this._setStatus('connecting');
    const pending = new Promise<boolean>(resolve => {
      this._resolvePending = resolve;
    });
    this._pending = pending;
    comm.onMsg = (msg: KernelMessage.ICommMsgMsg) => {
      if (this._comm !== comm) {
        return;
      }
      const state = asState(msg.content.data);
      if (state) {
        this._state = state;
        this._setStatus('connected');
        this._settle(true);
        this._changed.emit();
      }
    };
    comm.onClose = () => {
      if (this._comm !== comm) {
        return;
      }
      this._comm = null;
      this._state = null;
      this._setStatus('not-loaded');
      this._settle(false);
    };
    try {
      comm.open({ type: 'request_state', ...this._cells() });
    } catch (error) {
      console.warn('jupyter-smstep: cannot open a comm', error);
      this._reset('unknown');
    }
    return pending;
  }

  /** Ask the kernel for its state again (used after a relevant cell ran). */
  refresh(): void {
    if (this._status === 'connected' && this._comm && !this._comm.isDisposed) {
      this._comm.send({ type: 'request_state', ...this._cells() });
    } else if (this._status !== 'connecting') {
      void this.connect();
    }
  }

  /** Tell the kernel the notebook's cells changed (added, deleted, moved or (un)tagged `parameters`). */
  syncCells(): void {
    if (this._status === 'connected' && this._comm && !this._comm.isDisposed) {
      this._comm.send({ type: 'notebook_cells', ...this._cells() });
    }
  }

  dispose(): void {
    if (this._isDisposed) {
      return;
    }
    const comm = this._comm;
    if (comm && !comm.isDisposed) {
      try {
        // tell the kernel to forget this view (the notebook was closed)
        comm.close();
      } catch {
        // the kernel is gone already
      }
    }
    this._reset('unknown');
    this._isDisposed = true;
    Signal.clearData(this);
  }

  private _onKernelChanged(
    _: ISessionContext,
    change: { newValue: Kernel.IKernelConnection | null }
  ): void {
    this._reset('unknown');
    if (change.newValue) {
      void this._sessionContext.ready.then(() => {
        if (
          !this._isDisposed &&
          this._sessionContext.session?.kernel === change.newValue
        ) {
          void this.connect();
        }
      });
    }
  }

  private _onStatusChanged(_: ISessionContext, status: Kernel.Status): void {
    if (
      status === 'restarting' ||
      status === 'autorestarting' ||
      status === 'dead'
    ) {
      // A restarted kernel has forgotten the comm (and %load_ext) without closing it.
      this._restarted = true;
      this._reset('unknown');
    } else if (status === 'idle' && this._restarted) {
      this._restarted = false;
      void this.connect();
    }
  }

  private _reset(status: BridgeStatus): void {
    const comm = this._comm;
    this._comm = null;
    this._state = null;
    if (comm && !comm.isDisposed) {
      try {
        comm.dispose();
      } catch {
        // the kernel is gone; nothing to close
      }
    }
    this._settle(false);
    this._setStatus(status);
  }

  private _settle(result: boolean): void {
    const resolve = this._resolvePending;
    this._resolvePending = null;
    this._pending = null;
    if (resolve) {
      resolve(result);
    }
  }

  private _setStatus(status: BridgeStatus): void {
    if (this._status !== status) {
      this._status = status;
      this._changed.emit();
    }
  }

  private _sessionContext: ISessionContext;
  private _cells: () => INotebookCells;
  private _status: BridgeStatus = 'unknown';
  private _state: IPipelineState | null = null;
  private _comm: Kernel.IComm | null = null;
  private _pending: Promise<boolean> | null = null;
  private _resolvePending: ((ok: boolean) => void) | null = null;
  private _restarted = false;
  private _isDisposed = false;
  private _changed = new Signal<this, void>(this);
}
