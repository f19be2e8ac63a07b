-- The SQL moderation store's tables for MySQL / MariaDB (SqlModerationStore
-- creates them at every start: idempotent, no semicolons inside statements).
-- Used when moderation state lives in the database rather than in Redis.
-- Times are DATETIME(3) UTC, like chat_messages.created_at; ids are strings
-- in the API.

CREATE TABLE IF NOT EXISTS moderation_sanctions (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    kind VARCHAR(8) NOT NULL,
    client VARCHAR(64) NOT NULL,
    name VARCHAR(64) NOT NULL,
    reason TEXT NOT NULL,
    created_at DATETIME(3) NOT NULL,
    expires_at DATETIME(3) NULL,
    KEY ix_moderation_sanctions_kind_expires (kind, expires_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- One row per reporter per message: the unique key refuses a second one.
CREATE TABLE IF NOT EXISTS moderation_reports (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    message_id VARCHAR(64) NOT NULL,
    reporter VARCHAR(64) NOT NULL,
    reason TEXT NOT NULL,
    created_at DATETIME(3) NOT NULL,
    UNIQUE KEY uq_moderation_reports_message_reporter (message_id, reporter)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Deleted message ids, kept as long as the archive keeps the messages.
CREATE TABLE IF NOT EXISTS moderation_deleted (
    id VARCHAR(64) NOT NULL PRIMARY KEY,
    deleted_at DATETIME(3) NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS moderation_names (
    name VARCHAR(64) NOT NULL PRIMARY KEY,
    client VARCHAR(64) NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Room-wide values by name: slow_mode (seconds), client_key (hex).
CREATE TABLE IF NOT EXISTS moderation_settings (
    id VARCHAR(64) NOT NULL PRIMARY KEY,
    value TEXT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin
