-- Cache invalidation (cache tiers): every change that can alter a decision
-- bumps the row's version from one shared sequence and notifies
-- `gatepass_invalidate` on commit, whoever the writer is (gatepass, the CLI,
-- or plain SQL). Caches compare versions so that a fill that read a row
-- before a change can never bring the old state back.
CREATE SEQUENCE gatepass_change_seq;

ALTER TABLE services ADD COLUMN version BIGINT NOT NULL DEFAULT nextval('gatepass_change_seq');
ALTER TABLE tokens ADD COLUMN version BIGINT NOT NULL DEFAULT nextval('gatepass_change_seq');

CREATE FUNCTION gatepass_bump_version() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.version := nextval('gatepass_change_seq');
    RETURN NEW;
END
$$;

-- last_used_at, name and description do not change decisions: writing them
-- (the batched last-used flush above all) neither bumps nor notifies.
CREATE TRIGGER tokens_bump_version
    BEFORE UPDATE ON tokens FOR EACH ROW
    WHEN ((OLD.id, OLD.service_id, OLD.token_hash, OLD.abilities, OLD.kind, OLD.expires_at,
           OLD.revoked_at, OLD.created_at)
          IS DISTINCT FROM
          (NEW.id, NEW.service_id, NEW.token_hash, NEW.abilities, NEW.kind, NEW.expires_at,
           NEW.revoked_at, NEW.created_at))
    EXECUTE FUNCTION gatepass_bump_version();

CREATE TRIGGER services_bump_version
    BEFORE UPDATE ON services FOR EACH ROW
    WHEN ((OLD.id, OLD.name, OLD.is_active, OLD.ip_allowlist)
          IS DISTINCT FROM (NEW.id, NEW.name, NEW.is_active, NEW.ip_allowlist))
    EXECUTE FUNCTION gatepass_bump_version();

-- Payloads: `t:<id>:<version>:<hex sha256>`, `s:<id>:<version>` and
-- `flush:<version>` (a truncate). A
-- deleted row gets a fresh version so that nothing cached before survives.
CREATE FUNCTION gatepass_notify_token() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    row tokens%ROWTYPE;
    version BIGINT;
BEGIN
    IF TG_OP = 'DELETE' THEN
        row := OLD;
        version := nextval('gatepass_change_seq');
    ELSE
        row := NEW;
        version := NEW.version;
    END IF;
    PERFORM pg_notify('gatepass_invalidate',
        't:' || row.id || ':' || version || ':' || encode(row.token_hash, 'hex'));
    RETURN NULL;
END
$$;

CREATE FUNCTION gatepass_notify_service() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('gatepass_invalidate',
            's:' || OLD.id || ':' || nextval('gatepass_change_seq'));
    ELSE
        PERFORM pg_notify('gatepass_invalidate', 's:' || NEW.id || ':' || NEW.version);
    END IF;
    RETURN NULL;
END
$$;

CREATE FUNCTION gatepass_notify_flush() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('gatepass_invalidate', 'flush:' || nextval('gatepass_change_seq'));
    RETURN NULL;
END
$$;

CREATE TRIGGER tokens_notify_write
    AFTER INSERT OR DELETE ON tokens FOR EACH ROW
    EXECUTE FUNCTION gatepass_notify_token();

CREATE TRIGGER tokens_notify_update
    AFTER UPDATE ON tokens FOR EACH ROW
    WHEN (OLD.version IS DISTINCT FROM NEW.version)
    EXECUTE FUNCTION gatepass_notify_token();

CREATE TRIGGER services_notify_write
    AFTER DELETE ON services FOR EACH ROW
    EXECUTE FUNCTION gatepass_notify_service();

CREATE TRIGGER services_notify_update
    AFTER UPDATE ON services FOR EACH ROW
    WHEN (OLD.version IS DISTINCT FROM NEW.version)
    EXECUTE FUNCTION gatepass_notify_service();

CREATE TRIGGER tokens_notify_truncate
    AFTER TRUNCATE ON tokens FOR EACH STATEMENT
    EXECUTE FUNCTION gatepass_notify_flush();

CREATE TRIGGER services_notify_truncate
    AFTER TRUNCATE ON services FOR EACH STATEMENT
    EXECUTE FUNCTION gatepass_notify_flush();
