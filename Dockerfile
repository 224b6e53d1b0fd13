# Kiln registration server. Mirrors scripts/serve: configuration by environment,
# the registry in /data, the factory PKI mounted read-only at /pki.
#   docker build -t kiln .
#   docker run -p 8000:8000 -v kiln-data:/data -v /srv/kiln/pki:/pki:ro kiln
# With no PKI mounted and KILN_DEV_PKI=1, a development PKI is created in /data/pki.

FROM node:20-bookworm-slim AS build
WORKDIR /app
RUN apt-get update && apt-get install -y --no-install-recommends python3 make g++ && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
COPY scripts ./scripts
COPY native ./native
COPY pki ./pki
COPY server ./server
COPY cli ./cli
COPY bin ./bin
COPY recipes ./recipes
COPY meta-overrides ./meta-overrides
RUN npm ci --no-audit --no-fund && npm prune --omit=dev

FROM node:20-bookworm-slim
WORKDIR /app
COPY --from=build /app/package.json /app/package-lock.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY --from=build /app/bin ./bin
COPY --from=build /app/server/db/sqlite/migrations ./server/db/sqlite/migrations
COPY scripts/docker-entrypoint ./scripts/docker-entrypoint
RUN mkdir -p /data /pki && chown node:node /data
ENV KILN_PKI_DIR=/pki \
    KILN_DB=sqlite:/data/kiln.db \
    KILN_LISTEN=0.0.0.0:8000 \
    NODE_ENV=production
VOLUME ["/data", "/pki"]
USER node
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:8000/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
ENTRYPOINT ["/app/scripts/docker-entrypoint"]
CMD ["serve"]
