/**
 * The REST models of /opx/api: the same names as the Python models in
 * jupyter_opx/server/models.py and the schemas of api/openapi.yaml. Change
 * the three together.
 */

// -- requests ----------------------------------------------------------------

/** POST /snapshots/{ref}/promote */
export interface Promote {
  alias: string;
}

/** How a job runs; null or absent keeps the default. */
export interface JobSettings {
  schedule?: string | null;
  timezone?: string | null;
  timeout?: number | null;
  retries?: number | null;
}

/** POST /jobs: a job from a notebook under the server's root. */
export interface CreateJob extends JobSettings {
  name: string;
  notebook: string;
  params?: Record<string, unknown> | null;
}

/** PATCH /jobs/{name}: version N+1 (the notebook is re-read when omitted). */
export interface UpdateJob extends JobSettings {
  notebook?: string | null;
  params?: Record<string, unknown> | null;
}

/** POST /jobs/{name}/runs: parameter values over the job's defaults. */
export interface RunNow {
  params?: Record<string, unknown> | null;
}

// -- responses ---------------------------------------------------------------

/** Every error answer. */
export interface Error {
  code: string;
  message: string;
  [field: string]: unknown;
}

export interface Version {
  version: string;
}

/** GET /health (opx serve only). */
export interface Health {
  status: string;
  version: string;
}

/** Every list endpoint answers with one page. */
export interface Page<T> {
  items: T[];
  total: number;
  limit: number;
  offset: number;
}

/** One snapshot name (GET /models): how many versions, the latest, its aliases. */
export interface DescribeModel {
  name: string;
  versions: number;
  latest: number;
  latest_ref: string;
  updated_at: string;
  aliases: Record<string, number>;
}

export interface DescribeSnapshot {
  name: string;
  version: number;
  ref: string;
  created_at: string;
  created_by: string;
  message: string;
  parent: string | null;
  aliases: string[];
  model: Record<string, unknown> | null;
  data: Record<string, Record<string, unknown>>;
  reference_key: string | null;
  metrics: Record<string, unknown>;
  params: Record<string, unknown>;
  tags: Record<string, unknown>;
}

/** One move of an alias (`churn@production -> churn/3`). */
export interface DescribeAliasEvent {
  name: string;
  alias: string;
  version: number;
  previous_version: number | null;
  at: string;
  by: string;
}

/** GET /diff?a=&b=: what changed between two snapshots. */
export interface DescribeDiff {
  a: string;
  b: string;
  identical: boolean;
  model: Record<string, unknown>;
  data: Record<string, unknown>;
  metrics: Record<string, unknown>;
  params: Record<string, unknown>;
  tags: Record<string, unknown>;
  input_schema: Record<string, unknown>;
  environment: Record<string, unknown>;
}

export type ParamType =
  'int' | 'float' | 'bool' | 'str' | 'date' | 'list' | 'dict' | 'ref' | 'any';

/** A typed parameter of a notebook's `%%opx params` cell. */
export interface ParamSpec {
  name: string;
  type: ParamType;
  default: unknown;
  help: string;
  source_line: number;
  nullable: boolean;
  default_source: string | null;
}

/** GET /notebook-params?path= (`params` is null without a parameters cell). */
export interface NotebookParams {
  path: string;
  params: ParamSpec[] | null;
}

/** GET /schedule-preview?cron=&tz= */
export interface SchedulePreview {
  cron: string | null;
  timezone: string;
  text: string;
  next: string[];
}

export interface DescribeJob {
  name: string;
  version: number;
  created_at: string;
  created_by: string;
  notebook_path: string | null;
  notebook_digest: string;
  params: ParamSpec[] | null;
  defaults: Record<string, unknown>;
  schedule: string | null;
  timezone: string;
  schedule_text: string;
  enabled: boolean;
  next_run: string | null;
  last_status: RunStatus | null;
  last_run_id: number | null;
}

export type RunStatus =
  'queued' | 'running' | 'succeeded' | 'failed' | 'timed_out' | 'cancelled';

export const FINAL_STATUSES: RunStatus[] = [
  'succeeded',
  'failed',
  'timed_out',
  'cancelled'
];

/** Why a run failed: the exception and, when known, the failing cell. */
export interface RunError {
  ename: string;
  evalue: string;
  /** 0-based, in the executed notebook (which holds injected parameters). */
  cell_index?: number | null;
  /** 1-based, in the job's notebook, as its author counts the cells. */
  cell?: number | null;
  /** The error came from the parameters cell papermill injected. */
  in_parameters?: boolean;
  [field: string]: unknown;
}

export interface DescribeRun {
  id: number;
  job: string;
  job_version: number;
  status: RunStatus;
  trigger: string;
  scheduled_for: string | null;
  params: Record<string, unknown>;
  created_at: string;
  created_by: string;
  started_at: string | null;
  finished_at: string | null;
  duration: number | null;
  attempt: number;
  cells_done: number;
  cells_total: number;
  error: RunError | null;
  output_digest: string | null;
  html_digest: string | null;
  executor: string;
  cancel_requested: boolean;
}

export interface LogEntry {
  seq: number;
  stream: string;
  text: string;
}

/** GET /runs/{id}/logs?after= */
export interface RunLogs {
  run_id: number;
  status: RunStatus;
  items: LogEntry[];
  last_seq: number;
}

export interface FeedbackKpis {
  model: string;
  reference: string | null;
  predictions: number;
  outcomes: number;
  treatments: number;
  freshness_seconds: number | null;
  auc?: number | null;
  coverage?: number | null;
  auc_window?: string;
  drifted_features?: string[];
  drift_window?: string;
  uplift?: number | null;
  uplift_ci?: [number | null, number | null];
  uplift_arm?: string;
  kept?: number | null;
  alerts_firing?: number;
}

/** A row of a feedback table: its `window` and figures. */
export type FeedbackRow = Record<string, unknown> & { window?: string };

/** GET /feedback/{model}?window= */
export interface Feedback {
  model: string;
  reference: string | null;
  window: string;
  kpis: FeedbackKpis;
  volume: FeedbackRow[];
  performance: FeedbackRow[];
  drift: FeedbackRow[];
  prediction_drift: FeedbackRow[];
  uplift: FeedbackRow[];
  uplift_total: FeedbackRow[];
  alerts: FeedbackRow[];
}

/** POST /feedback/{model}/{kind}: one stored batch. */
export interface Logged {
  model: string;
  version: number | null;
  kind: string;
  rows: number;
  segment: number;
}

export interface DescribeAlert {
  id: number;
  model: string;
  expr: string;
  metric: string;
  op: string;
  threshold: number;
  min_n: number;
  window: string;
  enabled: boolean;
  state: string;
  since: string | null;
  value: number | null;
}

export type ListModelsResponse = Page<DescribeModel>;
export type ListSnapshotsResponse = Page<DescribeSnapshot>;
export type AliasHistoryResponse = Page<DescribeAliasEvent>;
export type ListJobsResponse = Page<DescribeJob>;
export type ListRunsResponse = Page<DescribeRun>;
export type ListAlertsResponse = Page<DescribeAlert>;
