import { JupyterFrontEnd } from '@jupyterlab/application';
import {
  ICommandPalette,
  ToolbarButton,
  showErrorMessage
} from '@jupyterlab/apputils';
import { DocumentRegistry } from '@jupyterlab/docregistry';
import {
  INotebookModel,
  INotebookTracker,
  NotebookActions,
  NotebookPanel
} from '@jupyterlab/notebook';
import { DisposableDelegate, IDisposable } from '@lumino/disposable';

import { askFields } from './components/dialogs';
import { opxIcon } from './icon';
import { PanelModel } from './model';

export const CommandIDs = {
  openPanel: 'opx:open-panel',
  snapshot: 'opx:snapshot-model',
  createJob: 'opx:create-job',
  openFeedback: 'opx:open-feedback'
};

const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;
const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_.]*$/;

/**
 * "Snapshot model…": ask for a name and a variable, then insert and run
 * `%opx snapshot NAME --model VAR` below the active cell, so the result (or
 * the error) shows in the notebook like any magic's.
 */
async function snapshotModel(panel: NotebookPanel): Promise<void> {
  let name =
    panel.context.path
      .split('/')
      .pop()
      ?.replace(/\.ipynb$/i, '') ?? '';
  name = name.replace(/[^A-Za-z0-9_.-]+/g, '-').replace(/^[^A-Za-z0-9]+/, '');
  const values = await askFields(
    'Snapshot model',
    'Store the model (and its environment) as a new version. It runs in this notebook’s kernel.',
    [
      { label: 'Snapshot name', value: name || 'model' },
      { label: 'Model variable', value: 'model' }
    ],
    'Snapshot'
  );
  if (!values) {
    return;
  }
  const [snapName, variable] = values;
  if (!NAME.test(snapName) || !IDENTIFIER.test(variable)) {
    await showErrorMessage(
      'Cannot snapshot',
      `Use letters, digits, '_', '-' or '.' for the name (not ${JSON.stringify(snapName)}) ` +
        `and a Python variable for the model (not ${JSON.stringify(variable)}).`
    );
    return;
  }
  const kernel = panel.sessionContext.session?.kernel;
  if (!kernel) {
    await showErrorMessage(
      'Cannot snapshot',
      'Start the notebook’s kernel first.'
    );
    return;
  }
  // load the magics quietly (already loaded: nothing printed)
  await kernel.requestExecute({
    code: "get_ipython().extension_manager.load_extension('jupyter_opx')",
    silent: true,
    store_history: false
  }).done;
  const notebook = panel.content;
  NotebookActions.insertBelow(notebook);
  const cell = notebook.activeCell;
  if (!cell) {
    return;
  }
  cell.model.sharedModel.setSource(
    `%opx snapshot ${snapName} --model ${variable}`
  );
  await NotebookActions.run(notebook, panel.sessionContext);
}

/** The notebook toolbar buttons (one per command). */
class ToolbarExtension implements DocumentRegistry.IWidgetExtension<
  NotebookPanel,
  INotebookModel
> {
  constructor(private readonly app: JupyterFrontEnd) {}

  createNew(panel: NotebookPanel): IDisposable {
    const items: [string, string, string][] = [
      ['opx-snapshot', CommandIDs.snapshot, 'Snapshot'],
      ['opx-create-job', CommandIDs.createJob, 'Create job'],
      ['opx-feedback', CommandIDs.openFeedback, 'Feedback']
    ];
    let after = 'cellType';
    const buttons = items.map(([name, id, label]) => {
      const button = new ToolbarButton({
        icon: id === CommandIDs.snapshot ? opxIcon : undefined,
        label,
        tooltip: this.app.commands.caption(id),
        onClick: () => void this.app.commands.execute(id)
      });
      // after the cell-type selector, in this order (at the end without one)
      if (!panel.toolbar.insertAfter(after, name, button)) {
        panel.toolbar.addItem(name, button);
      }
      after = name;
      return button;
    });
    return new DisposableDelegate(() => {
      for (const button of buttons) {
        button.dispose();
      }
    });
  }
}

export function addCommands(
  app: JupyterFrontEnd,
  model: PanelModel,
  panelId: string,
  tracker: INotebookTracker | null,
  palette: ICommandPalette | null
): void {
  const { commands, shell } = app;
  const current = (): NotebookPanel | null => tracker?.currentWidget ?? null;
  const reveal = () => shell.activateById(panelId);

  commands.addCommand(CommandIDs.openPanel, {
    label: 'Open opx panel',
    caption: 'Models, jobs, runs and production feedback',
    icon: opxIcon,
    execute: reveal
  });
  commands.addCommand(CommandIDs.snapshot, {
    label: 'Snapshot model…',
    caption: 'Snapshot a model of this notebook (%opx snapshot)',
    icon: args => (args.isPalette ? undefined : opxIcon),
    isEnabled: () => current() !== null,
    execute: async () => {
      const panel = current();
      if (panel) {
        await snapshotModel(panel);
      }
    }
  });
  commands.addCommand(CommandIDs.createJob, {
    label: 'Create job from notebook',
    caption: 'Run this notebook as a job: parameters, schedule',
    isEnabled: () => current() !== null,
    execute: async () => {
      const panel = current();
      if (!panel) {
        return;
      }
      // a job stores the notebook as saved on disk
      if (panel.context.model.dirty) {
        await panel.context.save();
      }
      model.openJobForm(panel.context.path);
      reveal();
    }
  });
  commands.addCommand(CommandIDs.openFeedback, {
    label: 'Open production feedback',
    caption: 'KPIs, drift, uplift and alerts of a model in production',
    execute: () => {
      model.showFeedback();
      reveal();
    }
  });

  if (palette) {
    for (const command of Object.values(CommandIDs)) {
      palette.addItem({ command, category: 'opx' });
    }
  }
  app.docRegistry.addWidgetExtension('Notebook', new ToolbarExtension(app));

  if (tracker) {
    const track = () =>
      model.update({ notebook: current()?.context.path ?? null });
    tracker.currentChanged.connect(track);
    track();
  }
}
