import * as React from 'react';

import { postAPI, query, requestAPI } from '../handler';
import {
  CreateJob,
  DescribeJob,
  NotebookParams,
  ParamSpec,
  SchedulePreview
} from '../models';
import { checkParam, defaultText } from '../params';
import { ErrorLine, useResource } from './context';

/** A job name from a notebook path: `reports/Daily Score.ipynb` → `daily-score`. */
export function jobNameFor(path: string): string {
  const base = path.split('/').pop() ?? 'job';
  const stem = base.replace(/\.ipynb$/i, '');
  const name = stem
    .toLowerCase()
    .replace(/[^a-z0-9_.-]+/g, '-')
    .replace(/^[^a-z0-9]+|-+$/g, '');
  return name || 'job';
}

function ParamField(props: {
  param: ParamSpec;
  text: string;
  error: string | null;
  onChange(text: string): void;
}): JSX.Element {
  const { param, text, error } = props;
  const id = `jp-opx-param-${param.name}`;
  const label = `${param.name} (${param.type}${param.nullable ? ', optional' : ''})`;
  const shownDefault = defaultText(param);
  return (
    <div className="jp-opx-field">
      <label htmlFor={id}>{label}</label>
      {param.type === 'bool' ? (
        <select
          id={id}
          className="jp-mod-styled"
          value={text}
          onChange={e => props.onChange(e.target.value)}
        >
          <option value="">default ({shownDefault || 'none'})</option>
          <option value="true">true</option>
          <option value="false">false</option>
        </select>
      ) : (
        <input
          id={id}
          className="jp-mod-styled"
          value={text}
          placeholder={shownDefault ? `default: ${shownDefault}` : ''}
          aria-invalid={error ? true : undefined}
          aria-describedby={error ? `${id}-error` : undefined}
          onChange={e => props.onChange(e.target.value)}
        />
      )}
      {param.help && <div className="jp-opx-help">{param.help}</div>}
      {error && (
        <div id={`${id}-error`} className="jp-opx-error" role="alert">
          {error}
        </div>
      )}
    </div>
  );
}

/** The readable form of a cron field, asked to the server as the user types. */
function SchedulePreview(props: {
  cron: string;
  tz: string;
  onValid(valid: boolean): void;
}): JSX.Element {
  const [debounced, setDebounced] = React.useState(props);
  React.useEffect(() => {
    const timer = window.setTimeout(() => setDebounced(props), 250);
    return () => window.clearTimeout(timer);
  }, [props.cron, props.tz]);
  const preview = useResource<SchedulePreview | null>(
    () =>
      debounced.cron.trim()
        ? requestAPI<SchedulePreview>(
            `schedule-preview${query({ cron: debounced.cron.trim(), tz: debounced.tz || 'UTC' })}`
          )
        : Promise.resolve(null),
    [debounced.cron, debounced.tz]
  );
  // a refused schedule (or time zone) blocks "Create job" until it is fixed
  const valid = !props.cron.trim() || !preview.error;
  React.useEffect(() => props.onValid(valid), [valid]);
  if (!props.cron.trim()) {
    return <div className="jp-opx-help">No schedule: run it by hand.</div>;
  }
  if (preview.error) {
    return (
      <div id="jp-opx-job-cron-error">
        <ErrorLine error={preview.error} />
      </div>
    );
  }
  // while the field is being typed in, the last answer is for another value
  const settled = debounced.cron === props.cron && debounced.tz === props.tz;
  const p = settled ? preview.data : null;
  return (
    <div
      className="jp-opx-help"
      aria-live="polite"
      aria-label="Schedule preview"
    >
      {p ? p.text : '…'}
      {p?.next?.length
        ? ` — next: ${p.next[0].replace('T', ' ').slice(0, 16)}`
        : ''}
    </div>
  );
}

/**
 * Create a job from a notebook: a field per typed parameter (checked as the
 * CLI checks `-p`), a cron schedule with its readable preview.
 */
export function JobForm(props: {
  path: string;
  onDone(job: DescribeJob | null): void;
}): JSX.Element {
  const [path, setPath] = React.useState(props.path);
  const [name, setName] = React.useState(jobNameFor(props.path));
  const [cron, setCron] = React.useState('');
  const [tz, setTz] = React.useState('UTC');
  const [texts, setTexts] = React.useState<Record<string, string>>({});
  const [submitError, setSubmitError] = React.useState<string | null>(null);
  const [busy, setBusy] = React.useState(false);
  const [scheduleValid, setScheduleValid] = React.useState(true);

  const info = useResource(
    () => requestAPI<NotebookParams>(`notebook-params${query({ path })}`),
    [path]
  );
  const params: ParamSpec[] = info.data?.params ?? [];
  const checks = params.map(p => ({
    param: p,
    result: checkParam(p, texts[p.name] ?? '')
  }));
  const invalid = checks.some(c => !c.result.ok) || !scheduleValid;

  const submit = async (event: React.FormEvent) => {
    event.preventDefault();
    if (invalid || busy) {
      return;
    }
    const values: Record<string, unknown> = {};
    for (const { param, result } of checks) {
      if (result.ok && result.value !== undefined) {
        values[param.name] = result.value;
      }
    }
    const body: CreateJob = {
      name: name.trim(),
      notebook: path,
      params: values,
      schedule: cron.trim() || null,
      timezone: tz.trim() || 'UTC'
    };
    setBusy(true);
    setSubmitError(null);
    try {
      const job = await postAPI<DescribeJob>('jobs', body);
      props.onDone(job);
    } catch (error) {
      setSubmitError(String((error as Error).message ?? error));
    } finally {
      setBusy(false);
    }
  };

  return (
    <form
      className="jp-opx-form"
      aria-label="New job"
      onSubmit={e => void submit(e)}
    >
      <div className="jp-opx-field">
        <label htmlFor="jp-opx-job-notebook">Notebook</label>
        <input
          id="jp-opx-job-notebook"
          className="jp-mod-styled"
          value={path}
          onChange={e => setPath(e.target.value)}
        />
      </div>
      <div className="jp-opx-field">
        <label htmlFor="jp-opx-job-name">Job name</label>
        <input
          id="jp-opx-job-name"
          className="jp-mod-styled"
          value={name}
          onChange={e => setName(e.target.value)}
        />
      </div>
      <ErrorLine error={info.error} />
      {info.data && info.data.params === null && (
        <p className="jp-opx-help">
          This notebook has no parameters cell: the job runs it as it is.
        </p>
      )}
      {params.length > 0 && (
        <fieldset className="jp-opx-params">
          <legend>Parameters</legend>
          {checks.map(({ param, result }) => (
            <ParamField
              key={param.name}
              param={param}
              text={texts[param.name] ?? ''}
              error={result.ok ? null : result.error}
              onChange={text => setTexts({ ...texts, [param.name]: text })}
            />
          ))}
        </fieldset>
      )}
      <div className="jp-opx-field">
        <label htmlFor="jp-opx-job-cron">Schedule (cron)</label>
        <input
          id="jp-opx-job-cron"
          className="jp-mod-styled"
          value={cron}
          placeholder="0 6 * * *"
          aria-invalid={scheduleValid ? undefined : true}
          aria-describedby={scheduleValid ? undefined : 'jp-opx-job-cron-error'}
          onChange={e => setCron(e.target.value)}
        />
        <SchedulePreview cron={cron} tz={tz} onValid={setScheduleValid} />
      </div>
      <div className="jp-opx-field">
        <label htmlFor="jp-opx-job-tz">Time zone</label>
        <input
          id="jp-opx-job-tz"
          className="jp-mod-styled"
          value={tz}
          onChange={e => setTz(e.target.value)}
        />
      </div>
      <ErrorLine error={submitError} />
      <div className="jp-opx-actions">
        <button
          type="submit"
          className="jp-mod-styled jp-mod-accept"
          disabled={invalid || busy || !info.data || !name.trim()}
        >
          Create job
        </button>
        <button
          type="button"
          className="jp-mod-styled"
          onClick={() => props.onDone(null)}
        >
          Cancel
        </button>
      </div>
    </form>
  );
}
