// A small message catalogue of our own (no i18n library): zh-CN by default,
// English on request, the choice kept in localStorage. Every string the
// console shows comes from the catalogues in messages/; en.ts must carry
// every key of zh-CN.ts (the type checker sees to it).
import { ref } from 'vue';

import { zhCN, type MessageKey } from './messages/zh-CN';
import { en } from './messages/en';

export type Locale = 'zh-CN' | 'en';
export type { MessageKey };

export const LOCALES: { code: Locale; label: string }[] = [
  { code: 'zh-CN', label: '中文' },
  { code: 'en', label: 'English' },
];

const STORAGE_KEY = 'cloudpacs.locale';
const catalogues: Record<Locale, Record<MessageKey, string>> = { 'zh-CN': zhCN, en };

function storedLocale(): Locale {
  try {
    const v = window.localStorage.getItem(STORAGE_KEY);
    if (v === 'en' || v === 'zh-CN')
      return v;
  } catch {
    // Storage refused (private mode, policy): the default it is.
  }
  return 'zh-CN';
}

export const locale = ref<Locale>(storedLocale());

function applyLocale(l: Locale): void {
  document.documentElement.lang = l;
  document.title = catalogues[l]['app.title'];
}

applyLocale(locale.value);

export function setLocale(l: Locale): void {
  locale.value = l;
  try {
    window.localStorage.setItem(STORAGE_KEY, l);
  } catch {
    // Not remembered, still switched.
  }
  applyLocale(l);
}

// The message for key, with {name} placeholders filled from params.
export function t(key: MessageKey, params?: Record<string, string | number>): string {
  const text = catalogues[locale.value][key] ?? key;
  if (!params)
    return text;
  return text.replace(/\{(\w+)\}/g, (m, name: string) =>
    name in params ? String(params[name]) : m);
}

// The message for a key built from an API value ("state.pooled"), or the
// fallback when the catalogue has no such key (a value added later).
export function tOr(key: string, fallback: string): string {
  const cat = catalogues[locale.value] as Record<string, string>;
  return key in cat ? cat[key] : fallback;
}

// A date-time from the API (ISO 8601 UTC) in the reader's locale and zone.
export function formatTime(iso: string | null | undefined): string {
  if (!iso)
    return '';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime()))
    return iso;
  return d.toLocaleString(locale.value, { hour12: false });
}

// "YYYYMMDD" as "YYYY-MM-DD" for reading ("" stays "").
export function formatDate(d: string | null | undefined): string {
  if (!d)
    return '';
  return /^\d{8}$/.test(d) ? `${d.slice(0, 4)}-${d.slice(4, 6)}-${d.slice(6, 8)}` : d;
}
