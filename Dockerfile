# Kiln registration server. Mirrors scripts/serve; the full image (volumes,
# health check, non-root) is completed by the packaging issue.
FROM node:20-bookworm-slim AS build
WORKDIR /app
RUN apt-get update && apt-get install -y --no-install-recommends python3 make g++ && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
COPY scripts ./scripts
COPY pki ./pki
COPY server ./server
COPY cli ./cli
COPY bin ./bin
RUN npm ci --no-audit --no-fund && npm prune --omit=dev

FROM node:20-bookworm-slim
WORKDIR /app
COPY --from=build /app /app
USER node
EXPOSE 8000
ENTRYPOINT ["/app/bin/kilnctl", "serve"]
CMD ["--pki-dir", "/data/pki", "--db", "sqlite:/data/kiln.db", "--listen", "0.0.0.0:8000"]
