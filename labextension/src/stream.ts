import { Signal, ISignal } from '@lumino/signaling';

import { apiUrl, serverSettings } from './handler';

/**
 * Follows GET /opx/api/stream (server-sent events) and emits the store's change
 * sequence each time it moves: views refresh on that, so no reload button.
 *
 * EventSource reconnects by itself after a dropped connection (the server
 * sends `retry: 1000`); when the server refuses the stream outright (403/404)
 * the browser closes it, and we try again with a growing delay.
 */
export class ChangeStream {
  private source: EventSource | null = null;
  private retryTimer: number | null = null;
  private delay = 1000;
  private disposed = false;
  private readonly changed = new Signal<this, number>(this);
  private readonly connection = new Signal<this, boolean>(this);
  private lastSeq = -1;
  private isConnected = false;

  /** Emits the new change sequence. */
  get seqChanged(): ISignal<this, number> {
    return this.changed;
  }

  /** Emits true when the stream (re)opens, false when it drops. */
  get connectionChanged(): ISignal<this, boolean> {
    return this.connection;
  }

  get seq(): number {
    return this.lastSeq;
  }

  get connected(): boolean {
    return this.isConnected;
  }

  start(): void {
    if (this.source || this.disposed) {
      return;
    }
    const token = serverSettings().token;
    // EventSource sends the session cookie but cannot set headers: a token
    // login needs the token in the query (the server redacts it in its log)
    const url =
      apiUrl('stream') + (token ? `?token=${encodeURIComponent(token)}` : '');
    const source = new EventSource(url, { withCredentials: true });
    this.source = source;
    source.addEventListener('open', () => {
      this.delay = 1000;
      this.setConnected(true);
    });
    source.addEventListener('change', event => {
      let seq = this.lastSeq + 1;
      try {
        seq = Number(JSON.parse((event as MessageEvent).data).seq);
      } catch {
        // an unreadable event still means "something changed"
      }
      if (seq !== this.lastSeq) {
        this.lastSeq = seq;
        this.changed.emit(seq);
      }
    });
    source.addEventListener('error', () => {
      this.setConnected(false);
      if (source.readyState === EventSource.CLOSED) {
        this.source = null;
        this.scheduleRetry();
      }
    });
  }

  private setConnected(value: boolean): void {
    if (value !== this.isConnected) {
      this.isConnected = value;
      this.connection.emit(value);
    }
  }

  private scheduleRetry(): void {
    if (this.disposed || this.retryTimer !== null) {
      return;
    }
    this.retryTimer = window.setTimeout(() => {
      this.retryTimer = null;
      this.start();
    }, this.delay);
    this.delay = Math.min(this.delay * 2, 30000);
  }

  stop(): void {
    if (this.retryTimer !== null) {
      window.clearTimeout(this.retryTimer);
      this.retryTimer = null;
    }
    this.source?.close();
    this.source = null;
    this.setConnected(false);
  }

  dispose(): void {
    this.disposed = true;
    this.stop();
    Signal.clearData(this);
  }
}
