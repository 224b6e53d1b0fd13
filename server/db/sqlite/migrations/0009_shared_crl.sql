ALTER TABLE `crl_state` ADD `der` blob;--> statement-breakpoint
ALTER TABLE `crl_state` ADD `this_update` integer;--> statement-breakpoint
ALTER TABLE `crl_state` ADD `next_update` integer;--> statement-breakpoint
ALTER TABLE `crl_state` ADD `made_revision` integer;--> statement-breakpoint
ALTER TABLE `crl_state` ADD `entries` integer;--> statement-breakpoint
ALTER TABLE `crl_state` ADD `making_until` integer;