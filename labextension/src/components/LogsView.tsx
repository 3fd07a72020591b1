import { ReactWidget } from '@jupyterlab/ui-components';
import * as React from 'react';

import { requestAPI } from '../handler';
import { ChangeStream } from '../stream';
import { RunLogs } from '../models';
import { ErrorLine, OpxContext, useResource } from './context';

function Logs(props: { runId: number }): JSX.Element {
  const logs = useResource(
    () => requestAPI<RunLogs>(`runs/${props.runId}/logs`).then(r => r.items),
    [props.runId]
  );
  const end = React.useRef<HTMLDivElement>(null);
  React.useEffect(() => {
    // a block body: recent browsers return a Promise from scrollIntoView,
    // which React would take for a cleanup function
    end.current?.scrollIntoView({ block: 'end' });
  }, [logs.data]);
  return (
    <div className="jp-opx-logs">
      <ErrorLine error={logs.error} />
      <pre role="log" aria-label={`Logs of run ${props.runId}`}>
        {(logs.data ?? []).map(line => (
          <span key={line.seq} className={`jp-opx-log-${line.stream}`}>
            {line.text.endsWith('\n') ? line.text : line.text + '\n'}
          </span>
        ))}
      </pre>
      {logs.data && logs.data.length === 0 && (
        <p className="jp-opx-muted">No output yet.</p>
      )}
      <div ref={end} />
    </div>
  );
}

/** A run's logs in the main area, following the change stream like the panel. */
export class LogsView extends ReactWidget {
  constructor(
    private readonly stream: ChangeStream,
    private readonly runId: number
  ) {
    super();
    this.addClass('jp-opx-logs-view');
    this.stream.seqChanged.connect(this.onChange, this);
  }

  private onChange(): void {
    if (this.isVisible) {
      this.update();
    }
  }

  protected onAfterShow(): void {
    this.update();
  }

  render(): JSX.Element {
    const ctx = {
      seq: this.stream.seq,
      notebook: null,
      openOutput: () => undefined,
      openLogs: () => undefined,
      showFeedback: () => undefined
    };
    return (
      <OpxContext.Provider value={ctx}>
        <Logs runId={this.runId} />
      </OpxContext.Provider>
    );
  }

  dispose(): void {
    this.stream.seqChanged.disconnect(this.onChange, this);
    super.dispose();
  }
}
