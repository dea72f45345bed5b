-- Removes exactly what postgres.sql added.
DROP TRIGGER IF EXISTS gatepass_tokens_written ON personal_access_tokens;
DROP TRIGGER IF EXISTS gatepass_tokens_updated ON personal_access_tokens;
DROP TRIGGER IF EXISTS gatepass_tokens_truncated ON personal_access_tokens;
DROP TRIGGER IF EXISTS gatepass_services_written ON {services};
DROP TRIGGER IF EXISTS gatepass_services_updated ON {services};
DROP TRIGGER IF EXISTS gatepass_services_truncated ON {services};
DROP FUNCTION IF EXISTS gatepass_sanctum_changed();
DROP FUNCTION IF EXISTS gatepass_sanctum_flushed();
DROP TABLE IF EXISTS gatepass_row_versions;
DROP SEQUENCE IF EXISTS gatepass_change_seq;
DROP TABLE IF EXISTS gatepass_migrations;
