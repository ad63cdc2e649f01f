/** The frame of one chart panel in the bench SVGs: title, axes, the y maximum and the x extent. */
export function panelFrame(f: {
  title: string;
  /** Top of the panel, its width and height, and the plot's padding. */
  oy: number;
  W: number;
  H: number;
  pad: { l: number; r: number };
  /** Pixel y of value 0 and of the maximum. */
  y0: number;
  yMax: number;
  max: number;
  xLabel: string;
}): string[] {
  const { pad, W, H, oy } = f;
  return [
    `<text x="${pad.l}" y="${oy + 14}" font-weight="bold">${f.title}</text>`,
    `<line x1="${pad.l}" y1="${f.y0}" x2="${W - pad.r}" y2="${f.y0}" stroke="#999"/><line x1="${pad.l}" y1="${f.y0}" x2="${pad.l}" y2="${f.yMax}" stroke="#999"/>`,
    `<text x="${pad.l - 4}" y="${f.yMax + 4}" text-anchor="end">${Math.round(f.max).toLocaleString('en')}</text><text x="${pad.l - 4}" y="${f.y0 + 4}" text-anchor="end">0</text>`,
    `<text x="${W - pad.r}" y="${oy + H - 8}" text-anchor="end">${f.xLabel}</text><text x="${pad.l}" y="${oy + H - 8}">0</text>`,
  ];
}
