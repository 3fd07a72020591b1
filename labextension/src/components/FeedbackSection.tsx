import * as React from 'react';

import { itemsOf, query, requestAPI, seg } from '../handler';
import { FeedbackRow, Feedback, Page, DescribeModel } from '../models';
import { column, LineChart } from './charts';
import { ErrorLine, fmt, useResource } from './context';

const WINDOWS = ['1h', '1d', '7d'];

function Kpi(props: {
  label: string;
  value: string;
  note?: string;
  alarm?: boolean;
}) {
  const id = `jp-opx-kpi-${props.label.replace(/\W+/g, '-').toLowerCase()}`;
  return (
    <div
      className={`jp-opx-kpi${props.alarm ? ' jp-opx-kpi-alarm' : ''}`}
      role="group"
      aria-labelledby={id}
    >
      <div id={id} className="jp-opx-kpi-label">
        {props.label}
      </div>
      <div className="jp-opx-kpi-value" role="status">
        {props.value}
      </div>
      {props.note && <div className="jp-opx-muted">{props.note}</div>}
    </div>
  );
}

function windowsOf(...tables: FeedbackRow[][]): string[] {
  const set = new Set<string>();
  for (const rows of tables) {
    for (const row of rows) {
      if (row.window !== undefined && row.window !== null) {
        set.add(String(row.window));
      }
    }
  }
  return [...set].sort();
}

function Kpis(props: { fb: Feedback }): JSX.Element {
  const k = props.fb.kpis;
  const ci = k.uplift_ci;
  const drifted = k.drifted_features ?? [];
  return (
    <div className="jp-opx-kpis" aria-label="Key figures">
      <Kpi
        label="Predictions"
        value={fmt(k.predictions)}
        note={`${fmt(k.outcomes)} outcomes`}
      />
      <Kpi
        label="AUC"
        value={fmt(k.auc)}
        note={
          k.auc_window
            ? `untreated, ${k.auc_window.slice(0, 16)}`
            : 'no labels yet'
        }
      />
      <Kpi
        label="Label coverage"
        value={
          k.coverage === undefined || k.coverage === null
            ? 'n/a'
            : `${(100 * k.coverage).toFixed(0)} %`
        }
      />
      <Kpi
        label="Drifted features"
        value={String(drifted.length)}
        note={drifted.join(', ') || undefined}
        alarm={drifted.length > 0}
      />
      <Kpi
        label="Uplift"
        value={
          k.uplift === undefined || k.uplift === null
            ? 'n/a'
            : `${k.uplift >= 0 ? '+' : ''}${fmt(k.uplift)}`
        }
        note={ci ? `95% CI ${fmt(ci[0])} to ${fmt(ci[1])}` : undefined}
      />
      <Kpi
        label="Alerts firing"
        value={String(k.alerts_firing ?? 0)}
        alarm={(k.alerts_firing ?? 0) > 0}
      />
    </div>
  );
}

function DriftTable(props: { rows: FeedbackRow[] }): JSX.Element | null {
  const tested = props.rows.filter(r => Number(r.n ?? 1) > 0);
  if (!tested.length) {
    return null;
  }
  const lastWindow = windowsOf(tested).pop();
  const latest = tested.filter(r => String(r.window) === lastWindow);
  return (
    <table className="jp-opx-table" aria-label="Drift by feature">
      <caption>Drift, window {String(lastWindow).slice(0, 16)}</caption>
      <thead>
        <tr>
          <th>Feature</th>
          <th>PSI</th>
          <th>KS</th>
          <th>p</th>
          <th>Drifted</th>
        </tr>
      </thead>
      <tbody>
        {latest.map(r => (
          <tr
            key={String(r.feature)}
            className={r.drifted ? 'jp-opx-drifted' : ''}
          >
            <td>{String(r.feature)}</td>
            <td>{fmt(r.psi)}</td>
            <td>{fmt(r.ks)}</td>
            <td>{fmt(r.p_value)}</td>
            <td>{r.drifted ? 'yes' : 'no'}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

function Alerts(props: { rows: FeedbackRow[] }): JSX.Element {
  if (!props.rows.length) {
    return (
      <p className="jp-opx-muted">
        No alert rules. Add one: <code>opx alert add MODEL "auc &lt; 0.7"</code>
      </p>
    );
  }
  return (
    <ul className="jp-opx-list" aria-label="Alerts">
      {props.rows.map(a => (
        <li
          key={String(a.id)}
          className={`jp-opx-alert jp-opx-alert-${a.state}`}
        >
          <span className={`jp-opx-status jp-opx-status-${a.state}`}>
            {String(a.state)}
          </span>{' '}
          <code>{String(a.expr)}</code>
          {a.value !== null && a.value !== undefined
            ? ` (now ${fmt(a.value)})`
            : ''}
          {a.since
            ? ` since ${String(a.since).slice(0, 16).replace('T', ' ')}`
            : ''}
        </li>
      ))}
    </ul>
  );
}

function Charts(props: { fb: Feedback }): JSX.Element {
  const { fb } = props;
  const labels = windowsOf(fb.volume, fb.performance, fb.uplift);
  const perfArm = fb.performance.some(r => r.arm === 'control')
    ? 'control'
    : 'all';
  const treated = fb.uplift.filter(
    r => r.uplift !== null && r.uplift !== undefined
  );
  const upliftArm = treated.length
    ? String(treated[treated.length - 1].arm)
    : null;
  const isArm = (r: Record<string, unknown>) => r.arm === upliftArm;
  return (
    <div className="jp-opx-charts">
      <LineChart
        title="Volume"
        labels={labels}
        zero
        format={v => Math.round(v).toLocaleString('en-US')}
        series={[
          {
            name: 'predictions',
            values: column(fb.volume, labels, 'predictions')
          },
          { name: 'outcomes', values: column(fb.volume, labels, 'outcomes') }
        ]}
      />
      <LineChart
        title={`AUC (${perfArm})`}
        labels={labels}
        series={[
          {
            name: 'AUC',
            values: column(
              fb.performance,
              labels,
              'auc',
              r => r.arm === perfArm
            )
          }
        ]}
      />
      {upliftArm && (
        <LineChart
          title={`Uplift ${upliftArm} vs control ± 95% CI`}
          labels={labels}
          zero
          band={{
            low: column(fb.uplift, labels, 'ci_low', isArm),
            high: column(fb.uplift, labels, 'ci_high', isArm)
          }}
          series={[
            {
              name: 'uplift',
              values: column(fb.uplift, labels, 'uplift', isArm)
            }
          ]}
        />
      )}
    </div>
  );
}

/** Feedback: per model KPIs, charts over time, drift table, uplift ± CI, alerts. */
export function FeedbackSection(props: {
  model: string | null;
  onModel(model: string): void;
}): JSX.Element {
  const [win, setWin] = React.useState('1d');
  const models = useResource(
    () =>
      requestAPI<Page<DescribeModel>>(`models${query({ limit: 200 })}`).then(
        p => itemsOf(p)
      ),
    []
  );
  const names = {
    ...models,
    data: models.data ? models.data.map(m => m.name) : null
  };
  // none chosen yet: a model in production ("Open production feedback"), else the first
  const inProduction = (models.data ?? []).find(
    m => m.aliases && 'production' in m.aliases
  );
  const model = props.model ?? inProduction?.name ?? names.data?.[0] ?? null;
  const fb = useResource<Feedback | null>(
    () =>
      model
        ? requestAPI<Feedback>(
            `feedback/${seg(model)}${query({ window: win })}`
          )
        : Promise.resolve(null),
    [model, win]
  );
  return (
    <section className="jp-opx-section" aria-label="Feedback">
      <div className="jp-opx-row">
        <label className="jp-opx-inline">
          Model{' '}
          <select
            className="jp-mod-styled"
            value={model ?? ''}
            onChange={e => props.onModel(e.target.value)}
          >
            {(names.data ?? []).map(n => (
              <option key={n} value={n}>
                {n}
              </option>
            ))}
          </select>
        </label>
        <label className="jp-opx-inline">
          Window{' '}
          <select
            className="jp-mod-styled"
            value={win}
            onChange={e => setWin(e.target.value)}
          >
            {WINDOWS.map(w => (
              <option key={w} value={w}>
                {w}
              </option>
            ))}
          </select>
        </label>
      </div>
      <ErrorLine error={names.error ?? fb.error} />
      {!model && !names.loading && (
        <p className="jp-opx-empty">No models yet.</p>
      )}
      {fb.data && (
        <>
          <div className="jp-opx-muted">
            {fb.data.model} · reference {fb.data.reference ?? 'none'}
          </div>
          <Kpis fb={fb.data} />
          <Charts fb={fb.data} />
          <DriftTable rows={fb.data.drift} />
          <h3 className="jp-opx-subtitle">Alerts</h3>
          <Alerts rows={fb.data.alerts} />
        </>
      )}
    </section>
  );
}
