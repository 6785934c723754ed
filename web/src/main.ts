// The admin console of cloudpacs: the entry point.
import { createApp } from 'vue';

import App from './App.vue';
import { setApiHooks } from './api';
import { router, signInRoute } from './router';
import { clearSession, session } from './session';
import './style.css';

setApiHooks({
  onUnauthorized: () => {
    // The session ended (expired, signed out elsewhere, password reset).
    clearSession();
    const current = router.currentRoute.value;
    if (current.name !== 'signin')
      void router.push(signInRoute(current));
  },
  onService: (state, message) => {
    session.service = state;
    session.serviceMessage = message;
  },
});

createApp(App).use(router).mount('#app');
