import { LabIcon } from '@jupyterlab/ui-components';

import opxSvgStr from '../style/opx.svg';

/** The opx mark: a pulse in a ring (models in production, watched). */
export const opxIcon = new LabIcon({
  name: 'jupyter-opx:opx',
  svgstr: opxSvgStr
});
