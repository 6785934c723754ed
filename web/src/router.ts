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
import Pool from './views/Pool.vue';
import MyOrders from './views/MyOrders.vue';
import Reading from './views/Reading.vue';
import ReviewQueue from './views/ReviewQueue.vue';
import ReviewOrder from './views/ReviewOrder.vue';
import RequestRead from './views/RequestRead.vue';
import ClinicOrders from './views/ClinicOrders.vue';
import OrderView from './views/OrderView.vue';
import Board from './views/Board.vue';
import Stats from './views/Stats.vue';
import Intake from './views/Intake.vue';
import { inArea, type Area } from './workbench';

declare module 'vue-router' {
  interface RouteMeta {
    public?: boolean;
    perms?: Permission[];
    // The reading workbench's pages: shown by role and institution kind.
    area?: Area;
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
    { path: '/intake', name: 'intake', component: Intake, meta: { perms: ['metrics.read'] } },
    { path: '/account', name: 'account', component: Account },
    // The reading workbench.
    { path: '/pool', name: 'pool', component: Pool, meta: { area: 'doctor' } },
    { path: '/mine', name: 'mine', component: MyOrders, meta: { area: 'doctor' } },
    {
      path: '/read/:id(\\d+)', name: 'read', component: Reading, props: true,
      meta: { area: 'doctor' },
    },
    { path: '/review', name: 'review', component: ReviewQueue, meta: { area: 'reviewer' } },
    {
      path: '/review/:id(\\d+)', name: 'review-order', component: ReviewOrder, props: true,
      meta: { area: 'reviewer' },
    },
    { path: '/request', name: 'request', component: RequestRead, meta: { area: 'clinic' } },
    { path: '/orders', name: 'orders', component: ClinicOrders, meta: { area: 'clinic' } },
    {
      path: '/orders/:id(\\d+)', name: 'order', component: OrderView, props: true,
      meta: { area: 'clinic' },
    },
    { path: '/board', name: 'board', component: Board, meta: { area: 'centre' } },
    { path: '/stats', name: 'stats', component: Stats, meta: { area: 'centre' } },
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
  if (to.meta.area && !inArea(to.meta.area))
    return { name: 'home' };
  return true;
});
