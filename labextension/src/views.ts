import { IFrame, MainAreaWidget } from '@jupyterlab/apputils';
import { JupyterFrontEnd } from '@jupyterlab/application';

import { LogsView } from './components/LogsView';
import { apiUrl, serverSettings } from './handler';
import { opxIcon } from './icon';
import { ChangeStream } from './stream';

/** Opens run outputs and logs in the main area, one tab per run (reused). */
export class MainAreaViews {
  private opened = new Map<string, MainAreaWidget>();

  constructor(
    private readonly app: JupyterFrontEnd,
    private readonly stream: ChangeStream
  ) {}

  private show(key: string, make: () => MainAreaWidget): void {
    let widget = this.opened.get(key);
    if (!widget || widget.isDisposed) {
      widget = make();
      widget.id = `jp-opx-${key}`;
      widget.title.icon = opxIcon;
      widget.title.closable = true;
      widget.disposed.connect(() => this.opened.delete(key));
      this.opened.set(key, widget);
      this.app.shell.add(widget, 'main');
    }
    this.app.shell.activateById(widget.id);
  }

  /** The executed notebook as HTML (GET /opx/api/runs/{id}/output) in an iframe. */
  openOutput(runId: number, title: string): void {
    this.show(`output-${runId}`, () => {
      // scripts may run (plots), but without same-origin access to Jupyter
      const frame = new IFrame({ sandbox: ['allow-scripts', 'allow-popups'] });
      const token = serverSettings().token;
      frame.url =
        apiUrl(`runs/${runId}/output`) +
        (token ? `?token=${encodeURIComponent(token)}` : '');
      frame.addClass('jp-opx-output');
      const widget = new MainAreaWidget({ content: frame });
      widget.title.label = title;
      widget.title.caption = `Output notebook of run ${runId}`;
      return widget;
    });
  }

  openLogs(runId: number, title: string): void {
    this.show(`logs-${runId}`, () => {
      const widget = new MainAreaWidget({
        content: new LogsView(this.stream, runId)
      });
      widget.title.label = title;
      return widget;
    });
  }
}
