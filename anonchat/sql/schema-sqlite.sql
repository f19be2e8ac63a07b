-- anonchat archive schema for SQLite, version 1: the same tables and columns
-- as schema-mysql.sql (see there), in SQLite's types.
--
-- created_at is ISO-8601 UTC text with milliseconds, 2026-11-24T06:11:54.123Z,
-- which sorts as time and reads as one.

CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER NOT NULL PRIMARY KEY,
    applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE IF NOT EXISTS chat_messages (
    id TEXT NOT NULL UNIQUE,
    id_ms INTEGER NOT NULL,
    id_seq INTEGER NOT NULL,
    type TEXT NOT NULL,
    sender TEXT NOT NULL,
    content TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (id_ms, id_seq)
);

CREATE INDEX IF NOT EXISTS ix_chat_messages_created_at ON chat_messages (created_at);

CREATE TABLE IF NOT EXISTS chat_messages_dead_letter (
    id TEXT NOT NULL PRIMARY KEY,
    raw_json TEXT NOT NULL,
    error TEXT NOT NULL,
    failed_at TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS moderation_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_at TEXT NOT NULL
);

CREATE INDEX IF NOT EXISTS ix_moderation_log_created_at ON moderation_log (created_at);

INSERT OR IGNORE INTO schema_version (version) VALUES (1);
