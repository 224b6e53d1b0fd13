CREATE TABLE `approvals` (
	`uuid` text PRIMARY KEY NOT NULL,
	`key_sha256` text NOT NULL,
	`hardware_id` text NOT NULL,
	`name` text NOT NULL,
	`client_address` text NOT NULL,
	`lot` text NOT NULL,
	`first_seen` integer NOT NULL,
	`last_seen` integer NOT NULL,
	`attempts` integer NOT NULL,
	`status` text NOT NULL,
	`decided_at` integer
);
--> statement-breakpoint
CREATE TABLE `lots` (
	`name` text PRIMARY KEY NOT NULL,
	`token_sha256` text NOT NULL,
	`created_at` integer NOT NULL,
	`expires_at` integer,
	`max_devices` integer,
	`hwid_pattern` text,
	`device_group` text,
	`production` text NOT NULL,
	`approval` text NOT NULL,
	`revoked_at` integer,
	`admitted` integer DEFAULT 0 NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX `lots_token_idx` ON `lots` (`token_sha256`);--> statement-breakpoint
CREATE TABLE `preauthorized` (
	`uuid` text PRIMARY KEY NOT NULL,
	`key_sha256` text,
	`hardware_id` text,
	`name` text,
	`lot` text,
	`created_at` integer NOT NULL
);
--> statement-breakpoint
ALTER TABLE `devices` ADD `lot` text;