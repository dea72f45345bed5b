-- gatepass beside Laravel Sanctum's tables (SPEC §10), MySQL and MariaDB.
-- Nothing here alters personal_access_tokens or {services}. MySQL has no
-- LISTEN/NOTIFY: triggers append every change that can alter a decision to
-- gatepass_changes (the native schema's log, polled the same way), whoever
-- the writer is. Versions come from the gatepass_versions counter and are
-- kept beside Laravel's rows in gatepass_row_versions.
CREATE TABLE gatepass_versions (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY
);

CREATE TABLE gatepass_changes (
    id         BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    subject    CHAR(1) NOT NULL,
    row_id     BIGINT NOT NULL,
    version    BIGINT NOT NULL,
    -- Laravel's hex `token`, as written (the feed reads hex or bytes).
    token_hash VARCHAR(64) NULL,
    at         DATETIME(6) NOT NULL DEFAULT (UTC_TIMESTAMP(6)),
    KEY gatepass_changes_at (at)
);

CREATE TABLE gatepass_row_versions (
    subject CHAR(1) NOT NULL,
    row_id  BIGINT NOT NULL,
    version BIGINT NOT NULL,
    PRIMARY KEY (subject, row_id)
);

CREATE TRIGGER gatepass_tokens_inserted AFTER INSERT ON personal_access_tokens
FOR EACH ROW BEGIN
    DECLARE next_version BIGINT;
    INSERT INTO gatepass_versions () VALUES ();
    SET next_version = LAST_INSERT_ID();
    INSERT INTO gatepass_row_versions (subject, row_id, version) VALUES ('t', NEW.id, next_version)
        ON DUPLICATE KEY UPDATE version = next_version;
    INSERT INTO gatepass_changes (subject, row_id, version, token_hash)
        VALUES ('t', NEW.id, next_version, LEFT(NEW.token, 64));
END;

-- last_used_at, updated_at and name do not change decisions.
CREATE TRIGGER gatepass_tokens_updated AFTER UPDATE ON personal_access_tokens
FOR EACH ROW BEGIN
    DECLARE next_version BIGINT;
    IF NOT (OLD.id <=> NEW.id AND OLD.tokenable_type <=> NEW.tokenable_type
            AND OLD.tokenable_id <=> NEW.tokenable_id AND OLD.token <=> NEW.token
            AND OLD.abilities <=> NEW.abilities AND OLD.expires_at <=> NEW.expires_at
            AND OLD.created_at <=> NEW.created_at) THEN
        INSERT INTO gatepass_versions () VALUES ();
        SET next_version = LAST_INSERT_ID();
        DELETE FROM gatepass_row_versions WHERE subject = 't' AND row_id = OLD.id;
        INSERT INTO gatepass_row_versions (subject, row_id, version) VALUES ('t', NEW.id, next_version)
            ON DUPLICATE KEY UPDATE version = next_version;
        INSERT INTO gatepass_changes (subject, row_id, version, token_hash)
            VALUES ('t', OLD.id, next_version, LEFT(OLD.token, 64));
        IF NOT (OLD.id <=> NEW.id AND OLD.token <=> NEW.token) THEN
            INSERT INTO gatepass_changes (subject, row_id, version, token_hash)
                VALUES ('t', NEW.id, next_version, LEFT(NEW.token, 64));
        END IF;
    END IF;
END;

CREATE TRIGGER gatepass_tokens_deleted AFTER DELETE ON personal_access_tokens
FOR EACH ROW BEGIN
    INSERT INTO gatepass_versions () VALUES ();
    DELETE FROM gatepass_row_versions WHERE subject = 't' AND row_id = OLD.id;
    INSERT INTO gatepass_changes (subject, row_id, version, token_hash)
        VALUES ('t', OLD.id, LAST_INSERT_ID(), LEFT(OLD.token, 64));
END;

CREATE TRIGGER gatepass_services_inserted AFTER INSERT ON {services}
FOR EACH ROW BEGIN
    DECLARE next_version BIGINT;
    INSERT INTO gatepass_versions () VALUES ();
    SET next_version = LAST_INSERT_ID();
    INSERT INTO gatepass_row_versions (subject, row_id, version) VALUES ('s', NEW.id, next_version)
        ON DUPLICATE KEY UPDATE version = next_version;
    INSERT INTO gatepass_changes (subject, row_id, version) VALUES ('s', NEW.id, next_version);
END;

CREATE TRIGGER gatepass_services_updated AFTER UPDATE ON {services}
FOR EACH ROW BEGIN
    DECLARE next_version BIGINT;
    IF NOT (OLD.id <=> NEW.id AND OLD.name <=> NEW.name AND OLD.is_active <=> NEW.is_active
            AND OLD.ip_allowlist <=> NEW.ip_allowlist) THEN
        INSERT INTO gatepass_versions () VALUES ();
        SET next_version = LAST_INSERT_ID();
        DELETE FROM gatepass_row_versions WHERE subject = 's' AND row_id = OLD.id;
        INSERT INTO gatepass_row_versions (subject, row_id, version) VALUES ('s', NEW.id, next_version)
            ON DUPLICATE KEY UPDATE version = next_version;
        INSERT INTO gatepass_changes (subject, row_id, version) VALUES ('s', OLD.id, next_version);
    END IF;
END;

CREATE TRIGGER gatepass_services_deleted AFTER DELETE ON {services}
FOR EACH ROW BEGIN
    INSERT INTO gatepass_versions () VALUES ();
    DELETE FROM gatepass_row_versions WHERE subject = 's' AND row_id = OLD.id;
    INSERT INTO gatepass_changes (subject, row_id, version) VALUES ('s', OLD.id, LAST_INSERT_ID());
END;
