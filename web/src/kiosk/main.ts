// The self-service print kiosk (kiosk.html, served at /kiosk.html): the third
// entry of the Vite build beside the console and the patient's page.
import { createApp } from 'vue';

import KioskApp from './KioskApp.vue';

createApp(KioskApp).mount('#kiosk');
