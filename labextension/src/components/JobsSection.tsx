import { showErrorMessage } from '@jupyterlab/apputils';
import * as React from 'react';

import { itemsOf, postAPI, query, requestAPI, seg } from '../handler';
import { DescribeJob, Page, DescribeRun } from '../models';
import { OpxContext, ErrorLine, ago, useResource } from './context';
import { JobForm } from './JobForm';

async function act(what: string, call: () => Promise<unknown>): Promise<void> {
  try {
    await call();
  } catch (error) {
    await showErrorMessage(what, String((error as Error).message ?? error));
  }
}

function JobRow(props: {
  job: DescribeJob;
  onRun(run: DescribeRun): void;
}): JSX.Element {
  const { job } = props;
  const name = seg(job.name);
  return (
    <li className="jp-opx-item" aria-label={`Job ${job.name}`}>
      <div className="jp-opx-row">
        <strong>{job.name}</strong>
        <span className="jp-opx-muted">v{job.version}</span>
        {!job.enabled && <span className="jp-opx-badge">disabled</span>}
        {job.last_status && (
          <span className={`jp-opx-status jp-opx-status-${job.last_status}`}>
            {job.last_status}
          </span>
        )}
      </div>
      <div className="jp-opx-muted">
        {job.schedule_text}
        {job.enabled && job.next_run ? ` · next ${ago(job.next_run)}` : ''}
        {job.last_run_id ? ` · last run #${job.last_run_id}` : ''}
        {job.notebook_path ? (
          <span title={job.notebook_path}>
            {' · '}
            {job.notebook_path.split('/').pop()}
          </span>
        ) : null}
      </div>
      <div className="jp-opx-actions">
        <button
          className="jp-mod-styled"
          aria-label={`Run ${job.name} now`}
          onClick={() =>
            void act(`Cannot run ${job.name}`, async () =>
              props.onRun(
                await postAPI<DescribeRun>(`jobs/${name}/runs`, { params: {} })
              )
            )
          }
        >
          Run now
        </button>
        <button
          className="jp-mod-styled"
          aria-label={`${job.enabled ? 'Disable' : 'Enable'} ${job.name}`}
          onClick={() =>
            void act(`Cannot change ${job.name}`, () =>
              postAPI(`jobs/${name}/${job.enabled ? 'disable' : 'enable'}`)
            )
          }
        >
          {job.enabled ? 'Disable' : 'Enable'}
        </button>
      </div>
    </li>
  );
}

/** Jobs: create from the open notebook, run now, enable/disable. */
export function JobsSection(props: {
  formRequest: { path: string; nonce: number } | null;
  onRunStarted(run: DescribeRun): void;
}): JSX.Element {
  const { notebook } = React.useContext(OpxContext);
  const [form, setForm] = React.useState<{
    path: string;
    nonce: number;
  } | null>(props.formRequest);
  React.useEffect(() => {
    if (props.formRequest) {
      setForm(props.formRequest);
    }
  }, [props.formRequest?.nonce]);
  const jobs = useResource(
    () =>
      requestAPI<Page<DescribeJob>>(`jobs${query({ limit: 200 })}`).then(p =>
        itemsOf(p)
      ),
    []
  );
  return (
    <section className="jp-opx-section" aria-label="Jobs">
      {form ? (
        <JobForm
          key={`${form.path}#${form.nonce}`}
          path={form.path}
          onDone={() => setForm(null)}
        />
      ) : (
        <div className="jp-opx-actions">
          <button
            className="jp-mod-styled"
            disabled={!notebook}
            title={notebook ? `From ${notebook}` : 'Open a notebook first'}
            onClick={() =>
              notebook && setForm({ path: notebook, nonce: Date.now() })
            }
          >
            New job from notebook
          </button>
        </div>
      )}
      <ErrorLine error={jobs.error} />
      {!jobs.loading && !jobs.error && (jobs.data ?? []).length === 0 && (
        <p className="jp-opx-empty">No jobs yet.</p>
      )}
      <ul className="jp-opx-list" aria-label="Job list">
        {(jobs.data ?? []).map(job => (
          <JobRow key={job.name} job={job} onRun={props.onRunStarted} />
        ))}
      </ul>
    </section>
  );
}
