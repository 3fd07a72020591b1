import { showErrorMessage } from '@jupyterlab/apputils';
import * as React from 'react';

import { itemsOf, postAPI, query, requestAPI, seg } from '../handler';
import {
  DescribeAliasEvent,
  DescribeModel,
  Page,
  DescribeSnapshot
} from '../models';
import { askFields, confirm } from './dialogs';
import { OpxContext, ErrorLine, ago, useResource } from './context';

async function promote(ref: string, alias: string): Promise<void> {
  try {
    await postAPI<DescribeAliasEvent>(`snapshots/${seg(ref)}/promote`, {
      alias
    });
  } catch (error) {
    await showErrorMessage(
      `Cannot promote ${ref}`,
      String((error as Error).message ?? error)
    );
  }
}

/** Promote: ask for the alias in the confirmation dialog itself. */
async function askPromote(
  s: DescribeSnapshot,
  current: Record<string, number>
) {
  const values = await askFields(
    `Promote ${s.ref}`,
    `Point an alias at ${s.ref}. Jobs and scoring that use NAME@ALIAS pick it up at their next run.`,
    [{ label: 'Alias', value: 'production' }],
    'Promote'
  );
  const alias = values?.[0];
  if (!alias) {
    return;
  }
  const from = current[alias];
  if (from === s.version) {
    return;
  }
  if (
    from !== undefined &&
    !(await confirm(
      'Move alias?',
      `${s.name}@${alias} points to ${s.name}/${from}. Move it to ${s.ref}?`,
      'Move alias'
    ))
  ) {
    return;
  }
  await promote(s.ref, alias);
}

async function rollBack(change: DescribeAliasEvent): Promise<void> {
  const target = `${change.name}/${change.previous_version}`;
  const ok = await confirm(
    'Roll back?',
    `Move ${change.name}@${change.alias} back from ${change.name}/${change.version} to ${target}?`,
    'Roll back',
    true
  );
  if (ok) {
    await promote(target, change.alias);
  }
}

function ModelDetail(props: { model: DescribeModel }): JSX.Element {
  const { name, aliases } = props.model;
  const versions = useResource(
    () =>
      requestAPI<Page<DescribeSnapshot>>(
        `snapshots${query({ name, limit: 50 })}`
      ).then(p => itemsOf(p)),
    [name]
  );
  const history = useResource(
    () =>
      requestAPI<Page<DescribeAliasEvent>>(
        `snapshots/${seg(name)}/history`
      ).then(p => itemsOf(p)),
    [name]
  );
  // the latest move of each alias: what "Roll back" undoes
  const lastMoves = new Map<string, DescribeAliasEvent>();
  for (const change of history.data ?? []) {
    const seen = lastMoves.get(change.alias);
    if (!seen || change.at > seen.at) {
      lastMoves.set(change.alias, change);
    }
  }
  return (
    <div className="jp-opx-detail">
      <ErrorLine error={versions.error ?? history.error} />
      <ul className="jp-opx-list" aria-label={`Versions of ${name}`}>
        {(versions.data ?? []).map(s => (
          <li
            key={s.ref}
            className="jp-opx-version"
            aria-label={s.ref}
            title={s.message || undefined}
          >
            <span className="jp-opx-ref">{s.ref}</span>
            {(s.aliases ?? []).map(a => (
              <span key={a} className="jp-opx-badge">
                @{a}
              </span>
            ))}
            <span className="jp-opx-muted">
              {s.parent ? `from ${s.parent} · ` : ''}
              {ago(s.created_at)}
              {s.message ? ` · ${s.message}` : ''}
            </span>
            <button
              className="jp-opx-link"
              aria-label={`Promote ${s.ref}`}
              onClick={() => void askPromote(s, aliases)}
            >
              Promote…
            </button>
          </li>
        ))}
      </ul>
      {lastMoves.size > 0 && (
        <ul className="jp-opx-history" aria-label={`Alias history of ${name}`}>
          {[...lastMoves.values()].map(change => (
            <li key={change.alias}>
              @{change.alias} → {name}/{change.version}
              {change.previous_version
                ? ` (was ${name}/${change.previous_version})`
                : ' (new)'}{' '}
              by {change.by}, {ago(change.at)}
              {change.previous_version ? (
                <button
                  className="jp-opx-link"
                  aria-label={`Roll back ${name}@${change.alias}`}
                  onClick={() => void rollBack(change)}
                >
                  Roll back
                </button>
              ) : null}
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}

/** Models: names, versions, aliases and lineage; promote and roll back. */
export function ModelsSection(): JSX.Element {
  const { showFeedback } = React.useContext(OpxContext);
  const [open, setOpen] = React.useState<string | null>(null);
  // one row per name (GET /models), not every snapshot: a page of names
  const page = useResource(
    () => requestAPI<Page<DescribeModel>>(`models${query({ limit: 200 })}`),
    []
  );
  const models = page.data?.items ?? [];
  const more = (page.data?.total ?? 0) - models.length;
  return (
    <section className="jp-opx-section" aria-label="Models">
      <ErrorLine error={page.error} />
      {!page.loading && !page.error && models.length === 0 && (
        <p className="jp-opx-empty">
          No snapshots yet. In a notebook:{' '}
          <code>%opx snapshot NAME --model VAR</code>
        </p>
      )}
      <ul className="jp-opx-list" aria-label="Model list">
        {models.map(m => (
          <li
            key={m.name}
            className="jp-opx-item"
            aria-label={`Model ${m.name}`}
          >
            <div className="jp-opx-row">
              <button
                className="jp-opx-expand"
                aria-expanded={open === m.name}
                onClick={() => setOpen(open === m.name ? null : m.name)}
              >
                <span className="jp-opx-caret" aria-hidden="true">
                  {open === m.name ? '▾' : '▸'}
                </span>
                {m.name}
              </button>
              <span className="jp-opx-muted">
                v{m.latest} · {m.versions} version{m.versions > 1 ? 's' : ''}
              </span>
              {Object.entries(m.aliases).map(([alias, version]) => (
                <span key={alias} className="jp-opx-badge">
                  @{alias}→{version}
                </span>
              ))}
              <button
                className="jp-opx-link"
                aria-label={`Feedback of ${m.name}`}
                onClick={() => showFeedback(m.name)}
              >
                Feedback
              </button>
            </div>
            {open === m.name && <ModelDetail model={m} />}
          </li>
        ))}
      </ul>
      {more > 0 && (
        <p className="jp-opx-muted">
          and {more} more model{more > 1 ? 's' : ''} (opx snapshots lists them
          all)
        </p>
      )}
    </section>
  );
}
