// The admin API: JSON under /api/v1/ on its own listener (--admin-listen, loopback by
// default), bearer tokens with roles (viewer < operator < admin), every change in the
// audit log. Routes are declared with @hono/zod-openapi: the same definitions validate
// requests and make the OpenAPI document served at /api/v1/openapi.json.
import { createRoute, OpenAPIHono, z, type RouteConfig } from '@hono/zod-openapi';
import type { HttpBindings } from '@hono/node-server';
import type { Context, MiddlewareHandler } from 'hono';
import { createHash, randomUUID, timingSafeEqual } from 'node:crypto';
import { KilnError, toKilnError } from '../../pki/errors.js';
import { VERSION } from '../../pki/version.js';
import type { AdminRole, Store } from '../db/store.js';
import type { Logger } from '../logger.js';
import type { Readiness } from '../readiness.js';
import { logRequest, logServerError, socketAddress } from '../sign-route.js';
import { REVOCATION_REASONS } from '../../pki/crl.js';
import { createAdminService, type AdminApi } from './service.js';

export const ADMIN_TOKEN_PREFIX = 'kiln_adm_';
const RANK: Record<AdminRole, number> = { viewer: 0, operator: 1, admin: 2 };

type Env = { Bindings: HttpBindings; Variables: { requestId: string; api: AdminApi; role: AdminRole; actor: string } };

export interface AdminApiDeps {
  store: Store;
  logger: Logger;
  clock?: () => Date;
  /** /readyz with every check's detail (the public one names the checks only) */
  readiness?: Readiness;
}

const Uuid = z.string().regex(/^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/, 'a device UUID');
const Uuids = z.object({ uuids: z.array(Uuid).min(1).max(10_000) }).openapi('Uuids');
const UuidsReason = z.object({ uuids: z.array(Uuid).min(1).max(10_000), reason: z.string().max(500).default('') }).openapi('UuidsReason');
const Deny = UuidsReason.extend({ revoke: z.boolean().optional() }).openapi('Deny');
const Revoke = z
  .object({
    uuids: z.array(Uuid).max(10_000).optional(),
    serials: z
      .array(z.string().regex(/^[0-9a-fA-F]{1,64}$/, 'a certificate serial (hex)'))
      .max(10_000)
      .optional(),
    reason: z.enum(REVOCATION_REASONS).default('unspecified'),
  })
  .openapi('Revoke');
const PageQuery = z.object({
  limit: z.coerce.number().int().min(1).max(100_000).default(100),
  offset: z.coerce.number().int().min(0).default(0),
});
const LotName = z.object({ name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, 'a lot name') });
const NewLot = z
  .object({
    name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/),
    expiresAt: z.iso.datetime().optional(),
    maxDevices: z.number().int().min(1).optional(),
    hwidPattern: z
      .string()
      .regex(/^[A-Za-z0-9._+*?-]{1,64}$/)
      .optional(),
    group: z
      .string()
      .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/)
      .optional(),
    production: z.enum(['required', 'forbidden', 'any']).optional(),
    approval: z.enum(['auto', 'manual', 'preauthorized']).optional(),
  })
  .openapi('NewLot');
const Preauth = z
  .object({
    rows: z
      .array(
        z.object({
          uuid: Uuid,
          keySha256: z
            .string()
            .regex(/^[0-9a-f]{64}$/)
            .nullable()
            .default(null),
          hardwareId: z.string().max(64).nullable().default(null),
          name: z.string().max(128).nullable().default(null),
          lot: z.string().max(64).nullable().default(null),
        }),
      )
      .max(1_000_000),
  })
  .openapi('Preauthorizations');
const Json = z.unknown().openapi('Result');
const ErrorBody = z.object({ error: z.string(), code: z.string() }).openapi('Error');

const json = (description: string) => ({ 200: { content: { 'application/json': { schema: Json } }, description } });
const errors = { 400: { content: { 'application/json': { schema: ErrorBody } }, description: 'bad request' } };

/** Resolves the bearer token to its role; 401 without one, or for an unknown or revoked one. */
function authenticate(deps: AdminApiDeps): MiddlewareHandler<Env> {
  return async function authenticate(c, next) {
    const header = c.req.header('authorization') ?? '';
    const m = /^Bearer\s+(\S+)$/i.exec(header);
    if (!m) throw new KilnError('unauthorized', 'an admin token is required (Authorization: Bearer …)');
    const hash = createHash('sha256').update(m[1], 'utf8').digest('hex');
    const t = await deps.store.adminTokenByHash(hash);
    if (!t || !timingSafeEqual(Buffer.from(t.tokenSha256, 'hex'), Buffer.from(hash, 'hex')) || t.revokedAt)
      throw new KilnError('unauthorized', 'the admin token is not valid');
    c.set('role', t.role);
    c.set('actor', `token:${t.name}`);
    c.set(
      'api',
      createAdminService(deps.store, { name: `token:${t.name}`, address: address(c), requestId: c.get('requestId') }, deps.clock),
    );
    await next();
  };
}

const address = (c: Context<Env>): string => (c.env?.incoming ? socketAddress(c.env.incoming) : 'unknown');

/** The role a route needs; a lower one is 403. */
const role = (needed: AdminRole): MiddlewareHandler<Env> =>
  async function requireRole(c, next) {
    if (RANK[c.get('role')] < RANK[needed]) throw new KilnError('denied', `this needs the ${needed} role (the token has ${c.get('role')})`);
    await next();
  };

/** Every route, with the role it needs: the table the role tests walk. */
export const ROUTES: { method: 'get' | 'post'; path: string; role: AdminRole; summary: string }[] = [];

export function createAdminApi(deps: AdminApiDeps): OpenAPIHono<Env> {
  const app = new OpenAPIHono<Env>({
    defaultHook: (result) => {
      if (!result.success) {
        const issue = result.error.issues[0];
        throw new KilnError('usage', `${issue?.path.join('.') || 'request'}: ${issue?.message ?? 'invalid'}`);
      }
    },
  });
  app.openAPIRegistry.registerComponent('securitySchemes', 'bearer', { type: 'http', scheme: 'bearer' });

  app.use(async function requestLog(c, next) {
    const started = performance.now();
    c.set('requestId', randomUUID());
    await next();
    c.header('X-Request-Id', c.get('requestId'));
    logRequest(deps.logger, {
      requestId: c.get('requestId'),
      method: c.req.method,
      path: c.req.path,
      status: c.res.status,
      started,
      client: address(c),
      trace: {},
    });
  });
  app.onError((err, c) => {
    const e = toKilnError(err);
    logServerError(deps.logger, c.get('requestId'), e);
    return c.json({ error: e.message.split('\n')[0], code: e.code }, e.httpStatus as 400);
  });
  app.notFound((c) => c.json({ error: `no route for ${c.req.method} ${c.req.path}`, code: 'not_found' }, 404));

  app.doc('/api/v1/openapi.json', {
    openapi: '3.0.3',
    info: {
      title: 'Kiln admin API',
      version: VERSION,
      description: 'Devices, deny-list, lots, approvals, pre-authorization, the upstream outbox and the audit log.',
    },
    security: [{ bearer: [] }],
  });

  const auth = authenticate(deps);
  const define = <R extends ReturnType<typeof createRoute>>(needed: AdminRole, r: R): R => {
    ROUTES.push({ method: r.method as 'get' | 'post', path: r.path, role: needed, summary: r.summary ?? '' });
    return r;
  };
  const route = <M extends 'get' | 'post', P extends string, Req extends NonNullable<RouteConfig['request']>>(
    method: M,
    path: P,
    needed: AdminRole,
    summary: string,
    request: Req = {} as Req,
  ) =>
    define(
      needed,
      createRoute({
        method,
        path: `/api/v1${path}` as `/api/v1${P}`,
        summary,
        description: `Needs the ${needed} role.`,
        request,
        middleware: [auth, role(needed)] as const,
        responses: { ...json(summary), ...errors },
      }),
    );
  const body = <T extends z.ZodType>(schema: T) => ({ body: { content: { 'application/json': { schema } }, required: true as const } });

  ROUTES.length = 0;
  app.openapi(route('get', '/devices', 'viewer', 'registered devices, most recent first', { query: PageQuery }), async (c) =>
    c.json(await c.get('api').listDevices(c.req.valid('query')), 200),
  );
  app.openapi(
    route('get', '/devices/{uuid}', 'viewer', 'one device and its certificates', { params: z.object({ uuid: Uuid }) }),
    async (c) => c.json(await c.get('api').showDevice(c.req.valid('param').uuid), 200),
  );
  app.openapi(
    route('post', '/devices/deny', 'operator', 'deny devices (revoke: also revoke their certificates)', body(Deny)),
    async (c) => {
      const b = c.req.valid('json');
      return c.json(await c.get('api').deny(b.uuids, b.reason, { revoke: b.revoke }), 200);
    },
  );
  app.openapi(route('post', '/devices/revoke', 'operator', 'revoke certificates, by device UUID or serial', body(Revoke)), async (c) => {
    const b = c.req.valid('json');
    return c.json(await c.get('api').revoke({ uuids: b.uuids, serials: b.serials }, b.reason), 200);
  });
  app.openapi(route('post', '/devices/delete', 'operator', 'delete devices and deny their UUIDs', body(UuidsReason)), async (c) => {
    const b = c.req.valid('json');
    return c.json(await c.get('api').deleteDevices(b.uuids, b.reason || 'deleted'), 200);
  });
  app.openapi(
    route('post', '/devices/allow-rekey', 'operator', 'let devices register once with a new key', body(UuidsReason)),
    async (c) => {
      const b = c.req.valid('json');
      return c.json(await c.get('api').allowRekey(b.uuids, b.reason), 200);
    },
  );
  app.openapi(
    route('post', '/devices/preauthorize', 'operator', 'list devices in advance for preauthorized lots', body(Preauth)),
    async (c) => c.json(await c.get('api').preauthorize(c.req.valid('json').rows), 200),
  );
  app.openapi(route('get', '/denied', 'viewer', 'the deny-list', { query: PageQuery }), async (c) =>
    c.json(await c.get('api').listDenied(c.req.valid('query')), 200),
  );
  app.openapi(route('post', '/denied/remove', 'operator', 'lift denials', body(Uuids)), async (c) =>
    c.json(await c.get('api').removeDenied(c.req.valid('json').uuids), 200),
  );
  app.openapi(route('get', '/lots', 'viewer', 'production lots'), async (c) => c.json(await c.get('api').listLots(), 200));
  app.openapi(route('get', '/lots/{name}', 'viewer', 'one lot', { params: LotName }), async (c) =>
    c.json(await c.get('api').showLot(c.req.valid('param').name), 200),
  );
  app.openapi(route('post', '/lots', 'admin', 'create a lot; the answer holds its enrollment token, once', body(NewLot)), async (c) => {
    const b = c.req.valid('json');
    return c.json(await c.get('api').createLot({ ...b, expiresAt: b.expiresAt ? new Date(b.expiresAt) : undefined }), 200);
  });
  app.openapi(route('post', '/lots/{name}/revoke', 'admin', "stop a lot's token from enrolling", { params: LotName }), async (c) =>
    c.json(await c.get('api').revokeLot(c.req.valid('param').name), 200),
  );
  app.openapi(route('post', '/lots/{name}/rotate-token', 'admin', 'give a lot a new token, once', { params: LotName }), async (c) =>
    c.json(await c.get('api').rotateLotToken(c.req.valid('param').name), 200),
  );
  app.openapi(
    route('get', '/approvals', 'viewer', 'approval requests (pending unless all=true)', {
      query: PageQuery.extend({ all: z.enum(['true', 'false']).default('false') }),
    }),
    async (c) => {
      const q = c.req.valid('query');
      return c.json(await c.get('api').listApprovals({ all: q.all === 'true' }, q), 200);
    },
  );
  app.openapi(route('post', '/approvals/approve', 'operator', 'approve devices', body(Uuids)), async (c) =>
    c.json(await c.get('api').decideApprovals(c.req.valid('json').uuids, 'approved'), 200),
  );
  app.openapi(route('post', '/approvals/reject', 'operator', 'reject devices (they are denied)', body(Uuids)), async (c) =>
    c.json(await c.get('api').decideApprovals(c.req.valid('json').uuids, 'rejected'), 200),
  );
  app.openapi(route('get', '/upstream/status', 'viewer', 'the upstream outbox: counts, oldest, pause'), async (c) =>
    c.json(await c.get('api').upstreamStatus(), 200),
  );
  app.openapi(
    route('get', '/upstream/deliveries', 'viewer', 'deliveries, newest first', {
      query: PageQuery.extend({ status: z.enum(['pending', 'delivered', 'failed']).optional() }),
    }),
    async (c) => {
      const q = c.req.valid('query');
      return c.json(await c.get('api').listDeliveries({ status: q.status }, q), 200);
    },
  );
  app.openapi(
    route(
      'post',
      '/upstream/retry',
      'operator',
      'lift a pause and make deliveries due now',
      body(z.object({ uuids: z.array(Uuid).max(10_000).optional() })),
    ),
    async (c) => c.json(await c.get('api').retryDeliveries(c.req.valid('json').uuids), 200),
  );
  app.openapi(route('get', '/audit', 'admin', 'the audit log, newest first', { query: PageQuery }), async (c) =>
    c.json(await c.get('api').listAudit(c.req.valid('query')), 200),
  );
  app.openapi(route('get', '/readyz', 'viewer', "the server's readiness checks with their details", {}), async (c) => {
    const r = deps.readiness ? await deps.readiness.check() : { ok: true, checks: [] };
    return c.json({ status: r.ok ? 'ready' : 'not_ready', checks: r.checks }, 200);
  });
  return app;
}
