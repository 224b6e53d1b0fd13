CREATE TABLE `admin_tokens` (
	`name` text PRIMARY KEY NOT NULL,
	`role` text NOT NULL,
	`token_sha256` text NOT NULL,
	`created_at` integer NOT NULL,
	`revoked_at` integer
);
--> statement-breakpoint
CREATE UNIQUE INDEX `admin_tokens_token_idx` ON `admin_tokens` (`token_sha256`);--> statement-breakpoint
CREATE TABLE `audit_log` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`at` integer NOT NULL,
	`actor` text NOT NULL,
	`action` text NOT NULL,
	`target` text NOT NULL,
	`address` text NOT NULL,
	`request_id` text NOT NULL,
	`detail` text NOT NULL
);
