import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette } from '@jupyterlab/apputils';
import { INotebookTracker } from '@jupyterlab/notebook';

import { addCommands } from './commands';
import { OpxPanel } from './components/Panel';
import { PanelModel } from './model';
import { ChangeStream } from './stream';
import { MainAreaViews } from './views';

/**
 * jupyter-opx: a left-sidebar panel over /opx/api (models, jobs, runs,
 * feedback, live through the change stream) and three commands in the
 * palette and the notebook toolbar.
 */
const plugin: JupyterFrontEndPlugin<void> = {
  id: 'jupyter-opx:plugin',
  description: 'Models, jobs, runs and production feedback of jupyter_opx.',
  autoStart: true,
  optional: [ICommandPalette, INotebookTracker, ILayoutRestorer],
  activate: (
    app: JupyterFrontEnd,
    palette: ICommandPalette | null,
    tracker: INotebookTracker | null,
    restorer: ILayoutRestorer | null
  ) => {
    const model = new PanelModel();
    const stream = new ChangeStream();
    const views = new MainAreaViews(app, stream);
    const panel = new OpxPanel(model, stream, {
      openOutput: (id, title) => views.openOutput(id, title),
      openLogs: (id, title) => views.openLogs(id, title)
    });
    app.shell.add(panel, 'left', { rank: 900 });
    restorer?.add(panel, 'jupyter-opx-panel');
    addCommands(app, model, panel.id, tracker, palette);
  }
};

export default plugin;
