ALTER TABLE `certificates` ADD `superseded_by` text;--> statement-breakpoint
ALTER TABLE `certificates` ADD `superseded_at` integer;