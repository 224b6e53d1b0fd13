-- Recording issued certificates on PostgreSQL: the same decisions as the SQLite recorder
-- (server/db/sqlite/recorder.ts), made in the database so that a batch of records is one
-- round trip and one commit. Every UUID of a batch is locked first, in order (an advisory
-- lock per UUID: replicas never record one device twice at once, and never deadlock on a
-- batch); a lot's row is locked where it is counted, so max-devices holds across replicas.
-- Each record runs in its own block: a failing one is answered alone.
CREATE FUNCTION kiln_record_batch(batch jsonb)
RETURNS TABLE (o_i integer, o_code text, o_message text, o_serial text, o_pem text, o_delivery text)
LANGUAGE plpgsql AS $$
DECLARE
  r jsonb;
  ts timestamptz;
  v_uuid text;
  v_serial text;
  v_key text;
  v_lot text;
  v_renews text;
  dev record;
  cur record;
  lt record;
  old record;
  v_admit boolean;
  v_rekey boolean;
BEGIN
  PERFORM pg_advisory_xact_lock(hashtextextended('kiln-device:' || u, 0))
    FROM (SELECT DISTINCT e->>'uuid' AS u FROM jsonb_array_elements(batch) AS e ORDER BY 1) AS s;
  FOR r IN SELECT e FROM jsonb_array_elements(batch) AS e LOOP
    o_i := (r->>'i')::integer;
    o_code := NULL; o_message := NULL; o_serial := NULL; o_pem := NULL; o_delivery := NULL;
    v_uuid := r->>'uuid';
    v_serial := r->>'serial';
    v_key := r->>'keySha256';
    v_lot := r->>'lot';
    v_renews := r->>'renews';
    ts := to_timestamp((r->>'issuedAt')::bigint / 1000.0);
    v_admit := false;
    v_rekey := false;
    BEGIN
      <<decide>>
      LOOP
        IF EXISTS (SELECT 1 FROM denied_devices d WHERE d.uuid = v_uuid) THEN
          o_code := 'denied'; o_message := format('device %s is on the deny-list', v_uuid); EXIT decide;
        END IF;
        SELECT d.serial, d.key_sha256 INTO dev FROM devices d WHERE d.uuid = v_uuid;
        IF v_lot IS NOT NULL THEN
          SELECT l.revoked_at, l.expires_at, l.max_devices, l.admitted INTO lt FROM lots l WHERE l.name = v_lot FOR UPDATE;
          IF NOT FOUND OR lt.revoked_at IS NOT NULL THEN
            o_code := 'unauthorized'; o_message := format('lot %s was revoked: its token no longer enrolls devices', v_lot); EXIT decide;
          END IF;
          IF lt.expires_at IS NOT NULL AND lt.expires_at <= ts THEN
            o_code := 'denied';
            o_message := format('lot %s expired at %s', v_lot, to_char(lt.expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'));
            EXIT decide;
          END IF;
          IF dev.serial IS NULL AND lt.max_devices IS NOT NULL AND lt.admitted >= lt.max_devices THEN
            o_code := 'denied'; o_message := format('lot %s is full: %s of %s devices enrolled', v_lot, lt.admitted, lt.max_devices); EXIT decide;
          END IF;
          v_admit := dev.serial IS NULL;
        END IF;
        IF v_renews IS NOT NULL THEN
          -- a renewal, authenticated by the certificate it renews (see the SQLite recorder)
          IF dev.serial IS NULL THEN
            o_code := 'denied'; o_message := format('device %s is not registered', v_uuid); EXIT decide;
          END IF;
          IF dev.serial <> v_renews THEN
            SELECT c.pem, c.subject, o.status AS delivery INTO cur FROM certificates c LEFT JOIN outbox o ON o.serial = c.serial WHERE c.serial = dev.serial;
            IF dev.key_sha256 = v_key AND cur.subject = r->>'subject' THEN
              UPDATE devices SET repeats = repeats + 1 WHERE uuid = v_uuid;
              o_code := 'repeat'; o_serial := dev.serial; o_pem := cur.pem; o_delivery := cur.delivery; EXIT decide;
            END IF;
            o_code := 'denied';
            o_message := format('certificate %s was replaced by %s: renew with the current certificate', v_renews, dev.serial);
            EXIT decide;
          END IF;
          SELECT c.revoked_at INTO old FROM certificates c WHERE c.serial = v_renews;
          IF NOT FOUND THEN
            o_code := 'denied'; o_message := format('certificate %s is not in the registry', v_renews); EXIT decide;
          END IF;
          IF old.revoked_at IS NOT NULL THEN
            o_code := 'denied'; o_message := format('certificate %s is revoked', v_renews); EXIT decide;
          END IF;
          IF EXISTS (SELECT 1 FROM certificates c WHERE c.serial = v_serial) THEN
            o_code := 'conflict'; o_message := format('serial %s is already used (renewal with UUID serials)', v_serial); EXIT decide;
          END IF;
        ELSE
          IF dev.serial IS NOT NULL THEN
            IF dev.key_sha256 = v_key THEN
              -- the same request again (a lost 201): the same key and the same subject
              SELECT c.pem, c.subject, o.status AS delivery INTO cur FROM certificates c LEFT JOIN outbox o ON o.serial = c.serial WHERE c.serial = dev.serial;
              IF FOUND AND cur.subject = r->>'subject' THEN
                UPDATE devices SET repeats = repeats + 1 WHERE uuid = v_uuid;
                o_code := 'repeat'; o_serial := dev.serial; o_pem := cur.pem; o_delivery := cur.delivery; EXIT decide;
              END IF;
            END IF;
            IF (r->>'rejectReregistration')::boolean THEN
              o_code := 'conflict'; o_message := format('device %s is already registered', v_uuid); EXIT decide;
            END IF;
            IF dev.key_sha256 IS DISTINCT FROM v_key AND NOT (r->>'rekeyAllowed')::boolean THEN
              IF NOT EXISTS (SELECT 1 FROM rekey_allowances a WHERE a.uuid = v_uuid AND a.used_at IS NULL) THEN
                o_code := 'conflict';
                o_message := format('device %s is registered with another key; if this is the same device with a new key, an operator can allow it once: kilnctl devices allow-rekey %s', v_uuid, v_uuid);
                EXIT decide;
              END IF;
              v_rekey := true;
            END IF;
          END IF;
          IF EXISTS (SELECT 1 FROM certificates c WHERE c.serial = v_serial) THEN
            o_code := 'conflict'; o_message := format('serial %s is already used (re-registration with UUID serials)', v_serial); EXIT decide;
          END IF;
        END IF;

        INSERT INTO certificates (serial, uuid, subject, hardware_id, name, production, not_before, not_after, pem, issued_at, client_address, request_id)
        VALUES (v_serial, v_uuid, r->>'subject', r->>'hardwareId', r->>'name', (r->>'production')::boolean,
                to_timestamp((r->>'notBefore')::bigint / 1000.0), to_timestamp((r->>'notAfter')::bigint / 1000.0),
                r->>'pem', ts, r->>'clientAddress', r->>'requestId');
        -- the lot is the one a device was first admitted through: kept on re-registration
        INSERT INTO devices AS d (uuid, name, hardware_id, production, serial, first_registered_at, last_registered_at, registrations, key_sha256, lot)
        VALUES (v_uuid, r->>'name', r->>'hardwareId', (r->>'production')::boolean, v_serial, ts, ts, 1, v_key, v_lot)
        ON CONFLICT (uuid) DO UPDATE SET name = excluded.name, hardware_id = excluded.hardware_id, production = excluded.production,
          serial = excluded.serial, last_registered_at = excluded.last_registered_at, registrations = d.registrations + 1,
          key_sha256 = excluded.key_sha256;
        IF r->>'upstreamBody' IS NOT NULL THEN
          INSERT INTO outbox (serial, uuid, body, status, attempts, next_attempt_at, last_error, created_at)
          VALUES (v_serial, v_uuid, r->>'upstreamBody', 'pending', 0, ts, '', ts);
        END IF;
        IF v_rekey THEN
          UPDATE rekey_allowances SET used_at = ts, used_serial = v_serial WHERE uuid = v_uuid AND used_at IS NULL;
        END IF;
        IF v_admit THEN
          UPDATE lots SET admitted = admitted + 1 WHERE name = v_lot;
        END IF;
        IF v_renews IS NOT NULL THEN
          UPDATE certificates SET superseded_by = v_serial, superseded_at = ts WHERE serial = v_renews;
        END IF;
        EXIT decide;
      END LOOP decide;
    EXCEPTION
      WHEN unique_violation THEN
        o_code := 'conflict'; o_message := format('serial %s is already used', v_serial);
      WHEN OTHERS THEN
        o_code := 'unavailable'; o_message := SQLERRM;
    END;
    RETURN NEXT;
  END LOOP;
END;
$$;
--> statement-breakpoint
-- The audit log is append-only: nothing rewrites or removes what an operator did.
CREATE FUNCTION kiln_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'the audit log is append-only';
END;
$$;
--> statement-breakpoint
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log FOR EACH ROW EXECUTE FUNCTION kiln_audit_append_only();
