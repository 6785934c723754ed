// The build of the admin console. `cloudpacs serve` serves web/dist at "/"
// beside the OHIF viewer, which scripts/viewer.sh installs in web/viewer:
// the build writes only into dist/ (and empties only dist/), and has no
// public/ folder to copy, so nothing here touches web/viewer.
import { defineConfig } from 'vite';
import vue from '@vitejs/plugin-vue';

export default defineConfig({
  plugins: [vue()],
  base: '/',
  publicDir: false,
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2020',
    sourcemap: false,
    reportCompressedSize: false,
    // Two pages: the console (index.html) and the patient's cloud film
    // (film.html, src/patient/), which cloudpacs serves at /film/<token>.
    rollupOptions: {
      input: { main: 'index.html', film: 'film.html', kiosk: 'kiosk.html' },
    },
  },
  server: {
    // `npm run dev` against a running `cloudpacs serve` on its default port.
    proxy: {
      '/api': 'http://127.0.0.1:8042',
      '/film/api': 'http://127.0.0.1:8042',
    },
  },
});
