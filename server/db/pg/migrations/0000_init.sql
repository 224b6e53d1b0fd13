CREATE TABLE "admin_tokens" (
	"name" text PRIMARY KEY NOT NULL,
	"role" text NOT NULL,
	"token_sha256" text NOT NULL,
	"created_at" timestamp with time zone NOT NULL,
	"revoked_at" timestamp with time zone
);
--> statement-breakpoint
CREATE TABLE "approvals" (
	"uuid" text PRIMARY KEY NOT NULL,
	"key_sha256" text NOT NULL,
	"hardware_id" text NOT NULL,
	"name" text NOT NULL,
	"client_address" text NOT NULL,
	"lot" text NOT NULL,
	"first_seen" timestamp with time zone NOT NULL,
	"last_seen" timestamp with time zone NOT NULL,
	"attempts" integer NOT NULL,
	"status" text NOT NULL,
	"decided_at" timestamp with time zone
);
--> statement-breakpoint
CREATE TABLE "audit_log" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"at" timestamp with time zone NOT NULL,
	"actor" text NOT NULL,
	"action" text NOT NULL,
	"target" text NOT NULL,
	"address" text NOT NULL,
	"request_id" text NOT NULL,
	"detail" text NOT NULL
);
--> statement-breakpoint
CREATE TABLE "certificates" (
	"serial" text PRIMARY KEY NOT NULL,
	"uuid" text NOT NULL,
	"subject" text NOT NULL,
	"hardware_id" text NOT NULL,
	"name" text NOT NULL,
	"production" boolean NOT NULL,
	"not_before" timestamp with time zone NOT NULL,
	"not_after" timestamp with time zone NOT NULL,
	"pem" text NOT NULL,
	"issued_at" timestamp with time zone NOT NULL,
	"client_address" text NOT NULL,
	"request_id" text NOT NULL,
	"revoked_at" timestamp with time zone,
	"revocation_reason" text,
	"superseded_by" text,
	"superseded_at" timestamp with time zone
);
--> statement-breakpoint
CREATE TABLE "crl_state" (
	"id" integer PRIMARY KEY NOT NULL,
	"number" integer NOT NULL,
	"revision" integer NOT NULL
);
--> statement-breakpoint
CREATE TABLE "denied_devices" (
	"uuid" text PRIMARY KEY NOT NULL,
	"name" text NOT NULL,
	"reason" text NOT NULL,
	"denied_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
CREATE TABLE "devices" (
	"uuid" text PRIMARY KEY NOT NULL,
	"name" text NOT NULL,
	"hardware_id" text NOT NULL,
	"production" boolean NOT NULL,
	"serial" text NOT NULL,
	"first_registered_at" timestamp with time zone NOT NULL,
	"last_registered_at" timestamp with time zone NOT NULL,
	"registrations" integer NOT NULL,
	"key_sha256" text,
	"repeats" integer DEFAULT 0 NOT NULL,
	"lot" text
);
--> statement-breakpoint
CREATE TABLE "lots" (
	"name" text PRIMARY KEY NOT NULL,
	"token_sha256" text NOT NULL,
	"created_at" timestamp with time zone NOT NULL,
	"expires_at" timestamp with time zone,
	"max_devices" integer,
	"hwid_pattern" text,
	"device_group" text,
	"production" text NOT NULL,
	"approval" text NOT NULL,
	"revoked_at" timestamp with time zone,
	"admitted" integer DEFAULT 0 NOT NULL
);
--> statement-breakpoint
CREATE TABLE "outbox" (
	"serial" text PRIMARY KEY NOT NULL,
	"uuid" text NOT NULL,
	"body" text NOT NULL,
	"status" text NOT NULL,
	"attempts" integer NOT NULL,
	"attempts_before_retry" integer DEFAULT 0 NOT NULL,
	"next_attempt_at" timestamp with time zone NOT NULL,
	"last_error" text NOT NULL,
	"created_at" timestamp with time zone NOT NULL,
	"delivered_at" timestamp with time zone
);
--> statement-breakpoint
CREATE TABLE "preauthorized" (
	"uuid" text PRIMARY KEY NOT NULL,
	"key_sha256" text,
	"hardware_id" text,
	"name" text,
	"lot" text,
	"created_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
CREATE TABLE "rekey_allowances" (
	"uuid" text PRIMARY KEY NOT NULL,
	"allowed_at" timestamp with time zone NOT NULL,
	"reason" text NOT NULL,
	"used_at" timestamp with time zone,
	"used_serial" text
);
--> statement-breakpoint
CREATE TABLE "upstream_pause" (
	"id" integer PRIMARY KEY NOT NULL,
	"until" timestamp with time zone NOT NULL,
	"reason" text NOT NULL,
	"paused_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX "admin_tokens_token_idx" ON "admin_tokens" USING btree ("token_sha256");--> statement-breakpoint
CREATE INDEX "certificates_uuid_idx" ON "certificates" USING btree ("uuid","issued_at");--> statement-breakpoint
CREATE INDEX "certificates_revoked_idx" ON "certificates" USING btree ("revoked_at");--> statement-breakpoint
CREATE UNIQUE INDEX "lots_token_idx" ON "lots" USING btree ("token_sha256");--> statement-breakpoint
CREATE INDEX "outbox_due_idx" ON "outbox" USING btree ("status","next_attempt_at");