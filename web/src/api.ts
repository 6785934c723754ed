// The client of the cloudpacs REST API (docs/api.md). Every request goes
// with the session cookie (credentials 'same-origin') and the header
// X-Requested-With: cloudpacs, which the API asks of every change that
// authenticates by cookie. A 401 outside sign-in sends the user back to the
// sign-in page (through onUnauthorized); a 503 raises the "service away"
// banner until a later request gets through.

export type Permission =
  | 'studies.read' | 'studies.store' | 'studies.delete'
  | 'institutions.manage' | 'users.manage' | 'roles.grant' | 'admin_roles.grant'
  | 'accounts.unlock' | 'qualifications.manage' | 'contracts.manage'
  | 'tokens.manage' | 'aes.manage' | 'audit.read' | 'metrics.read';

export type InstitutionKind = 'centre' | 'hospital' | 'clinic';

export interface Institution {
  id: number;
  parent_id: number;
  kind: InstitutionKind;
  code: string;
  name: string;
  disabled: boolean;
}

export const CLINICAL_ROLES = [
  'institution_admin', 'technician', 'radiologist', 'reviewer',
] as const;
export const ADMIN_ROLES = ['system_admin', 'security_admin', 'audit_admin'] as const;
export type Role = (typeof CLINICAL_ROLES)[number] | (typeof ADMIN_ROLES)[number];

export interface User {
  id: number;
  username: string;
  display_name: string;
  institution_id: number;
  roles: Role[];
  title: number;
  may_self_approve: boolean;
  disabled: boolean;
  totp_enabled: boolean;
  created: string;
}

export interface Me extends User {
  permissions: Permission[];
  institution: Institution | null;
  // A session that must enrol a second factor before anything else.
  enrol_required?: boolean;
  kind?: 'user' | 'token' | 'ae' | 'service';
}

export interface SessionAnswer {
  token: string;
  expires: string;
  user: User;
  enrol_required: boolean;
}

export interface Qualification {
  modality: string;
  body_part: string;
}

export interface Contract {
  id: number;
  user_id: number;
  requesting_id: number;
  reading_id: number;
  start_date: string;
  end_date: string;
  modalities: string[];
  body_parts: string[];
  revoked: boolean;
}

export interface ApiToken {
  id: number;
  name: string;
  institution_id: number;
  roles: Role[];
  created: string;
  expires: string | null;
  revoked: boolean;
  token?: string;
}

export interface Ae {
  title: string;
  institution_id: number;
  host: string;
  port: number;
  allow: string;
}

export interface AuditRecord {
  seq: number;
  time: string;
  event: string;
  action: string;
  outcome: number | string;
  type: string;
  user_id: number;
  actor: string;
  actor_roles: string;
  peer: string;
  object_kind: string;
  object_id: string;
  patient_id: string;
  institution_id: number;
  detail?: unknown;
}

export interface AuditPage {
  records: AuditRecord[];
  next_before: number | null;
}

export interface AuditVerify {
  records: number;
  intact: boolean;
  first_bad_seq: number | null;
  problem: string | null;
}

export interface Health {
  status: 'ok' | 'degraded';
  redis: string;
  database: string;
}

// --- reading orders and reports (docs/api.md, "Orders and reports") -----

export type OrderState =
  | 'submitted' | 'pooled' | 'offered' | 'claimed' | 'reported' | 'returned'
  | 'approved' | 'released' | 'cancelled';
export const ORDER_STATES: OrderState[] = [
  'submitted', 'pooled', 'offered', 'claimed', 'reported', 'returned', 'approved', 'released',
  'cancelled',
];
export const OPEN_STATES: OrderState[] = [
  'submitted', 'pooled', 'offered', 'claimed', 'reported', 'returned', 'approved',
];
export type Priority = 'routine' | 'urgent';

// One line of an order's history.
export interface OrderEvent {
  seq: number;
  time: string;
  from: OrderState | '';
  to: OrderState | '';
  event: string;
  actor_id: number | null;
  actor?: string;
  reason: string;
}

// struct order (src/consult/order.h), times as ISO 8601 UTC ("" or null
// when not yet). The *_name fields are what the API may add for display.
export interface Order {
  id: number;
  version: number;
  state: OrderState;
  priority: Priority;
  study_uid: string;
  patient_id: string;
  issuer?: string;
  accession: string;
  modality: string;
  body_part: string;
  clinical_notes: string;
  weight: number;
  requesting_id: number;
  requesting_name?: string;
  // Display names the API adds beside the ids (null while there is none).
  requesting_institution_name?: string | null;
  reading_institution_name?: string | null;
  // When an offer's answer window ends (offered orders only).
  offer_expires?: string | null;
  // The ids below are null until there is one.
  requested_by?: number | null;
  wanted_doctor_id?: number | null;
  reading_id?: number | null;
  doctor_id: number | null;
  doctor_name?: string | null;
  reviewer_id: number | null;
  reviewer_name?: string | null;
  created: string | null;
  pooled?: string | null;
  deadline: string | null;
  claimed?: string | null;
  opened?: string | null;
  reported?: string | null;
  approved?: string | null;
  released?: string | null;
  returns: number;
  rejections: number;
  history?: OrderEvent[];
}

// One doctor on the fallback roster (GET /api/duty).
export interface DutyEntry {
  doctor_id: number;
  doctor_name: string | null;
  until: string;
}

export type ReportStatus = 'draft' | 'submitted' | 'rejected' | 'approved' | 'released';

export interface ReportDraft {
  findings: string;
  impression: string;
  critical: boolean;
  // When the draft was last saved (absent for an empty one).
  written?: string | null;
}

// One version of a report (struct report_version, src/consult/report.h).
export interface ReportVersion {
  order_id: number;
  version: number;
  status: ReportStatus;
  author_id: number;
  author_name?: string | null;
  reviewer_id: number | null;
  reviewer_name?: string | null;
  written: string | null;
  reviewed: string | null;
  released: string | null;
  critical: boolean;
  critical_ack_by: number | null;
  critical_ack?: string | null;
  reason: string;
  findings: string;
  impression: string;
  signature?: string;
  signature_valid?: boolean;
}

export interface ReportTemplate {
  id: number;
  modality: string;
  body_part: string;
  name: string;
  findings: string;
  impression: string;
}

export interface StatsRow {
  // The doctor's or the institution's id (or key) and name.
  id?: number;
  key?: number;
  name?: string;
  orders?: number;
  reported?: number;
  released?: number;
  overdue?: number;
  units?: number;
  mean_minutes?: number;
  [key: string]: unknown;
}

// A study of the QIDO-RS answer (PS3.18 10.6), the attributes the request
// form shows.
export interface StudyHit {
  study_uid: string;
  patient_id: string;
  patient_name: string;
  accession: string;
  date: string;
  modalities: string[];
  description: string;
}

type DicomJson = Record<string, { vr: string; Value?: unknown[] }>;

function dicomString(ds: DicomJson, tag: string): string {
  const v = ds[tag]?.Value?.[0];
  if (v === undefined || v === null)
    return '';
  if (typeof v === 'object')
    return String((v as { Alphabetic?: string }).Alphabetic ?? '');
  return String(v);
}

function studyHit(ds: DicomJson): StudyHit {
  return {
    study_uid: dicomString(ds, '0020000D'),
    patient_id: dicomString(ds, '00100020'),
    patient_name: dicomString(ds, '00100010'),
    accession: dicomString(ds, '00080050'),
    date: dicomString(ds, '00080020'),
    modalities: (ds['00080061']?.Value ?? []).map((m) => String(m)),
    description: dicomString(ds, '00081030'),
  };
}

// What the list answers of /api/orders and /api/pool may come wrapped in.
function orderList(data: Order[] | { orders?: Order[] } | null): Order[] {
  if (Array.isArray(data))
    return data;
  return data?.orders ?? [];
}

// GET /api/orders answers oldest first, a page at a time (next_after); the
// lists read this many pages of ORDER_PAGE at most.
const ORDER_PAGE = 500;
const ORDER_PAGES_MAX = 8;

type OrderQuery = { state?: string; mine?: 1; institution?: number; study?: string };

async function allOrders(query: OrderQuery): Promise<Order[]> {
  const out: Order[] = [];
  let after: number | undefined;
  for (let page = 0; page < ORDER_PAGES_MAX; page++) {
    const data = await request<{ orders?: Order[]; next_after?: number | null } | Order[]>(
      'GET', '/api/orders', { query: { ...query, limit: ORDER_PAGE, after } });
    out.push(...orderList(data));
    const next = Array.isArray(data) ? null : data?.next_after ?? null;
    if (!next)
      break;
    after = next;
  }
  return out;
}

// An answer other than 2xx: the API's own message, its status and its
// stable reason word ("mfa_required", "locked", ...).
export class ApiError extends Error {
  readonly status: number;
  readonly reason: string;
  readonly retryAfter: number | null;
  readonly body: unknown;

  constructor(status: number, message: string, reason: string, retryAfter: number | null,
    body: unknown = null) {
    super(message);
    this.body = body;
    this.name = 'ApiError';
    this.status = status;
    this.reason = reason;
    this.retryAfter = retryAfter;
  }
}

// 'ok' after any answer but 503; 'unavailable' for a 503 (Redis or the
// database away), with the API's message; 'unreachable' when no answer came.
export type ServiceState = 'ok' | 'unavailable' | 'unreachable';

type Hooks = {
  onUnauthorized: () => void;
  onService: (state: ServiceState, message: string) => void;
};

const hooks: Hooks = {
  onUnauthorized: () => {},
  onService: () => {},
};

export function setApiHooks(h: Partial<Hooks>): void {
  Object.assign(hooks, h);
}

interface RequestOptions {
  body?: unknown;
  query?: Record<string, string | number | undefined | null>;
  // Sign-in answers 401 by design: it must not send the user "back" there.
  noAuthRedirect?: boolean;
  // The media type asked for (QIDO-RS answers application/dicom+json).
  accept?: string;
}

export function apiUrl(path: string, query?: RequestOptions['query']): string {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(query ?? {})) {
    if (v !== undefined && v !== null && v !== '')
      params.set(k, String(v));
  }
  const qs = params.toString();
  return qs ? `${path}?${qs}` : path;
}

async function request<T>(method: string, path: string, opts: RequestOptions = {}): Promise<T> {
  const headers: Record<string, string> = {
    'X-Requested-With': 'cloudpacs',
    Accept: opts.accept ?? 'application/json',
  };
  let body: string | undefined;
  if (opts.body !== undefined) {
    headers['Content-Type'] = 'application/json';
    body = JSON.stringify(opts.body);
  }

  let res: Response;
  try {
    res = await fetch(apiUrl(path, opts.query), {
      method, headers, body, credentials: 'same-origin', cache: 'no-store',
    });
  } catch (e) {
    hooks.onService('unreachable', e instanceof Error ? e.message : String(e));
    throw new ApiError(0, e instanceof Error ? e.message : String(e), 'network', null);
  }

  const text = await res.text();
  let data: unknown = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }

  if (res.ok) {
    hooks.onService('ok', '');
    return data as T;
  }

  const err = (data ?? {}) as { error?: string; reason?: string };
  const message = err.error || `${res.status} ${res.statusText}`.trim();
  const retry = res.headers.get('Retry-After');
  const apiErr = new ApiError(res.status, message, err.reason ?? '',
    retry !== null && /^\d+$/.test(retry) ? Number(retry) : null, data);
  hooks.onService(res.status === 503 ? 'unavailable' : 'ok', message);
  if (res.status === 401 && !opts.noAuthRedirect)
    hooks.onUnauthorized();
  return Promise.reject(apiErr);
}

// /api/health answers 503 with the same body when something is away.
async function health(): Promise<Health> {
  try {
    return await request<Health>('GET', '/api/health', { noAuthRedirect: true });
  } catch (e) {
    if (e instanceof ApiError && e.status === 503 && e.body && typeof e.body === 'object')
      return e.body as Health;
    throw e;
  }
}

export const api = {
  // Sessions and the signed-in user.
  signIn: (username: string, password: string, totp?: string) =>
    request<SessionAnswer>('POST', '/api/session', {
      body: totp ? { username, password, totp } : { username, password },
      noAuthRedirect: true,
    }),
  signOut: () => request<void>('DELETE', '/api/session', { noAuthRedirect: true }),
  me: (noAuthRedirect = false) => request<Me>('GET', '/api/me', { noAuthRedirect }),
  changePassword: (old: string, next: string) =>
    request<void>('POST', '/api/me/password', { body: { old, new: next } }),
  totpBegin: () => request<{ secret: string; uri: string }>('POST', '/api/me/totp'),
  totpConfirm: (code: string) =>
    request<void>('POST', '/api/me/totp/confirm', { body: { code } }),
  health,

  // Institutions.
  institutions: () => request<Institution[]>('GET', '/api/institutions'),
  createInstitution: (body: Omit<Institution, 'id' | 'disabled'>) =>
    request<Institution>('POST', '/api/institutions', { body }),
  updateInstitution: (id: number, body: Partial<Omit<Institution, 'id' | 'code'>>) =>
    request<Institution>('PATCH', `/api/institutions/${id}`, { body }),

  // Users.
  users: (institution?: number) =>
    request<User[]>('GET', '/api/users', { query: { institution } }),
  user: (id: number) => request<User>('GET', `/api/users/${id}`),
  createUser: (body: {
    username: string; display_name: string; institution_id: number; password: string;
    roles: Role[]; title?: number; may_self_approve?: boolean;
  }) => request<User>('POST', '/api/users', { body }),
  updateUser: (id: number, body: Partial<Pick<User,
    'display_name' | 'institution_id' | 'title' | 'may_self_approve' | 'disabled'>>) =>
    request<User>('PATCH', `/api/users/${id}`, { body }),
  setRoles: (id: number, roles: Role[]) =>
    request<User>('PUT', `/api/users/${id}/roles`, { body: { roles } }),
  resetPassword: (id: number, password: string) =>
    request<void>('POST', `/api/users/${id}/password`, { body: { password } }),
  unlock: (id: number) => request<void>('POST', `/api/users/${id}/unlock`),
  endSessions: (id: number) => request<void>('DELETE', `/api/users/${id}/sessions`),
  qualifications: (id: number) =>
    request<Qualification[]>('GET', `/api/users/${id}/qualifications`),
  setQualifications: (id: number, list: Qualification[]) =>
    request<Qualification[]>('PUT', `/api/users/${id}/qualifications`, { body: list }),

  // Contracts.
  contracts: (query: { user?: number; institution?: number }) =>
    request<Contract[]>('GET', '/api/contracts', { query }),
  createContract: (body: Omit<Contract, 'id'>) =>
    request<Contract>('POST', '/api/contracts', { body }),
  updateContract: (id: number, body: Partial<Pick<Contract,
    'end_date' | 'modalities' | 'body_parts' | 'revoked'>>) =>
    request<Contract>('PATCH', `/api/contracts/${id}`, { body }),

  // API tokens and application entities.
  tokens: () => request<ApiToken[]>('GET', '/api/tokens'),
  createToken: (body: { name: string; institution_id: number; roles: Role[]; expires?: string }) =>
    request<ApiToken>('POST', '/api/tokens', { body }),
  revokeToken: (id: number) => request<void>('DELETE', `/api/tokens/${id}`),
  aes: () => request<Ae[]>('GET', '/api/aes'),
  putAe: (ae: Ae) => request<Ae>('PUT', `/api/aes/${encodeURIComponent(ae.title)}`, {
    body: { institution_id: ae.institution_id, host: ae.host, port: ae.port, allow: ae.allow },
  }),
  deleteAe: (title: string) =>
    request<void>('DELETE', `/api/aes/${encodeURIComponent(title)}`),

  // The audit trail.
  audit: (query: Record<string, string | number | undefined>) =>
    request<AuditPage>('GET', '/api/audit', { query }),
  auditVerify: () => request<AuditVerify>('GET', '/api/audit/verify'),

  // Reading orders.
  createOrder: (body: {
    study_uid: string; body_part?: string; priority: Priority; clinical_notes: string;
    wanted_doctor_id?: number;
  }) => request<Order>('POST', '/api/orders', { body }),
  orders: allOrders,
  order: (id: number) => request<Order>('GET', `/api/orders/${id}`),
  pool: async () =>
    orderList(await request<Order[] | { orders?: Order[] }>('GET', '/api/pool')),
  presence: () => request<void>('POST', '/api/presence'),
  grab: (id: number) => request<Order>('POST', `/api/orders/${id}/grab`),
  openOrder: (id: number) => request<Order>('POST', `/api/orders/${id}/open`),
  giveBack: (id: number, reason: string) =>
    request<Order>('POST', `/api/orders/${id}/give-back`, { body: { reason } }),
  assign: (id: number, doctorId: number) =>
    request<Order>('POST', `/api/orders/${id}/assign`, { body: { doctor_id: doctorId } }),
  answer: (id: number, accept: boolean, reason: string) =>
    request<Order>('POST', `/api/orders/${id}/answer`, { body: { accept, reason } }),
  cancelOrder: (id: number, reason: string) =>
    request<Order>('POST', `/api/orders/${id}/cancel`, { body: { reason } }),
  setDuty: (doctorId: number, until: string | null) =>
    request<unknown>('PUT', `/api/duty/${doctorId}`, { body: { until } }),
  // The on-duty roster now (GET /api/duty).
  duty: () => request<{ duty: DutyEntry[] }>('GET', '/api/duty').then((r) => r.duty),

  // Reports.
  draft: (id: number) => request<ReportDraft>('GET', `/api/orders/${id}/report/draft`),
  saveDraft: (id: number, body: ReportDraft) =>
    request<ReportDraft>('PUT', `/api/orders/${id}/report/draft`, { body }),
  submitReport: (id: number, selfApprove: boolean) =>
    request<unknown>('POST', `/api/orders/${id}/report/submit`,
      { body: selfApprove ? { self_approve: true } : {} }),
  review: (id: number, approve: boolean, reason: string) =>
    request<unknown>('POST', `/api/orders/${id}/report/review`, { body: { approve, reason } }),
  report: (id: number) => request<ReportVersion>('GET', `/api/orders/${id}/report`),
  reportVersions: async (id: number) => {
    const data = await request<ReportVersion[] | { versions?: ReportVersion[] }>('GET',
      `/api/orders/${id}/report/versions`);
    return Array.isArray(data) ? data : data?.versions ?? [];
  },
  ackCritical: (id: number) => request<unknown>('POST', `/api/orders/${id}/report/ack-critical`),
  templates: async (modality: string, bodyPart: string) => {
    const data = await request<ReportTemplate[] | { templates?: ReportTemplate[] }>('GET',
      '/api/templates', { query: { modality, body_part: bodyPart } });
    return Array.isArray(data) ? data : data?.templates ?? [];
  },
  stats: async (query: { from?: string; to?: string; group: 'doctor' | 'institution' }) => {
    const data = await request<StatsRow[] | { rows?: StatsRow[] }>('GET', '/api/stats',
      { query });
    return Array.isArray(data) ? data : data?.rows ?? [];
  },

  // Studies of the caller's institution (QIDO-RS).
  studies: async (query: { PatientID?: string; AccessionNumber?: string; limit: number }) => {
    const data = await request<DicomJson[] | null>('GET', '/dicom-web/studies',
      { query: { ...query, includefield: '00081030' }, accept: 'application/dicom+json' });
    return (data ?? []).map(studyHit);
  },
};

// GET /api/intake (docs/api.md, "Intake and export").
export interface IntakeSource {
  name: string;
  url?: string;
  kind?: string;
  after?: string;
  state: string;
  retry_in_seconds?: number;
  last_error: string | null;
  last_error_time?: string | null;
  last_success: string | null;
  seen: number;
  stored: number;
  duplicates: number;
  failed: number;
  skipped: number;
}

export interface IntakeJob {
  study: string;
  order: number | null;
  state: string;
  attempts: number;
  last_error: string | null;
  last_error_time: string | null;
  next_try: string | null;
}

export interface IntakeExport {
  name: string;
  target?: string;
  on?: string;
  what?: string;
  state?: string;
  last_error?: string | null;
  files_written?: number;
  pdfs_written?: number;
  pending: number;
  done: number;
  retrying: number;
  jobs: IntakeJob[];
}

export interface IntakeStatus {
  sources: IntakeSource[];
  exports: IntakeExport[];
}

export const intakeApi = {
  status: () => request<IntakeStatus>('GET', '/api/intake'),
};

// The message of any error, for a form's error line.
export function errorText(e: unknown): string {
  if (e instanceof Error)
    return e.message;
  return String(e);
}
