CREATE TABLE `crl_state` (
	`id` integer PRIMARY KEY NOT NULL,
	`number` integer NOT NULL,
	`revision` integer NOT NULL
);
--> statement-breakpoint
ALTER TABLE `certificates` ADD `revoked_at` integer;--> statement-breakpoint
ALTER TABLE `certificates` ADD `revocation_reason` text;--> statement-breakpoint
CREATE INDEX `certificates_revoked_idx` ON `certificates` (`revoked_at`);