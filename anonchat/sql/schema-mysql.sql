-- anonchat archive schema for MySQL / MariaDB, version 1.
--
-- The archive runs these statements at every start (they are idempotent),
-- split on semicolons after dropping comment lines, so keep semicolons out
-- of statements. etc/schema-mysql.sql is this same file, for operators.
--
-- Ordering is by (id_ms, id_seq), the numeric parts of the message id
-- "<ms>-<seq>": the primary key, so InnoDB clusters rows in id order and
-- history pages are range reads of it. created_at is UTC.
-- Sessions run with utf8mb4 and STRICT_TRANS_TABLES, so a value that does not
-- fit is refused (and set aside in chat_messages_dead_letter), never truncated.

CREATE TABLE IF NOT EXISTS schema_version (
    version INT NOT NULL PRIMARY KEY,
    applied_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS chat_messages (
    id VARCHAR(64) NOT NULL,
    id_ms BIGINT NOT NULL,
    id_seq BIGINT NOT NULL,
    type VARCHAR(16) NOT NULL,
    sender VARCHAR(64) NOT NULL,
    content MEDIUMTEXT NOT NULL,
    created_at DATETIME(3) NOT NULL,
    PRIMARY KEY (id_ms, id_seq),
    UNIQUE KEY uq_chat_messages_id (id),
    KEY ix_chat_messages_created_at (created_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Messages the database refused: the whole message as JSON (anything that
-- cannot be encoded escaped as \uXXXX), why, and when.
CREATE TABLE IF NOT EXISTS chat_messages_dead_letter (
    id VARCHAR(191) NOT NULL PRIMARY KEY,
    raw_json MEDIUMTEXT NOT NULL,
    error TEXT NOT NULL,
    failed_at DATETIME(3) NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- The audit log of moderation actions (SqlModerationLog), newest by id.
-- Adding it left the schema at version 1: older code ignores the table.
CREATE TABLE IF NOT EXISTS moderation_log (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    action VARCHAR(32) NOT NULL,
    target VARCHAR(191) NOT NULL,
    reason TEXT NOT NULL,
    created_at DATETIME(3) NOT NULL,
    KEY ix_moderation_log_created_at (created_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

INSERT IGNORE INTO schema_version (version) VALUES (1);
