import { ReactWidget } from '@jupyterlab/ui-components';
import { Message } from '@lumino/messaging';
import * as React from 'react';

import { OpxRequestError, requestAPI } from '../handler';
import { opxIcon } from '../icon';
import { PanelModel, SECTIONS, Section } from '../model';
import { Version } from '../models';
import { ChangeStream } from '../stream';
import { compatible, EXTENSION_VERSION } from '../version';
import { OpxContext, IOpxContext } from './context';
import { FeedbackSection } from './FeedbackSection';
import { JobsSection } from './JobsSection';
import { ModelsSection } from './ModelsSection';
import { RunsSection } from './RunsSection';

export const MISSING_MESSAGE =
  'The jupyter_opx server extension is not installed or not enabled: ' +
  'pip install jupyter_opx and restart JupyterLab';

type Health =
  | { state: 'checking' }
  | { state: 'ok'; version: string }
  | { state: 'missing'; detail: string }
  | { state: 'mismatch'; version: string }
  | { state: 'error'; detail: string; transient: boolean };

/** GET /opx/api/version: is the server side there, and of our version? */
async function checkServer(): Promise<Health> {
  try {
    const info = await requestAPI<Version | null>('version');
    if (typeof info?.version !== 'string') {
      // something answers there, but not jupyter_opx (a proxy's page, another app)
      return { state: 'missing', detail: 'no version in the answer' };
    }
    return compatible(info.version)
      ? { state: 'ok', version: info.version }
      : { state: 'mismatch', version: info.version };
  } catch (error) {
    const e = error as OpxRequestError;
    if (e.status === 404) {
      return { state: 'missing', detail: e.message };
    }
    // no answer at all, or a gateway's: the server may be restarting
    const transient = [0, 502, 503, 504].includes(e.status);
    return { state: 'error', detail: e.message, transient };
  }
}

function Unavailable(props: { health: Health; retry(): void }): JSX.Element {
  const h = props.health;
  let text = MISSING_MESSAGE;
  if (h.state === 'mismatch') {
    text =
      `The jupyter_opx server extension is version ${h.version}, this panel is ${EXTENSION_VERSION}: ` +
      `pip install jupyter_opx==${EXTENSION_VERSION} (or upgrade both) and restart JupyterLab`;
  } else if (h.state === 'error') {
    text = `The jupyter_opx server extension does not answer: ${h.detail}`;
    if (h.transient) {
      text += ' (trying again by itself)';
    }
  }
  return (
    <div className="jp-opx-unavailable" role="alert">
      <p>{text}</p>
      <button className="jp-mod-styled" onClick={props.retry}>
        Check again
      </button>
    </div>
  );
}

function Tabs(props: { model: PanelModel }): JSX.Element {
  const { model } = props;
  return (
    <div className="jp-opx-tabs" role="tablist" aria-label="opx sections">
      {SECTIONS.map(s => (
        <button
          key={s.id}
          role="tab"
          id={`jp-opx-tab-${s.id}`}
          aria-selected={model.section === s.id}
          aria-controls={`jp-opx-tabpanel-${s.id}`}
          className={model.section === s.id ? 'jp-mod-current' : ''}
          onClick={() => model.update({ section: s.id })}
        >
          {s.label}
        </button>
      ))}
    </div>
  );
}

function SectionBody(props: { model: PanelModel; section: Section }) {
  const { model } = props;
  switch (props.section) {
    case 'models':
      return <ModelsSection />;
    case 'jobs':
      return (
        <JobsSection
          formRequest={model.formRequest}
          onRunStarted={run => model.runStarted(run)}
        />
      );
    case 'runs':
      return <RunsSection highlight={model.highlightRun} />;
    default:
      return (
        <FeedbackSection
          model={model.feedbackModel}
          onModel={m => model.update({ feedbackModel: m })}
        />
      );
  }
}

function PanelView(props: {
  model: PanelModel;
  stream: ChangeStream;
  actions: Pick<IOpxContext, 'openOutput' | 'openLogs'>;
}): JSX.Element {
  const { model, stream } = props;
  const [, render] = React.useState(0);
  const [health, setHealth] = React.useState<Health>({ state: 'checking' });
  const [live, setLive] = React.useState(stream.connected);

  React.useEffect(() => {
    const onChange = () => render(n => n + 1);
    const onLive = (_: ChangeStream, up: boolean) => setLive(up);
    model.changed.connect(onChange);
    stream.connectionChanged.connect(onLive);
    return () => {
      model.changed.disconnect(onChange);
      stream.connectionChanged.disconnect(onLive);
    };
  }, [model, stream]);

  const check = React.useCallback(() => {
    setHealth({ state: 'checking' });
    void checkServer().then(setHealth);
  }, []);
  React.useEffect(check, []);
  // a server out of reach for a moment: check again by itself, 2 s, 4 s … 30 s apart
  const attempts = React.useRef(0);
  React.useEffect(() => {
    if (health.state !== 'error' || !health.transient) {
      if (health.state === 'ok') {
        attempts.current = 0;
      }
      return;
    }
    attempts.current += 1;
    const delay = Math.min(2 ** attempts.current, 30);
    const timer = window.setTimeout(
      () => void checkServer().then(setHealth),
      delay * 1000
    );
    return () => window.clearTimeout(timer);
  }, [health]);
  React.useEffect(() => {
    if (health.state === 'ok') {
      stream.start();
    }
  }, [health.state]);

  const context: IOpxContext = {
    seq: model.seq,
    notebook: model.notebook,
    showFeedback: m => model.showFeedback(m),
    ...props.actions
  };
  return (
    <div className="jp-opx-panel">
      <header className="jp-opx-header">
        <opxIcon.react tag="span" className="jp-opx-logo" />
        <h2>opx</h2>
        {health.state === 'ok' && (
          <span
            className={`jp-opx-live${live ? ' jp-mod-live' : ''}`}
            title={
              live ? 'following changes' : 'reconnecting to the change stream'
            }
          >
            {live ? 'live' : 'offline'}
          </span>
        )}
      </header>
      {health.state === 'checking' && (
        <p className="jp-opx-muted">Connecting…</p>
      )}
      {health.state !== 'ok' && health.state !== 'checking' && (
        <Unavailable health={health} retry={check} />
      )}
      {health.state === 'ok' && (
        <OpxContext.Provider value={context}>
          <Tabs model={model} />
          <div
            className="jp-opx-body"
            role="tabpanel"
            id={`jp-opx-tabpanel-${model.section}`}
            aria-labelledby={`jp-opx-tab-${model.section}`}
          >
            <SectionBody model={model} section={model.section} />
          </div>
        </OpxContext.Provider>
      )}
    </div>
  );
}

/** The left-sidebar panel: models, jobs, runs and feedback, live. */
export class OpxPanel extends ReactWidget {
  constructor(
    readonly model: PanelModel,
    private readonly stream: ChangeStream,
    private readonly actions: Pick<IOpxContext, 'openOutput' | 'openLogs'>
  ) {
    super();
    this.id = 'jp-opx-panel';
    this.addClass('jp-opx-sidebar');
    this.title.icon = opxIcon;
    this.title.caption = 'opx: models, jobs, runs and feedback';
    // only the visible panel refetches; a hidden one catches up when shown
    this.stream.seqChanged.connect((_, seq) => {
      if (this.isVisible) {
        this.model.update({ seq });
      }
    });
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    if (this.model.seq !== this.stream.seq) {
      this.model.update({ seq: this.stream.seq });
    }
  }

  render(): JSX.Element {
    return (
      <PanelView
        model={this.model}
        stream={this.stream}
        actions={this.actions}
      />
    );
  }

  dispose(): void {
    this.stream.dispose();
    super.dispose();
  }
}
