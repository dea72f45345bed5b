-- The embedded store: the same tables and column names as Postgres (SPEC §1),
-- in SQLite's types. Lists (abilities, allowlists) are JSON arrays of
-- strings; times are ISO 8601 text in UTC.
CREATE TABLE services (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    name         TEXT NOT NULL UNIQUE,
    description  TEXT NOT NULL DEFAULT '',
    is_active    INTEGER NOT NULL DEFAULT 1 CHECK (is_active IN (0, 1)),
    ip_allowlist TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(ip_allowlist)),
    created_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    version      INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE tokens (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    service_id   INTEGER NOT NULL REFERENCES services (id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    -- SHA-256 of the secret; the secret itself is never stored.
    token_hash   BLOB NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    abilities    TEXT NOT NULL DEFAULT '["*"]' CHECK (json_valid(abilities)),
    kind         TEXT NOT NULL DEFAULT 'access' CHECK (kind IN ('access', 'refresh')),
    family_id    TEXT,
    expires_at   TEXT,
    last_used_at TEXT,
    revoked_at   TEXT,
    created_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    version      INTEGER NOT NULL DEFAULT 0
);

CREATE INDEX tokens_service_id_idx ON tokens (service_id);

-- SQLite has no LISTEN/NOTIFY: triggers append every change that can alter
-- a decision to this log, whoever the writer is, and gatepass polls it.
-- A change's id is the version of the row it touched.
CREATE TABLE gatepass_changes (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    subject    TEXT NOT NULL CHECK (subject IN ('t', 's')),
    row_id     INTEGER NOT NULL,
    token_hash BLOB,
    at         TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TRIGGER tokens_log_insert AFTER INSERT ON tokens
BEGIN
    INSERT INTO gatepass_changes (subject, row_id, token_hash) VALUES ('t', NEW.id, NEW.token_hash);
    UPDATE tokens SET version = last_insert_rowid() WHERE id = NEW.id;
END;

-- last_used_at, name and description do not change decisions.
CREATE TRIGGER tokens_log_update AFTER UPDATE ON tokens
WHEN NEW.version = OLD.version AND (
       OLD.service_id IS NOT NEW.service_id OR OLD.token_hash IS NOT NEW.token_hash
    OR OLD.abilities IS NOT NEW.abilities OR OLD.kind IS NOT NEW.kind
    OR OLD.expires_at IS NOT NEW.expires_at OR OLD.revoked_at IS NOT NEW.revoked_at
    OR OLD.created_at IS NOT NEW.created_at)
BEGIN
    INSERT INTO gatepass_changes (subject, row_id, token_hash) VALUES ('t', NEW.id, NEW.token_hash);
    UPDATE tokens SET version = last_insert_rowid() WHERE id = NEW.id;
END;

CREATE TRIGGER tokens_log_delete AFTER DELETE ON tokens
BEGIN
    INSERT INTO gatepass_changes (subject, row_id, token_hash) VALUES ('t', OLD.id, OLD.token_hash);
END;

CREATE TRIGGER services_log_update AFTER UPDATE ON services
WHEN NEW.version = OLD.version AND (
       OLD.name IS NOT NEW.name OR OLD.is_active IS NOT NEW.is_active
    OR OLD.ip_allowlist IS NOT NEW.ip_allowlist)
BEGIN
    INSERT INTO gatepass_changes (subject, row_id) VALUES ('s', NEW.id);
    UPDATE services SET version = last_insert_rowid() WHERE id = NEW.id;
END;

CREATE TRIGGER services_log_delete AFTER DELETE ON services
BEGIN
    INSERT INTO gatepass_changes (subject, row_id) VALUES ('s', OLD.id);
END;
