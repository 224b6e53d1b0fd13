CREATE TABLE `upstream_pause` (
	`id` integer PRIMARY KEY NOT NULL,
	`until` integer NOT NULL,
	`reason` text NOT NULL,
	`paused_at` integer NOT NULL
);
--> statement-breakpoint
ALTER TABLE `outbox` ADD `attempts_before_retry` integer DEFAULT 0 NOT NULL;