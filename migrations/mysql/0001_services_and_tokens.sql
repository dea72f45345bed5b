-- MySQL / MariaDB: the same tables and column names as Postgres (SPEC §1).
-- Lists (abilities, allowlists) are JSON arrays of strings in text columns;
-- times are DATETIME(6) in UTC (gatepass's sessions use time_zone +00:00).
-- Text defaults are expressions, as MySQL 8 requires for TEXT columns.
CREATE TABLE services (
    id           BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    name         VARCHAR(64) NOT NULL UNIQUE,
    description  TEXT NOT NULL DEFAULT (''),
    is_active    BOOLEAN NOT NULL DEFAULT TRUE,
    ip_allowlist TEXT NOT NULL DEFAULT ('[]') CHECK (JSON_VALID(ip_allowlist)),
    created_at   DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    updated_at   DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    version      BIGINT NOT NULL DEFAULT 0
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE tokens (
    id           BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    service_id   BIGINT NOT NULL,
    name         VARCHAR(255) NOT NULL,
    -- SHA-256 of the secret; the secret itself is never stored.
    token_hash   BINARY(32) NOT NULL UNIQUE,
    abilities    TEXT NOT NULL DEFAULT ('["*"]') CHECK (JSON_VALID(abilities)),
    kind         VARCHAR(16) NOT NULL DEFAULT 'access' CHECK (kind IN ('access', 'refresh')),
    family_id    CHAR(32),
    expires_at   DATETIME(6),
    last_used_at DATETIME(6),
    revoked_at   DATETIME(6),
    created_at   DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    version      BIGINT NOT NULL DEFAULT 0,
    KEY tokens_service_id_idx (service_id),
    KEY tokens_family_id_idx (family_id),
    CONSTRAINT tokens_service_fk FOREIGN KEY (service_id) REFERENCES services (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- MySQL has neither sequences nor LISTEN/NOTIFY, and a trigger may not
-- write the table it fires on. So versions come from this counter (set in
-- BEFORE triggers), and AFTER triggers append every change that can alter
-- a decision to gatepass_changes, which gatepass polls. Changes commit in
-- any order; the poller waits for ids it has not seen yet.
CREATE TABLE gatepass_versions (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY
) ENGINE = InnoDB;

CREATE TABLE gatepass_changes (
    id         BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    subject    CHAR(1) NOT NULL CHECK (subject IN ('t', 's')),
    row_id     BIGINT NOT NULL,
    version    BIGINT NOT NULL,
    token_hash BINARY(32),
    at         DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
) ENGINE = InnoDB;

CREATE TRIGGER tokens_version_insert BEFORE INSERT ON tokens FOR EACH ROW
BEGIN
    INSERT INTO gatepass_versions () VALUES ();
    SET NEW.version = LAST_INSERT_ID();
END;

CREATE TRIGGER tokens_log_insert AFTER INSERT ON tokens FOR EACH ROW
    INSERT INTO gatepass_changes (subject, row_id, version, token_hash)
    VALUES ('t', NEW.id, NEW.version, NEW.token_hash);

-- last_used_at, name and description do not change decisions.
CREATE TRIGGER tokens_version_update BEFORE UPDATE ON tokens FOR EACH ROW
BEGIN
    IF NOT (OLD.service_id <=> NEW.service_id AND OLD.token_hash <=> NEW.token_hash
            AND OLD.abilities <=> NEW.abilities AND OLD.kind <=> NEW.kind
            AND OLD.expires_at <=> NEW.expires_at AND OLD.revoked_at <=> NEW.revoked_at
            AND OLD.created_at <=> NEW.created_at) THEN
        INSERT INTO gatepass_versions () VALUES ();
        SET NEW.version = LAST_INSERT_ID();
    END IF;
END;

CREATE TRIGGER tokens_log_update AFTER UPDATE ON tokens FOR EACH ROW
BEGIN
    IF NEW.version <> OLD.version THEN
        INSERT INTO gatepass_changes (subject, row_id, version, token_hash)
        VALUES ('t', NEW.id, NEW.version, NEW.token_hash);
    END IF;
END;

CREATE TRIGGER tokens_log_delete AFTER DELETE ON tokens FOR EACH ROW
BEGIN
    INSERT INTO gatepass_versions () VALUES ();
    INSERT INTO gatepass_changes (subject, row_id, version, token_hash)
    VALUES ('t', OLD.id, LAST_INSERT_ID(), OLD.token_hash);
END;

CREATE TRIGGER services_version_update BEFORE UPDATE ON services FOR EACH ROW
BEGIN
    IF NOT (OLD.name <=> NEW.name AND OLD.is_active <=> NEW.is_active
            AND OLD.ip_allowlist <=> NEW.ip_allowlist) THEN
        INSERT INTO gatepass_versions () VALUES ();
        SET NEW.version = LAST_INSERT_ID();
    END IF;
END;

CREATE TRIGGER services_log_update AFTER UPDATE ON services FOR EACH ROW
BEGIN
    IF NEW.version <> OLD.version THEN
        INSERT INTO gatepass_changes (subject, row_id, version) VALUES ('s', NEW.id, NEW.version);
    END IF;
END;

-- Before, so that the tokens the cascade deletes (InnoDB fires no trigger
-- for them) are logged too.
CREATE TRIGGER services_log_delete BEFORE DELETE ON services FOR EACH ROW
BEGIN
    INSERT INTO gatepass_versions () VALUES ();
    INSERT INTO gatepass_changes (subject, row_id, version, token_hash)
        SELECT 't', id, LAST_INSERT_ID(), token_hash FROM tokens WHERE service_id = OLD.id;
    INSERT INTO gatepass_changes (subject, row_id, version) VALUES ('s', OLD.id, LAST_INSERT_ID());
END;
