// Light or dark: the operating system's choice (prefers-color-scheme) until the user picks one,
// which is remembered in localStorage.
export type Theme = 'light' | 'dark';
const KEY = 'lasect.theme';

export function chosenTheme(): Theme | null {
  const t = localStorage.getItem(KEY);
  return t === 'light' || t === 'dark' ? t : null;
}

export function effectiveTheme(): Theme {
  return chosenTheme() ?? (matchMedia('(prefers-color-scheme: dark)').matches ? 'dark' : 'light');
}

export function applyTheme(t: Theme | null) {
  if (t) {
    localStorage.setItem(KEY, t);
    document.documentElement.dataset.theme = t;
  } else {
    localStorage.removeItem(KEY);
    delete document.documentElement.dataset.theme;
  }
}
