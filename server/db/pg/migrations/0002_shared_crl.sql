ALTER TABLE "crl_state" ADD COLUMN "der" "bytea";--> statement-breakpoint
ALTER TABLE "crl_state" ADD COLUMN "this_update" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "crl_state" ADD COLUMN "next_update" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "crl_state" ADD COLUMN "made_revision" integer;--> statement-breakpoint
ALTER TABLE "crl_state" ADD COLUMN "entries" integer;--> statement-breakpoint
ALTER TABLE "crl_state" ADD COLUMN "making_until" timestamp with time zone;