// The tab bar: one tab per screen; arrow keys move between them.

import { $ } from "./dom";

/** The screens in tab order; each has a `tab-<name>` button and a `<name>` panel. */
export const screens = ["library", "search", "ask", "extract", "settings"] as const;
export type Screen = (typeof screens)[number];

/** The field each screen focuses when it is shown by a click. */
const firstField: Partial<Record<Screen, string>> = { library: "folder", search: "query", ask: "question", extract: "extract-folder" };

export interface Tabs {
  /** Show screen `name`; with `focus`, focus its tab (arrow keys), else its first field. */
  select(name: Screen, focus?: boolean): void;
}

/**
 * Wire the tabs' clicks and arrow keys. `onSelect` runs each time a screen is
 * shown, after the panels switch and before focus moves.
 */
export function initTabs(onSelect: (name: Screen) => void): Tabs {
  function select(name: Screen, focus = false) {
    for (const t of screens) {
      const tab = $(`tab-${t}`);
      const on = t === name;
      tab.setAttribute("aria-selected", String(on));
      tab.tabIndex = on ? 0 : -1;
      $(t).hidden = !on;
      if (on && focus) tab.focus();
    }
    onSelect(name);
    const first = firstField[name];
    if (first && !focus) $(first).focus();
  }
  screens.forEach((t, i) => {
    const tab = $(`tab-${t}`);
    tab.addEventListener("click", () => select(t));
    tab.addEventListener("keydown", (e) => {
      const step = e.key === "ArrowRight" ? 1 : e.key === "ArrowLeft" ? -1 : 0;
      if (step) select(screens[(i + step + screens.length) % screens.length], true);
    });
  });
  return { select };
}
