import { showErrorMessage } from '@jupyterlab/apputils';
import * as React from 'react';

import { itemsOf, postAPI, query, requestAPI } from '../handler';
import { FINAL_STATUSES, Page, DescribeRun, RunError } from '../models';
import { OpxContext, ErrorLine, ago, useResource } from './context';
import { confirm } from './dialogs';

function duration(run: DescribeRun): string {
  let seconds = run.duration;
  if (seconds === null && run.started_at && !run.finished_at) {
    seconds = (Date.now() - new Date(run.started_at).getTime()) / 1000;
  }
  if (seconds === null || !isFinite(seconds)) {
    return '';
  }
  return seconds < 90
    ? `${seconds.toFixed(1)} s`
    : `${Math.round(seconds / 60)} min`;
}

/** A determinate bar when the cell counts are known, else an indeterminate one. */
/** Where a run failed, as the notebook's author counts its cells (see `where_text`). */
export function errorPlace(error: RunError): string {
  if (error.in_parameters) {
    return " (in the injected parameters cell: check the run's parameters)";
  }
  if (typeof error.cell === 'number') {
    return ` (cell ${error.cell})`;
  }
  if (typeof error.cell_index === 'number') {
    return ` (cell index ${error.cell_index} of the executed notebook)`;
  }
  return '';
}

function Progress(props: { run: DescribeRun }): JSX.Element {
  const { cells_done: done, cells_total: total } = props.run;
  const known =
    typeof done === 'number' && typeof total === 'number' && total > 0;
  const pct = known
    ? Math.round((100 * (done as number)) / (total as number))
    : 0;
  const text = known ? `${done} of ${total} cells` : 'starting';
  return (
    <div className="jp-opx-progress-row">
      <div
        className={`jp-opx-progress${known ? '' : ' jp-opx-progress-busy'}`}
        role="progressbar"
        aria-label={`Progress of run ${props.run.id}`}
        aria-valuemin={0}
        aria-valuemax={100}
        aria-valuenow={known ? pct : undefined}
        aria-valuetext={text}
      >
        <div style={{ width: known ? `${pct}%` : undefined }} />
      </div>
      <span className="jp-opx-muted" aria-hidden="true">
        {text}
      </span>
    </div>
  );
}

async function cancel(run: DescribeRun): Promise<void> {
  const ok = await confirm(
    `Cancel run ${run.id}?`,
    `Stop run ${run.id} of ${run.job}? The kernel is interrupted and the run ends as cancelled.`,
    'Cancel run',
    true,
    'Keep running'
  );
  if (!ok) {
    return;
  }
  try {
    await postAPI(`runs/${run.id}/cancel`);
  } catch (error) {
    await showErrorMessage(
      `Cannot cancel run ${run.id}`,
      String((error as Error).message ?? error)
    );
  }
}

function RunRow(props: { run: DescribeRun; highlight: boolean }): JSX.Element {
  const { openOutput, openLogs } = React.useContext(OpxContext);
  const { run } = props;
  const finished = FINAL_STATUSES.includes(run.status);
  return (
    <li
      className={`jp-opx-item${props.highlight ? ' jp-opx-highlight' : ''}`}
      aria-label={`Run ${run.id} of ${run.job}`}
    >
      <div className="jp-opx-row">
        <strong>#{run.id}</strong>
        <span>{run.job}</span>
        <span
          className={`jp-opx-status jp-opx-status-${run.status}`}
          role="status"
          aria-label={`Status of run ${run.id}`}
        >
          {run.status}
        </span>
        <span className="jp-opx-muted">
          {run.trigger} · {ago(run.started_at ?? run.created_at)}
          {duration(run) ? ` · ${duration(run)}` : ''}
        </span>
      </div>
      {run.status === 'running' && <Progress run={run} />}
      {run.error && (
        <div className="jp-opx-error">
          {run.error.ename}: {run.error.evalue}
          {errorPlace(run.error)}
        </div>
      )}
      <div className="jp-opx-actions">
        {finished && (
          <button
            className="jp-opx-link"
            aria-label={`Open output of run ${run.id}`}
            onClick={() => openOutput(run.id, `${run.job} #${run.id}`)}
          >
            Output
          </button>
        )}
        <button
          className="jp-opx-link"
          aria-label={`Open logs of run ${run.id}`}
          onClick={() => openLogs(run.id, `${run.job} #${run.id} logs`)}
        >
          Logs
        </button>
        {!finished && (
          <button
            className="jp-opx-link"
            aria-label={`Cancel run ${run.id}`}
            disabled={run.cancel_requested}
            onClick={() => void cancel(run)}
          >
            {run.cancel_requested ? 'Cancelling…' : 'Cancel'}
          </button>
        )}
      </div>
    </li>
  );
}

/** Runs: live status, progress of running runs, output, logs, cancel. */
export function RunsSection(props: { highlight: number | null }): JSX.Element {
  const [job, setJob] = React.useState('');
  const runs = useResource(
    () =>
      requestAPI<Page<DescribeRun>>(`runs${query({ job, limit: 50 })}`).then(
        p => itemsOf(p)
      ),
    [job]
  );
  // a running run's elapsed time moves without store changes: tick each second
  const [, setNow] = React.useState(0);
  const anyRunning = (runs.data ?? []).some(r => r.status === 'running');
  React.useEffect(() => {
    if (!anyRunning) {
      return;
    }
    const timer = window.setInterval(() => setNow(Date.now()), 1000);
    return () => window.clearInterval(timer);
  }, [anyRunning]);
  return (
    <section className="jp-opx-section" aria-label="Runs">
      <div className="jp-opx-field jp-opx-inline">
        <label htmlFor="jp-opx-runs-job">Job</label>
        <input
          id="jp-opx-runs-job"
          className="jp-mod-styled"
          placeholder="all jobs"
          value={job}
          onChange={e => setJob(e.target.value.trim())}
        />
      </div>
      <ErrorLine error={runs.error} />
      {!runs.loading && !runs.error && (runs.data ?? []).length === 0 && (
        <p className="jp-opx-empty">No runs yet.</p>
      )}
      <ul className="jp-opx-list" aria-label="Run list">
        {(runs.data ?? []).map(run => (
          <RunRow
            key={run.id}
            run={run}
            highlight={run.id === props.highlight}
          />
        ))}
      </ul>
    </section>
  );
}
