// The kiosk's requests: /api/kiosk/... with the kiosk's API token (kept in
// this browser's localStorage, entered once by staff) as the bearer, and
// the patient's kiosk session in X-Kiosk-Session.
export interface KioskItem {
  order_id: number;
  study_date: string;
  modality: string;
  body_part: string;
  report: boolean;
  film_pages: number;
  printed: number;
}

export interface KioskIdentified {
  session: string;
  expires: string;
  items: KioskItem[];
}

export interface KioskAnswer<T> {
  status: number;
  body: T | null;
  retryAfter: number;
}

const TOKEN_KEY = 'cloudpacs.kiosk.token';

export function kioskToken(): string {
  try {
    return window.localStorage.getItem(TOKEN_KEY) ?? '';
  } catch {
    return '';
  }
}

export function setKioskToken(token: string): void {
  try {
    if (token)
      window.localStorage.setItem(TOKEN_KEY, token);
    else
      window.localStorage.removeItem(TOKEN_KEY);
  } catch {
    // Storage refused: the kiosk asks again next time.
  }
}

function headers(session: string, json: boolean): Record<string, string> {
  const h: Record<string, string> = { Authorization: `Bearer ${kioskToken()}` };
  if (session)
    h['X-Kiosk-Session'] = session;
  if (json)
    h['Content-Type'] = 'application/json';
  return h;
}

export async function kioskCall<T>(method: string, path: string, session = '',
  body?: unknown): Promise<KioskAnswer<T>> {
  let resp: Response;
  try {
    resp = await fetch(`/api/kiosk${path}`, {
      method, credentials: 'omit', headers: headers(session, body !== undefined),
      body: body === undefined ? undefined : JSON.stringify(body),
    });
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

// The PDF of an item as a Blob; null when there is none.
export async function kioskPdf(session: string, orderId: number,
  what: 'report' | 'film'): Promise<Blob | null> {
  try {
    const resp = await fetch(`/api/kiosk/items/${orderId}/${what}.pdf`,
      { credentials: 'omit', headers: headers(session, false) });
    return resp.status === 200 ? await resp.blob() : null;
  } catch {
    return null;
  }
}

// Pages of a PDF: its /Type /Page objects (a report is a page or two).
export async function pdfPages(pdf: Blob): Promise<number> {
  const text = new TextDecoder('latin1').decode(await pdf.arrayBuffer());
  const n = (text.match(/\/Type\s*\/Page(?![s\w])/g) ?? []).length;
  return Math.min(Math.max(n, 1), 200);
}

// The share token in what the scanner typed: the QR code's URL or the token itself.
export function tokenFromScan(scan: string): string {
  const m = /(cf_[A-Za-z0-9_-]{43})/.exec(scan.trim());
  return m ? m[1] : '';
}
