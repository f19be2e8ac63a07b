-- The SQL moderation store's tables for SQLite: the same tables and columns
-- as moderation-mysql.sql (see there), in SQLite's types. Times are ISO-8601
-- UTC text with milliseconds, like chat_messages.created_at.

CREATE TABLE IF NOT EXISTS moderation_sanctions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    client TEXT NOT NULL,
    name TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT
);

CREATE INDEX IF NOT EXISTS ix_moderation_sanctions_kind_expires ON moderation_sanctions (kind, expires_at);

CREATE TABLE IF NOT EXISTS moderation_reports (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id TEXT NOT NULL,
    reporter TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (message_id, reporter)
);

CREATE TABLE IF NOT EXISTS moderation_deleted (
    id TEXT NOT NULL PRIMARY KEY,
    deleted_at TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS moderation_names (
    name TEXT NOT NULL PRIMARY KEY,
    client TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS moderation_settings (
    id TEXT NOT NULL PRIMARY KEY,
    value TEXT NOT NULL
)
