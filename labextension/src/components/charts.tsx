import * as React from 'react';

/** One line of a chart; null values leave a gap. */
export interface ISeries {
  name: string;
  values: (number | null)[];
  className?: string;
}

const W = 280;
const H = 90;
const PAD = { left: 34, right: 6, top: 6, bottom: 16 };

function scale(min: number, max: number, lo: number, hi: number) {
  const span = max - min || 1;
  return (v: number) => lo + ((v - min) / span) * (hi - lo);
}

function path(
  values: (number | null)[],
  x: (i: number) => number,
  y: (v: number) => number
): string {
  let d = '';
  let pen = false;
  values.forEach((v, i) => {
    if (v === null || !isFinite(v)) {
      pen = false;
      return;
    }
    d += `${pen ? 'L' : 'M'}${x(i).toFixed(1)},${y(v).toFixed(1)}`;
    pen = true;
  });
  return d;
}

function short(label: string): string {
  // window starts are ISO times: keep "MM-DD" or "HH:MM"
  const m = /^\d{4}-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2}))?/.exec(label);
  if (!m) {
    return label;
  }
  return m[3] && m[3] + m[4] !== '0000' ? `${m[3]}:${m[4]}` : `${m[1]}-${m[2]}`;
}

/**
 * A small line chart in inline SVG: series over the windows `labels`, with an
 * optional shaded band (a confidence interval). Plain DOM, no chart library.
 */
export function LineChart(props: {
  title: string;
  labels: string[];
  series: ISeries[];
  band?: { low: (number | null)[]; high: (number | null)[] };
  zero?: boolean;
  format?: (v: number) => string;
}): JSX.Element {
  const { labels, series, band } = props;
  const fmt =
    props.format ?? ((v: number) => String(Math.round(v * 1000) / 1000));
  const all: number[] = [];
  for (const s of series) {
    all.push(...(s.values.filter(v => v !== null && isFinite(v)) as number[]));
  }
  if (band) {
    all.push(
      ...([...band.low, ...band.high].filter(
        v => v !== null && isFinite(v)
      ) as number[])
    );
  }
  if (props.zero) {
    all.push(0);
  }
  const empty = all.length === 0;
  const min = empty ? 0 : Math.min(...all);
  const max = empty ? 1 : Math.max(...all);
  const n = Math.max(labels.length, 1);
  const x = scale(0, Math.max(n - 1, 1), PAD.left, W - PAD.right);
  const y = scale(min, max, H - PAD.bottom, PAD.top);
  let bandPath = '';
  if (band) {
    const upper: string[] = [];
    const lower: string[] = [];
    band.high.forEach((hi, i) => {
      const lo = band.low[i];
      if (hi !== null && lo !== null && isFinite(hi) && isFinite(lo)) {
        upper.push(`${x(i).toFixed(1)},${y(hi).toFixed(1)}`);
        lower.unshift(`${x(i).toFixed(1)},${y(lo).toFixed(1)}`);
      }
    });
    if (upper.length) {
      bandPath = `M${upper.join('L')}L${lower.join('L')}Z`;
    }
  }
  const last = series.map(s => {
    const v = [...s.values].reverse().find(v => v !== null && isFinite(v));
    return `${s.name} ${v === undefined || v === null ? 'n/a' : fmt(v)}`;
  });
  return (
    <figure className="jp-opx-chart">
      <figcaption>
        {props.title}
        <span className="jp-opx-muted"> · {last.join(', ')}</span>
      </figcaption>
      <svg
        viewBox={`0 0 ${W} ${H}`}
        role="img"
        aria-label={`${props.title}: ${last.join(', ')}`}
        preserveAspectRatio="none"
      >
        <line
          className="jp-opx-axis"
          x1={PAD.left}
          x2={W - PAD.right}
          y1={H - PAD.bottom}
          y2={H - PAD.bottom}
        />
        <text
          className="jp-opx-tick"
          x={PAD.left - 3}
          y={PAD.top + 7}
          textAnchor="end"
        >
          {fmt(max)}
        </text>
        <text
          className="jp-opx-tick"
          x={PAD.left - 3}
          y={H - PAD.bottom}
          textAnchor="end"
        >
          {fmt(min)}
        </text>
        {props.zero && min < 0 && max > 0 && (
          <line
            className="jp-opx-zero"
            x1={PAD.left}
            x2={W - PAD.right}
            y1={y(0)}
            y2={y(0)}
          />
        )}
        {labels.length > 0 && (
          <>
            <text className="jp-opx-tick" x={PAD.left} y={H - 3}>
              {short(labels[0])}
            </text>
            <text
              className="jp-opx-tick"
              x={W - PAD.right}
              y={H - 3}
              textAnchor="end"
            >
              {short(labels[labels.length - 1])}
            </text>
          </>
        )}
        {bandPath && <path className="jp-opx-band" d={bandPath} />}
        {series.map((s, k) => (
          <g key={s.name} className={s.className ?? `jp-opx-series-${k}`}>
            <path className="jp-opx-line" d={path(s.values, x, y)} />
            {s.values.length === 1 && s.values[0] !== null && (
              <circle cx={x(0)} cy={y(s.values[0] as number)} r={2.5} />
            )}
          </g>
        ))}
        {empty && (
          <text className="jp-opx-tick" x={W / 2} y={H / 2} textAnchor="middle">
            no data yet
          </text>
        )}
      </svg>
    </figure>
  );
}

/** The values of `column` per window, aligned on `labels` (missing → null). */
export function column(
  rows: Record<string, unknown>[],
  labels: string[],
  name: string,
  filter?: (row: Record<string, unknown>) => boolean
): (number | null)[] {
  const byWindow = new Map<string, number | null>();
  for (const row of rows) {
    if (filter && !filter(row)) {
      continue;
    }
    const v = row[name];
    byWindow.set(
      String(row.window),
      typeof v === 'number' && isFinite(v) ? v : null
    );
  }
  return labels.map(l =>
    byWindow.has(l) ? (byWindow.get(l) as number | null) : null
  );
}
