CREATE TABLE `certificates` (
	`serial` text PRIMARY KEY NOT NULL,
	`uuid` text NOT NULL,
	`subject` text NOT NULL,
	`hardware_id` text NOT NULL,
	`name` text NOT NULL,
	`production` integer NOT NULL,
	`not_before` integer NOT NULL,
	`not_after` integer NOT NULL,
	`pem` text NOT NULL,
	`issued_at` integer NOT NULL,
	`client_address` text NOT NULL,
	`request_id` text NOT NULL
);
--> statement-breakpoint
CREATE INDEX `certificates_uuid_idx` ON `certificates` (`uuid`,`issued_at`);--> statement-breakpoint
CREATE TABLE `denied_devices` (
	`uuid` text PRIMARY KEY NOT NULL,
	`name` text NOT NULL,
	`reason` text NOT NULL,
	`denied_at` integer NOT NULL
);
--> statement-breakpoint
CREATE TABLE `devices` (
	`uuid` text PRIMARY KEY NOT NULL,
	`name` text NOT NULL,
	`hardware_id` text NOT NULL,
	`production` integer NOT NULL,
	`serial` text NOT NULL,
	`first_registered_at` integer NOT NULL,
	`last_registered_at` integer NOT NULL,
	`registrations` integer NOT NULL
);
