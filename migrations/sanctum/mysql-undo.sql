-- Removes exactly what mysql.sql added.
DROP TRIGGER IF EXISTS gatepass_tokens_inserted;
DROP TRIGGER IF EXISTS gatepass_tokens_updated;
DROP TRIGGER IF EXISTS gatepass_tokens_deleted;
DROP TRIGGER IF EXISTS gatepass_services_inserted;
DROP TRIGGER IF EXISTS gatepass_services_updated;
DROP TRIGGER IF EXISTS gatepass_services_deleted;
DROP TABLE IF EXISTS gatepass_changes;
DROP TABLE IF EXISTS gatepass_row_versions;
DROP TABLE IF EXISTS gatepass_versions;
DROP TABLE IF EXISTS gatepass_migrations;
