import * as React from 'react';

import { OpxRequestError } from '../handler';

/** What the panel's sections share. */
export interface IOpxContext {
  /** The store's change sequence from the stream; every view refetches when it moves. */
  seq: number;
  /** Open a run's output notebook (HTML) in the main area. */
  openOutput(runId: number, title: string): void;
  /** Open a run's logs in the main area. */
  openLogs(runId: number, title: string): void;
  /** The path of the notebook in focus, if any. */
  notebook: string | null;
  /** Show the Feedback section for `model`. */
  showFeedback(model: string): void;
}

export const OpxContext = React.createContext<IOpxContext>({
  seq: 0,
  openOutput: () => undefined,
  openLogs: () => undefined,
  notebook: null,
  showFeedback: () => undefined
});

/** A failure worth trying again by itself: no answer, or a gateway's. */
function transient(error: OpxRequestError): boolean {
  return [0, 502, 503, 504].includes(error.status);
}

/** Seconds before the n-th retry after a transient failure (1, 2, 4 … 30). */
function retryDelay(failures: number): number {
  return Math.min(2 ** Math.max(0, failures - 1), 30);
}

export interface IResource<T> {
  data: T | null;
  error: OpxRequestError | null;
  loading: boolean;
  reload(): void;
}

/**
 * `fetcher()`'s result, fetched again whenever the change sequence or `deps`
 * move. A change of `deps` (another target) fetches at once and the latest
 * answer wins; changes of the sequence while a fetch is in flight are
 * coalesced into one more fetch after it, so a burst of writes (feedback
 * batches arriving) costs the server one query at a time per view. The
 * previous data stays on screen while a refresh is in flight. A transient
 * failure (the server unreachable for a moment) is retried by itself, 1 s,
 * 2 s, 4 s … up to 30 s apart, so the view catches up without waiting for
 * the next change.
 */
export function useResource<T>(
  fetcher: () => Promise<T>,
  deps: React.DependencyList
): IResource<T> {
  const { seq } = React.useContext(OpxContext);
  const [data, setData] = React.useState<T | null>(null);
  const [error, setError] = React.useState<OpxRequestError | null>(null);
  const [loading, setLoading] = React.useState(true);
  const [tick, setTick] = React.useState(0);
  const [again, setAgain] = React.useState(0);
  const latest = React.useRef(0);
  const inFlight = React.useRef(false);
  const pending = React.useRef(false);
  const target = React.useRef<string | null>(null);
  const failures = React.useRef(0);
  const retry = React.useRef<number | null>(null);
  const key = `${JSON.stringify(deps)}#${tick}`;

  const cancelRetry = () => {
    if (retry.current !== null) {
      window.clearTimeout(retry.current);
      retry.current = null;
    }
  };
  React.useEffect(() => cancelRetry, []);

  React.useEffect(() => {
    const sameTarget = target.current === key;
    if (!sameTarget) {
      target.current = key;
      setData(null);
    } else if (inFlight.current) {
      pending.current = true;
      return;
    }
    cancelRetry();
    const call = ++latest.current;
    inFlight.current = true;
    pending.current = false;
    setLoading(true);
    const settle = (value: T | null, reason: OpxRequestError | null) => {
      if (call !== latest.current) {
        return; // a newer call owns the state
      }
      inFlight.current = false;
      if (reason) {
        setError(reason);
      } else {
        setData(value);
        setError(null);
        failures.current = 0;
      }
      setLoading(false);
      if (pending.current) {
        setAgain(n => n + 1);
      } else if (reason && transient(reason)) {
        failures.current += 1;
        retry.current = window.setTimeout(
          () => {
            retry.current = null;
            setAgain(n => n + 1);
          },
          1000 * retryDelay(failures.current)
        );
      }
    };
    fetcher().then(
      value => settle(value, null),
      reason =>
        settle(
          null,
          reason instanceof OpxRequestError
            ? reason
            : new OpxRequestError(0, 'client', String(reason))
        )
    );
  }, [seq, again, key]);

  return {
    data,
    error,
    loading,
    reload: () => setTick(t => t + 1)
  };
}

/** A short error line (role=alert, so screen readers and tests find it). */
export function ErrorLine(props: {
  error: OpxRequestError | string | null;
}): JSX.Element | null {
  if (!props.error) {
    return null;
  }
  const message =
    typeof props.error === 'string' ? props.error : props.error.message;
  return (
    <div className="jp-opx-error" role="alert">
      {message}
    </div>
  );
}

/** "3 min ago" or "in 5 h" from an ISO time. */
export function ago(iso: string | null | undefined): string {
  if (!iso) {
    return '—';
  }
  const seconds = (Date.now() - new Date(iso).getTime()) / 1000;
  if (!isFinite(seconds)) {
    return iso;
  }
  const span = Math.abs(seconds);
  let text: string;
  if (span < 60) {
    return seconds >= 0 ? 'just now' : 'in less than a minute';
  } else if (span < 3600) {
    text = `${Math.floor(span / 60)} min`;
  } else if (span < 86400) {
    text = `${Math.floor(span / 3600)} h`;
  } else {
    return new Date(iso).toISOString().slice(0, 16).replace('T', ' ');
  }
  return seconds >= 0 ? `${text} ago` : `in ${text}`;
}

/** A number with at most `digits` decimals, or "n/a". */
export function fmt(value: unknown, digits = 3): string {
  if (typeof value !== 'number' || !isFinite(value)) {
    return 'n/a';
  }
  return Number.isInteger(value)
    ? value.toLocaleString('en-US')
    : value.toFixed(digits);
}
