// The pages, by hash (#/users): `cloudpacs serve` then needs no route of
// its own for them, and a reload anywhere lands on index.html. Each page
// names the permissions that show it; without one it goes home.
import { createRouter, createWebHashHistory, type RouteLocationNormalized } from 'vue-router';

import type { Permission } from './api';
import { can, loadMe, probe, session } from './session';
import SignIn from './views/SignIn.vue';
import Home from './views/Home.vue';
import Institutions from './views/Institutions.vue';
import Users from './views/Users.vue';
import UserDetail from './views/UserDetail.vue';
import Tokens from './views/Tokens.vue';
import Aes from './views/Aes.vue';
import Audit from './views/Audit.vue';
import Account from './views/Account.vue';

declare module 'vue-router' {
  interface RouteMeta {
    public?: boolean;
    perms?: Permission[];
  }
}

export const USER_PERMS: Permission[] = [
  'users.manage', 'roles.grant', 'admin_roles.grant', 'accounts.unlock',
  'qualifications.manage', 'contracts.manage',
];

export const router = createRouter({
  history: createWebHashHistory(),
  routes: [
    { path: '/signin', name: 'signin', component: SignIn, meta: { public: true } },
    { path: '/', name: 'home', component: Home },
    {
      path: '/institutions', name: 'institutions', component: Institutions,
      meta: { perms: ['institutions.manage'] },
    },
    { path: '/users', name: 'users', component: Users, meta: { perms: USER_PERMS } },
    {
      path: '/users/:id(\\d+)', name: 'user', component: UserDetail, props: true,
      meta: { perms: USER_PERMS },
    },
    { path: '/tokens', name: 'tokens', component: Tokens, meta: { perms: ['tokens.manage'] } },
    { path: '/aes', name: 'aes', component: Aes, meta: { perms: ['aes.manage'] } },
    { path: '/audit', name: 'audit', component: Audit, meta: { perms: ['audit.read'] } },
    { path: '/account', name: 'account', component: Account },
    { path: '/:rest(.*)*', redirect: '/' },
  ],
});

export function signInRoute(to?: RouteLocationNormalized) {
  const next = to && to.name !== 'signin' ? to.fullPath : undefined;
  return { name: 'signin', query: next && next !== '/' ? { next } : {} };
}

router.beforeEach(async (to) => {
  if (to.meta.public)
    return true;
  if (!session.me) {
    try {
      await loadMe(true);
    } catch {
      probe.failedAt = Date.now();
      return signInRoute(to);
    }
  }
  if (session.me?.enrol_required)
    return { name: 'signin', query: { enrol: '1' } };
  if (to.meta.perms && !can(...to.meta.perms))
    return { name: 'home' };
  return true;
});
