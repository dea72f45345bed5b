-- gatepass beside Laravel Sanctum's tables (SPEC §10), SQLite. Nothing here
-- alters personal_access_tokens or {services}. Triggers append every change
-- that can alter a decision to gatepass_changes (the native schema's log: a
-- change's id is the version of the row it touched), whoever the writer is,
-- and keep the version beside Laravel's row in gatepass_row_versions.
-- Laravel's PHP may bring an older SQLite than gatepass's: nothing here
-- needs more than 3.24.
CREATE TABLE gatepass_changes (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    subject    TEXT NOT NULL,
    row_id     INTEGER NOT NULL,
    -- Laravel's hex `token`, as written (the feed reads hex or bytes).
    token_hash TEXT,
    at         TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE gatepass_row_versions (
    subject TEXT NOT NULL,
    row_id  INTEGER NOT NULL,
    version INTEGER NOT NULL,
    PRIMARY KEY (subject, row_id)
) WITHOUT ROWID;

CREATE TRIGGER gatepass_tokens_inserted AFTER INSERT ON personal_access_tokens
BEGIN
    INSERT INTO gatepass_changes (subject, row_id, token_hash) VALUES ('t', NEW.id, NEW.token);
    INSERT OR REPLACE INTO gatepass_row_versions VALUES ('t', NEW.id, last_insert_rowid());
END;

-- last_used_at, updated_at and name do not change decisions.
CREATE TRIGGER gatepass_tokens_updated AFTER UPDATE ON personal_access_tokens
WHEN OLD.id IS NOT NEW.id OR OLD.tokenable_type IS NOT NEW.tokenable_type
  OR OLD.tokenable_id IS NOT NEW.tokenable_id OR OLD.token IS NOT NEW.token
  OR OLD.abilities IS NOT NEW.abilities OR OLD.expires_at IS NOT NEW.expires_at
  OR OLD.created_at IS NOT NEW.created_at
BEGIN
    DELETE FROM gatepass_row_versions WHERE subject = 't' AND row_id = OLD.id;
    INSERT INTO gatepass_changes (subject, row_id, token_hash)
        SELECT 't', NEW.id, NEW.token WHERE OLD.id IS NOT NEW.id OR OLD.token IS NOT NEW.token;
    INSERT INTO gatepass_changes (subject, row_id, token_hash) VALUES ('t', OLD.id, OLD.token);
    INSERT OR REPLACE INTO gatepass_row_versions VALUES ('t', NEW.id, last_insert_rowid());
END;

CREATE TRIGGER gatepass_tokens_deleted AFTER DELETE ON personal_access_tokens
BEGIN
    INSERT INTO gatepass_changes (subject, row_id, token_hash) VALUES ('t', OLD.id, OLD.token);
    DELETE FROM gatepass_row_versions WHERE subject = 't' AND row_id = OLD.id;
END;

CREATE TRIGGER gatepass_services_inserted AFTER INSERT ON {services}
BEGIN
    INSERT INTO gatepass_changes (subject, row_id) VALUES ('s', NEW.id);
    INSERT OR REPLACE INTO gatepass_row_versions VALUES ('s', NEW.id, last_insert_rowid());
END;

CREATE TRIGGER gatepass_services_updated AFTER UPDATE ON {services}
WHEN OLD.id IS NOT NEW.id OR OLD.name IS NOT NEW.name OR OLD.is_active IS NOT NEW.is_active
  OR OLD.ip_allowlist IS NOT NEW.ip_allowlist
BEGIN
    DELETE FROM gatepass_row_versions WHERE subject = 's' AND row_id = OLD.id;
    INSERT INTO gatepass_changes (subject, row_id) VALUES ('s', OLD.id);
    INSERT OR REPLACE INTO gatepass_row_versions VALUES ('s', NEW.id, last_insert_rowid());
END;

CREATE TRIGGER gatepass_services_deleted AFTER DELETE ON {services}
BEGIN
    INSERT INTO gatepass_changes (subject, row_id) VALUES ('s', OLD.id);
    DELETE FROM gatepass_row_versions WHERE subject = 's' AND row_id = OLD.id;
END;
