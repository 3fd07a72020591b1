import { Dialog, showDialog } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

/** A dialog body with labelled text fields; `getValue()` returns their values. */
export class FieldsBody extends Widget implements Dialog.IBodyWidget<string[]> {
  private inputs: HTMLInputElement[] = [];

  constructor(
    message: string,
    fields: { label: string; value?: string; placeholder?: string }[]
  ) {
    super();
    this.addClass('jp-opx-dialog');
    if (message) {
      const p = document.createElement('p');
      p.textContent = message;
      this.node.appendChild(p);
    }
    for (const field of fields) {
      const label = document.createElement('label');
      label.textContent = field.label;
      const input = document.createElement('input');
      input.className = 'jp-mod-styled';
      input.value = field.value ?? '';
      input.placeholder = field.placeholder ?? '';
      input.setAttribute('aria-label', field.label);
      label.appendChild(input);
      this.node.appendChild(label);
      this.inputs.push(input);
    }
  }

  protected onAfterAttach(): void {
    this.inputs[0]?.focus();
    this.inputs[0]?.select();
  }

  getValue(): string[] {
    return this.inputs.map(input => input.value.trim());
  }
}

/**
 * Ask to confirm `message`; true when the user pressed `accept`. `dismiss`
 * labels the other button (say "Keep running" when `accept` itself says
 * "Cancel …").
 */
export async function confirm(
  title: string,
  message: string,
  accept: string,
  warn = false,
  dismiss = 'Cancel'
): Promise<boolean> {
  const result = await showDialog({
    title,
    body: message,
    buttons: [
      Dialog.cancelButton({ label: dismiss }),
      warn
        ? Dialog.warnButton({ label: accept })
        : Dialog.okButton({ label: accept })
    ]
  });
  return result.button.accept;
}

/** Ask for some text fields with a confirmation; null when cancelled. */
export async function askFields(
  title: string,
  message: string,
  fields: { label: string; value?: string; placeholder?: string }[],
  accept: string
): Promise<string[] | null> {
  const result = await showDialog({
    title,
    body: new FieldsBody(message, fields),
    buttons: [Dialog.cancelButton(), Dialog.okButton({ label: accept })]
  });
  return result.button.accept ? (result.value ?? null) : null;
}
