// What the console knows about the signed-in user and the service: /api/me
// (with its permissions), the institutions the user may see (for names and
// pickers), and whether the API answered 503 or not at all.
import { reactive } from 'vue';

import {
  ADMIN_ROLES, CLINICAL_ROLES, api, type Institution, type Me, type Permission, type Role,
  type ServiceState,
} from './api';

export const session = reactive({
  me: null as Me | null,
  institutions: [] as Institution[],
  service: 'ok' as ServiceState,
  serviceMessage: '',
});

export function can(...perms: Permission[]): boolean {
  const have = session.me?.permissions ?? [];
  return perms.some((p) => have.includes(p));
}

// When /api/me last answered "not signed in" (ms), so that the sign-in
// page does not ask again right after the router did.
export const probe = { failedAt: 0 };

export async function loadMe(noAuthRedirect = false): Promise<Me> {
  const me = await api.me(noAuthRedirect);
  session.me = me;
  if (!me.enrol_required)
    await loadInstitutions();
  return me;
}

export async function loadInstitutions(): Promise<void> {
  try {
    session.institutions = await api.institutions();
  } catch {
    // Some roles (the audit admin) may list none: names fall back to ids.
    session.institutions = session.me?.institution ? [session.me.institution] : [];
  }
}

export function clearSession(): void {
  session.me = null;
  session.institutions = [];
}

export function institutionName(id: number | null | undefined): string {
  if (!id)
    return '';
  const inst = session.institutions.find((i) => i.id === id);
  if (inst)
    return inst.name || inst.code;
  if (session.me?.institution?.id === id)
    return session.me.institution.name;
  return `#${id}`;
}

// The roles the signed-in user may hand out: clinical ones with roles.grant,
// the three separated admin roles with admin_roles.grant. The API decides
// in the end (and refuses any grant to oneself); this only trims the offer.
export function grantableRoles(): Role[] {
  const out: Role[] = [];
  if (can('roles.grant'))
    out.push(...CLINICAL_ROLES);
  if (can('admin_roles.grant'))
    out.push(...ADMIN_ROLES);
  return out;
}

// Institutions in tree order with their depth, for trees and pickers.
export interface TreeRow {
  inst: Institution;
  depth: number;
}

export function institutionTree(list: Institution[]): TreeRow[] {
  const byParent = new Map<number, Institution[]>();
  const ids = new Set(list.map((i) => i.id));
  for (const inst of list) {
    // A parent the caller may not see makes a root of its child.
    const parent = ids.has(inst.parent_id) ? inst.parent_id : 0;
    const kids = byParent.get(parent) ?? [];
    kids.push(inst);
    byParent.set(parent, kids);
  }
  const out: TreeRow[] = [];
  const walk = (parent: number, depth: number) => {
    const kids = (byParent.get(parent) ?? [])
      .slice().sort((a, b) => a.name.localeCompare(b.name) || a.id - b.id);
    for (const inst of kids) {
      out.push({ inst, depth });
      if (depth < 32)
        walk(inst.id, depth + 1);
    }
  };
  walk(0, 0);
  return out;
}
