"""Every option in one table: its default, its type and its help.

The twistd options, the ``--config`` ini file and the ``ANONCHAT_*``
environment all read this table, so a limit exists in one place only.
Precedence: command line, then environment, then file, then default.
"""

from __future__ import annotations

import configparser
import difflib
from typing import Any, Callable, Mapping
from urllib.parse import urlsplit

import attrs

#: characters of ``chat_messages.sender`` (VARCHAR(64) in anonchat/sql/schema-mysql.sql);
#: a nickname is ``<prefix>-<5 digits>``, so a longer prefix could never be archived
SENDER_COLUMN_CHARS = 64
NICKNAME_SUFFIX_CHARS = len("-12345")
SECTION = "anonchat"


def _csv(value: str) -> frozenset[str] | None:
    items = frozenset(v.strip() for v in value.split(",") if v.strip())
    return items or None


def _origins(value: str) -> frozenset[str] | None:
    """Origins as browsers send them: ``scheme://host[:port]``, nothing more,
    or no browser would ever match (every one would get 403)."""
    origins = _csv(value)
    for origin in origins or ():
        parts = urlsplit(origin)
        try:
            port_ok = parts.port is None or parts.port > 0
        except ValueError:
            port_ok = False
        if (
            not parts.scheme
            or not parts.hostname
            or "@" in parts.netloc
            or not port_ok
            or origin != f"{parts.scheme}://{parts.netloc}"
        ):
            raise ValueError(f"{origin!r} is not an origin: write scheme://host[:port], as in http://localhost:8097")
    return origins


def _nickname_prefix(value: str) -> str:
    longest = SENDER_COLUMN_CHARS - NICKNAME_SUFFIX_CHARS
    if not value:
        raise ValueError("the prefix must not be empty")
    if len(value) > longest:
        raise ValueError(f"{len(value)} characters; at most {longest} fit the archive's sender column")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("the prefix is not valid Unicode text") from None
    return value


def _readable_file(value: str) -> str:
    try:
        with open(value, "rb") as f:
            f.read(1)
    except OSError as e:
        raise ValueError(f"cannot read {value}: {e.strerror}") from None
    return value


def _token_file(value: str) -> str:
    try:
        with open(value, encoding="utf-8") as f:
            _secret(f.read())
    except OSError as e:
        raise ValueError(f"cannot read {value}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{value} is not UTF-8 text") from None
    return value


def _secret(value: str) -> str:
    if len(value.strip()) < 16:
        raise ValueError("must be at least 16 characters (a guessable secret protects nothing)")
    return value.strip()


def _one_of(*choices: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if value not in choices:
            raise ValueError(f"{value!r}: must be {' or '.join(choices)}")
        return value

    return parse


def _convert(kind: Callable[[str], float], value: str) -> float:
    try:
        return kind(value)
    except ValueError:
        raise ValueError(f"{value!r} is not {'a whole number' if kind is int else 'a number'}") from None


def _at_least(kind: Callable[[str], float], zero_allowed: bool) -> Callable[[str], Any]:
    def parse(value: str) -> Any:
        number = _convert(kind, value)
        if number < 0 or (number == 0 and not zero_allowed):
            raise ValueError(f"{value} must be {'zero or more' if zero_allowed else 'more than zero'}")
        return number

    return parse


def _redis_url(value: str) -> str:
    from anonchat.store.redis_connection import parse_redis_url

    parse_redis_url(value)
    return value


def _database_url(value: str) -> str:
    from anonchat.store.sql_archive import connection_settings

    connection_settings(value)
    return value


def _replica_url(value: str) -> str:
    if value.partition(":")[0].lower() != "mysql":
        raise ValueError("a read replica is mysql://user:password@host:port/db")
    return _database_url(value)


#: Zero means "off" (or "none kept") for these; the others must be positive.
_count = _at_least(int, zero_allowed=True)
_number = _at_least(float, zero_allowed=True)
_positive_count = _at_least(int, zero_allowed=False)
_positive_number = _at_least(float, zero_allowed=False)


@attrs.frozen
class Option:
    name: str
    default: Any
    parse: Callable[[str], Any]
    help: str


OPTIONS: tuple[Option, ...] = (
    Option("port", "tcp:8080", str, "Twisted server endpoint to listen on (ssl: for TLS)"),
    Option("redis", None, _redis_url,
           "redis://[:password@]host:port/db, rediss://, or sentinel://host:port[,host:port...]/service/db; "
           "default: in-process buffer"),
    Option("database", "sqlite:///anonchat.sqlite3", _database_url, "sqlite:///path or mysql://user:password@host:port/db"),
    Option("flush-interval", 1.0, _positive_number, "seconds between flushes to the database"),
    Option("batch-size", 500, _positive_count, "messages per flush transaction"),
    Option("redis-retain", 1000, _count, "flushed messages kept in the buffer for recent and x-since-id"),
    Option("claim-idle", 30.0, _number, "seconds before another node reclaims a dead node's batch"),
    Option("node-ttl", 15.0, _positive_number, "seconds a silent node's users stay online (with Redis; beat = a third)"),
    Option("nickname-prefix", "익명", _nickname_prefix, "nicknames are <prefix>-<5 digits>"),
    Option("max-content", 1000, _positive_count, "characters of message content"),
    Option("max-frame", 65536, _positive_count, "bytes of one STOMP frame"),
    Option("max-headers", 100, _positive_count, "headers in one STOMP frame"),
    Option("max-header-length", 8192, _positive_count, "bytes of one STOMP header line"),
    Option("max-subscriptions", 100, _positive_count, "subscriptions per connection"),
    Option("connect-timeout", 10.0, _positive_number, "seconds a connection may take to send CONNECT"),
    Option("heartbeat", 10000, _count, "heart-beat interval the server offers, in milliseconds"),
    Option("rate-limit", 20.0, _number, "messages per second per connection, 0 = off (burst = twice)"),
    Option("max-send-buffer", 524288, _positive_count, "unsent bytes per client before it is disconnected as too slow"),
    Option("allowed-origins", None, _origins, "comma-separated origins for WebSocket, SockJS and CORS (default: any)"),
    Option("max-connections-per-ip", 0, _count, "open connections per client address, 0 = off"),
    Option("trusted-proxies", None, _csv, "comma-separated proxy addresses whose X-Forwarded-For is believed"),
    Option("sockjs-heartbeat", 25.0, _positive_number, "seconds between SockJS heartbeat frames"),
    Option("sockjs-disconnect-delay", 5.0, _positive_number, "seconds before a vanished SockJS polling client is gone"),
    Option("frame-rate", 100.0, _number, "client frames per second per connection, 0 = off (burst = twice)"),
    Option("max-pending-sends", 100, _positive_count, "SENDs per connection waiting for the buffer before reading stops"),
    Option("max-request-body", 1048576, _positive_count, "bytes of one HTTP request body (SockJS sends, REST)"),
    Option("api-rate", 20.0, _number, "REST requests per second per client address, 0 = off (burst = twice)"),
    Option("max-replay", 1000, _positive_count, "messages one x-since-id replay delivers at most"),
    Option("history-readers", 4, _positive_count, "concurrent history reads (REST pages, replays) on their own pool"),
    Option("ws-ping-interval", 30.0, _number, "seconds between WebSocket pings when STOMP heart-beats are off, 0 = never"),
    Option("ws-ping-timeout", 10.0, _positive_number, "seconds a WebSocket peer has to answer a ping"),
    Option("start-timeout", 30.0, _positive_number, "seconds to reach Redis and the database at start"),
    Option("log-format", "text", _one_of("text", "json"), "text or json"),
    Option("rejoin-grace", 30.0, _number, "seconds a dropped user's nickname waits for a rejoin, 0 = none"),
    Option("admin-token", None, _secret, "bearer token for the moderation API /api/admin/ (default: no API)"),
    Option("admin-token-file", None, _token_file, "a file holding the admin token (instead of --admin-token)"),
    Option("blocked-words", None, _readable_file, "a file of blocked words, one a line (reloaded on SIGHUP)"),
    Option("access-jwt-secret", None, _secret, "HS256 secret: only holders of a signed token may chat"),
    Option("access-jwt-public-key", None, _readable_file, "PEM public key (RS256/ES256): only token holders may chat"),
    Option("access-jwt-audience", None, str, "the audience access tokens must name"),
    Option("database-replica", None, _replica_url, "mysql://user:password@host:port/db: a read replica for history"),
    Option("redis-wait", 0, _count, "replicas that must hold a message before its RECEIPT (Redis WAIT), 0 = none"),
    Option("redis-wait-timeout", 500, _positive_count, "milliseconds a RECEIPT waits for --redis-wait replicas"),
    Option("workers", 1, _positive_count, "node processes sharing the port (tcp: or ssl: only; needs --redis)"),
    Option("history-rate", 3000.0, _number, "history messages per second a node serves (REST and replays), 0 = off"),
    Option("config", None, str, "an ini file with an [anonchat] section (example: etc/anonchat.ini)"),
)


def attribute(name: str) -> str:
    return name.replace("-", "_")


#: Defaults live in OPTIONS only; Settings adds the types.
_DEFAULTS: dict[str, Any] = {attribute(option.name): option.default for option in OPTIONS}


@attrs.frozen
class Settings:
    port: str = _DEFAULTS["port"]
    redis: str | None = _DEFAULTS["redis"]
    database: str = _DEFAULTS["database"]
    flush_interval: float = _DEFAULTS["flush_interval"]
    batch_size: int = _DEFAULTS["batch_size"]
    redis_retain: int = _DEFAULTS["redis_retain"]
    claim_idle: float = _DEFAULTS["claim_idle"]
    node_ttl: float = _DEFAULTS["node_ttl"]
    nickname_prefix: str = _DEFAULTS["nickname_prefix"]
    max_content: int = _DEFAULTS["max_content"]
    max_frame: int = _DEFAULTS["max_frame"]
    max_headers: int = _DEFAULTS["max_headers"]
    max_header_length: int = _DEFAULTS["max_header_length"]
    max_subscriptions: int = _DEFAULTS["max_subscriptions"]
    connect_timeout: float = _DEFAULTS["connect_timeout"]
    heartbeat: int = _DEFAULTS["heartbeat"]
    rate_limit: float = _DEFAULTS["rate_limit"]
    max_send_buffer: int = _DEFAULTS["max_send_buffer"]
    allowed_origins: frozenset[str] | None = _DEFAULTS["allowed_origins"]
    max_connections_per_ip: int = _DEFAULTS["max_connections_per_ip"]
    trusted_proxies: frozenset[str] | None = _DEFAULTS["trusted_proxies"]
    sockjs_heartbeat: float = _DEFAULTS["sockjs_heartbeat"]
    sockjs_disconnect_delay: float = _DEFAULTS["sockjs_disconnect_delay"]
    frame_rate: float = _DEFAULTS["frame_rate"]
    max_pending_sends: int = _DEFAULTS["max_pending_sends"]
    max_request_body: int = _DEFAULTS["max_request_body"]
    api_rate: float = _DEFAULTS["api_rate"]
    max_replay: int = _DEFAULTS["max_replay"]
    history_readers: int = _DEFAULTS["history_readers"]
    ws_ping_interval: float = _DEFAULTS["ws_ping_interval"]
    ws_ping_timeout: float = _DEFAULTS["ws_ping_timeout"]
    start_timeout: float = _DEFAULTS["start_timeout"]
    log_format: str = _DEFAULTS["log_format"]
    rejoin_grace: float = _DEFAULTS["rejoin_grace"]
    admin_token: str | None = _DEFAULTS["admin_token"]
    admin_token_file: str | None = _DEFAULTS["admin_token_file"]
    blocked_words: str | None = _DEFAULTS["blocked_words"]
    access_jwt_secret: str | None = _DEFAULTS["access_jwt_secret"]
    access_jwt_public_key: str | None = _DEFAULTS["access_jwt_public_key"]
    access_jwt_audience: str | None = _DEFAULTS["access_jwt_audience"]
    database_replica: str | None = _DEFAULTS["database_replica"]
    redis_wait: int = _DEFAULTS["redis_wait"]
    redis_wait_timeout: int = _DEFAULTS["redis_wait_timeout"]
    workers: int = _DEFAULTS["workers"]
    history_rate: float = _DEFAULTS["history_rate"]
    config: str | None = _DEFAULTS["config"]


class SettingsError(ValueError):
    pass


def resolve(command_line: Mapping[str, str | None], environ: Mapping[str, str]) -> Settings:
    """Settings from raw option strings: flags win over env, env over file."""
    config_path = command_line.get("config") or environ.get("ANONCHAT_CONFIG")
    from_file = _read_config(config_path) if config_path else {}
    values: dict[str, Any] = {}
    for option in OPTIONS:
        env_name = "ANONCHAT_" + attribute(option.name).upper()
        raw = command_line.get(option.name)
        if raw is None:
            raw = environ.get(env_name)
        if raw is None:
            raw = from_file.get(option.name, from_file.get(attribute(option.name)))
        if raw is None:
            values[attribute(option.name)] = option.default
            continue
        try:
            values[attribute(option.name)] = option.parse(raw)
        except ValueError as e:
            raise SettingsError(f"--{option.name}: {e}") from None
    for one, other in (("admin-token", "admin-token-file"), ("access-jwt-secret", "access-jwt-public-key")):
        if values[attribute(one)] is not None and values[attribute(other)] is not None:
            raise SettingsError(f"--{one} and --{other}: give one of them, not both")
    if values["database_replica"] is not None and not values["database"].lower().startswith("mysql:"):
        raise SettingsError("--database-replica needs a mysql:// --database to be a replica of")
    _check_workers(values)
    return Settings(**values)


#: endpoint types whose listening socket a worker can adopt (``ssl`` adopts
#: a TCP socket and wraps it in TLS, with the context built in the worker)
SHAREABLE_ENDPOINTS = ("tcp", "tcp6", "ssl")


def _check_workers(values: Mapping[str, Any]) -> None:
    """Several workers share one chat only through Redis, and one socket
    only if it is a plain TCP (or TLS over TCP) one."""
    workers = values["workers"]
    if workers == 1:
        return
    if values["redis"] is None:
        raise SettingsError(f"--workers {workers} needs --redis: in-process state cannot be shared between workers")
    kind = values["port"].partition(":")[0].lower() if ":" in values["port"] else ""
    if kind not in SHAREABLE_ENDPOINTS:
        raise SettingsError(f"--workers {workers}: --port {values['port']!r} cannot be shared;"
                            " use a tcp:, tcp6: or ssl: endpoint")


def _read_config(path: str) -> dict[str, str]:
    """The ``[anonchat]`` section; any other section or key is an error, since
    a misspelt one would otherwise be ignored without a word."""
    parser = configparser.ConfigParser()
    try:
        if not parser.read(path, encoding="utf-8"):
            raise SettingsError(f"--config: cannot read {path}")
    except (configparser.Error, UnicodeDecodeError) as e:
        raise SettingsError(f"--config: {path} is not an ini file: {' '.join(str(e).split())}") from None
    for section in parser.sections():
        if section != SECTION:
            raise SettingsError(f"--config: {path}: unknown section [{section}]; options go in [{SECTION}]")
    known = {option.name for option in OPTIONS} | {attribute(option.name) for option in OPTIONS}
    values = dict(parser.items(SECTION)) if parser.has_section(SECTION) else dict(parser.defaults())
    for key in values:
        if key not in known:
            near = difflib.get_close_matches(key, sorted(known), n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise SettingsError(f"--config: {path}: unknown key {key!r}{hint}")
    return values
