import { defineConfig } from "vite";

// `npm run dev` proxies the API to a `quarry serve` on the default port.
export default defineConfig({
  build: { outDir: "dist", emptyOutDir: true, target: "es2022" },
  server: {
    proxy: { "/api": "http://127.0.0.1:7311", "/v1": "http://127.0.0.1:7311" },
  },
});
