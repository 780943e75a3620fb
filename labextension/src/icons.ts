import { LabIcon } from '@jupyterlab/ui-components';

/** A rack of three servers; `jp-icon3` makes it follow the theme. */
const SVG = `<svg xmlns="http://www.w3.org/2000/svg" width="16" viewBox="0 0 24 24">
  <g class="jp-icon3" fill="#616161">
    <path d="M4 3h16a1 1 0 0 1 1 1v4a1 1 0 0 1-1 1H4a1 1 0 0 1-1-1V4a1 1 0 0 1 1-1zm1 2v2h10V5H5zm12 0v2h2V5h-2z"/>
    <path d="M4 10h16a1 1 0 0 1 1 1v2a1 1 0 0 1-1 1H4a1 1 0 0 1-1-1v-2a1 1 0 0 1 1-1zm1 1.5v1h10v-1H5zm12 0v1h2v-1h-2z"/>
    <path d="M4 15h16a1 1 0 0 1 1 1v4a1 1 0 0 1-1 1H4a1 1 0 0 1-1-1v-4a1 1 0 0 1 1-1zm1 2v2h10v-2H5zm12 0v2h2v-2h-2z"/>
  </g>
</svg>`;

export const hpcIcon = new LabIcon({ name: 'hpcbridge:hpc', svgstr: SVG });
