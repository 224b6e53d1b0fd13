CREATE TABLE `rekey_allowances` (
	`uuid` text PRIMARY KEY NOT NULL,
	`allowed_at` integer NOT NULL,
	`reason` text NOT NULL,
	`used_at` integer,
	`used_serial` text
);
--> statement-breakpoint
ALTER TABLE `devices` ADD `key_sha256` text;--> statement-breakpoint
ALTER TABLE `devices` ADD `repeats` integer DEFAULT 0 NOT NULL;