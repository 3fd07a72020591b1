import { ISignal, Signal } from '@lumino/signaling';

import { DescribeRun } from './models';

export type Section = 'models' | 'jobs' | 'runs' | 'feedback';

export const SECTIONS: { id: Section; label: string }[] = [
  { id: 'models', label: 'Models' },
  { id: 'jobs', label: 'Jobs' },
  { id: 'runs', label: 'Runs' },
  { id: 'feedback', label: 'Feedback' }
];

/**
 * The panel's state outside React, so commands (palette, toolbar) can steer
 * it: which section shows, the job form's notebook, the feedback's model,
 * the change sequence and the notebook in focus.
 */
export class PanelModel {
  section: Section = 'models';
  formRequest: { path: string; nonce: number } | null = null;
  feedbackModel: string | null = null;
  highlightRun: number | null = null;
  seq = 0;
  notebook: string | null = null;
  private readonly changedSignal = new Signal<this, void>(this);

  get changed(): ISignal<this, void> {
    return this.changedSignal;
  }

  update(change: Partial<PanelModel>): void {
    Object.assign(this, change);
    this.changedSignal.emit();
  }

  openJobForm(path: string): void {
    this.update({ section: 'jobs', formRequest: { path, nonce: Date.now() } });
  }

  showFeedback(model?: string): void {
    this.update({
      section: 'feedback',
      feedbackModel: model ?? this.feedbackModel
    });
  }

  runStarted(run: DescribeRun): void {
    this.update({ section: 'runs', highlightRun: run.id });
  }
}
