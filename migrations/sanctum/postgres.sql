-- gatepass beside Laravel Sanctum's tables (SPEC §10), Postgres.
-- Nothing here alters personal_access_tokens or {services}: a row's version
-- lives in gatepass_row_versions, and every change that can alter a
-- decision is notified on gatepass_invalidate with the native schema's
-- payloads (`t:<id>:<version>:<hex sha256>`, `s:<id>:<version>`,
-- `flush:<version>`), whoever the writer is: Eloquent, gatepass, plain SQL.
CREATE SEQUENCE gatepass_change_seq;

CREATE TABLE gatepass_row_versions (
    subject CHAR(1) NOT NULL,
    row_id  BIGINT NOT NULL,
    version BIGINT NOT NULL,
    PRIMARY KEY (subject, row_id)
);

CREATE FUNCTION gatepass_sanctum_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    changed CHAR(1) := TG_ARGV[0];
    next_version BIGINT := nextval('gatepass_change_seq');
BEGIN
    IF TG_OP = 'DELETE' THEN
        DELETE FROM gatepass_row_versions v WHERE v.subject = changed AND v.row_id = OLD.id;
    ELSE
        INSERT INTO gatepass_row_versions AS v (subject, row_id, version)
        VALUES (changed, NEW.id, next_version)
        ON CONFLICT ON CONSTRAINT gatepass_row_versions_pkey DO UPDATE SET version = EXCLUDED.version;
    END IF;
    IF changed = 's' AND TG_OP = 'DELETE' THEN
        PERFORM pg_notify('gatepass_invalidate', 's:' || OLD.id || ':' || next_version);
        RETURN NULL;
    ELSIF changed = 's' THEN
        PERFORM pg_notify('gatepass_invalidate', 's:' || NEW.id || ':' || next_version);
        RETURN NULL;
    END IF;
    -- The digest a cache may hold the row under: the old one, the new one.
    IF TG_OP <> 'INSERT' THEN
        PERFORM pg_notify('gatepass_invalidate', 't:' || OLD.id || ':' || next_version || ':' || OLD.token);
    END IF;
    IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND OLD.token IS DISTINCT FROM NEW.token) THEN
        PERFORM pg_notify('gatepass_invalidate', 't:' || NEW.id || ':' || next_version || ':' || NEW.token);
    END IF;
    RETURN NULL;
END
$$;

CREATE FUNCTION gatepass_sanctum_flushed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('gatepass_invalidate', 'flush:' || nextval('gatepass_change_seq'));
    RETURN NULL;
END
$$;

-- last_used_at, updated_at and name do not change decisions: Laravel's own
-- last-used writes neither bump nor notify.
CREATE TRIGGER gatepass_tokens_written
    AFTER INSERT OR DELETE ON personal_access_tokens FOR EACH ROW
    EXECUTE FUNCTION gatepass_sanctum_changed('t');

CREATE TRIGGER gatepass_tokens_updated
    AFTER UPDATE ON personal_access_tokens FOR EACH ROW
    WHEN ((OLD.id, OLD.tokenable_type, OLD.tokenable_id, OLD.token, OLD.abilities,
           OLD.expires_at, OLD.created_at)
          IS DISTINCT FROM
          (NEW.id, NEW.tokenable_type, NEW.tokenable_id, NEW.token, NEW.abilities,
           NEW.expires_at, NEW.created_at))
    EXECUTE FUNCTION gatepass_sanctum_changed('t');

CREATE TRIGGER gatepass_tokens_truncated
    AFTER TRUNCATE ON personal_access_tokens FOR EACH STATEMENT
    EXECUTE FUNCTION gatepass_sanctum_flushed();

CREATE TRIGGER gatepass_services_written
    AFTER INSERT OR DELETE ON {services} FOR EACH ROW
    EXECUTE FUNCTION gatepass_sanctum_changed('s');

CREATE TRIGGER gatepass_services_updated
    AFTER UPDATE ON {services} FOR EACH ROW
    WHEN ((OLD.id, OLD.name, OLD.is_active, OLD.ip_allowlist)
          IS DISTINCT FROM (NEW.id, NEW.name, NEW.is_active, NEW.ip_allowlist))
    EXECUTE FUNCTION gatepass_sanctum_changed('s');

CREATE TRIGGER gatepass_services_truncated
    AFTER TRUNCATE ON {services} FOR EACH STATEMENT
    EXECUTE FUNCTION gatepass_sanctum_flushed();
