// The patient's page's requests: everything under /film/api/<token>/ with
// the share session's cookie (HttpOnly; the browser sends it by itself).
export interface FilmStudy {
  study_uid: string;
  date: string;
  description: string;
  modalities: string;
  patient_name: string;
  sex: string;
}

export interface FilmLink {
  id: number;
  scope: string;
  expires: string;
  deidentify: boolean;
  factor: string;
  can_share: boolean;
  shared: boolean;
  study: FilmStudy | null;
}

export interface FilmReport {
  findings: string;
  impression: string;
  critical: boolean;
  doctor: string;
  reviewer: string;
  written: string;
  reviewed: string;
  released: string;
  signature_valid: boolean;
  modality: string;
  body_part: string;
}

export interface FilmSeries {
  series_uid: string;
  modality: string;
  description: string;
  body_part: string;
  number: number;
  instance_count: number;
  instances: string[];
  thumbnail: string;
}

export interface FilmView {
  time: string;
  event: string;
  by: string;
  link_id: number;
}

export interface FilmChild {
  id: number;
  url: string;
  expires: string;
  deidentify: boolean;
}

// A link the patient made (GET /shares).
export interface FilmShare {
  id: number;
  created: string;
  expires: string;
  deidentify: boolean;
  revoked: boolean;
  revoked_at: string | null;
  views: number;
}

export interface Answer<T> {
  status: number;
  body: T | null;
  retryAfter: number;
}

// The link's token: the last segment of /film/<token>.
export function filmToken(): string {
  const parts = window.location.pathname.split('/').filter((p) => p !== '');
  return parts.length >= 2 && parts[0] === 'film' ? decodeURIComponent(parts[1]) : '';
}

export function filmUrl(token: string, rest: string): string {
  return `/film/api/${encodeURIComponent(token)}${rest}`;
}

export async function filmCall<T>(token: string, method: string, rest: string,
  body?: unknown): Promise<Answer<T>> {
  const init: RequestInit = { method, credentials: 'same-origin', headers: {} };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers = { 'Content-Type': 'application/json' };
  }
  let resp: Response;
  try {
    resp = await fetch(filmUrl(token, rest), init);
  } catch {
    return { status: 0, body: null, retryAfter: 0 };
  }
  let parsed: T | null = null;
  try {
    parsed = resp.status === 204 ? null : (await resp.json()) as T;
  } catch {
    parsed = null;
  }
  const retry = Number(resp.headers.get('Retry-After') ?? '0');
  return { status: resp.status, body: parsed, retryAfter: Number.isFinite(retry) ? retry : 0 };
}
