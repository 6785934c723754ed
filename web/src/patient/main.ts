// The patient's cloud film page (film.html, served at /film/<token>): the
// second entry of the Vite build beside the admin console.
import { createApp } from 'vue';

import FilmApp from './FilmApp.vue';

createApp(FilmApp).mount('#film');
