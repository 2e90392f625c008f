// Shared DOM helpers: element lookup, element building, the error line.

/** The element with this `id` (every id the UI uses is in index.html). */
export function $<T extends HTMLElement = HTMLElement>(id: string): T {
  return document.getElementById(id) as T;
}

/** A new `tag` element with `props` assigned and `children` appended. */
export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: Partial<HTMLElementTagNameMap[K]> = {},
  ...children: (Node | string)[]
): HTMLElementTagNameMap[K] {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
}

/** Show `message` in the error line under the tabs; an empty message hides it. */
export function showError(message: string) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}
