"""Options: one table, three sources, flags over environment over file."""

from __future__ import annotations

import attrs
from twisted.trial.unittest import SynchronousTestCase

from anonchat.settings import OPTIONS, Settings, SettingsError, attribute, resolve
from anonchat.tap import Options


class ConfigWriter(SynchronousTestCase):
    def write_config(self, text: str) -> str:
        path = self.mktemp()
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path


class SettingsTests(ConfigWriter):

    def test_defaults_match_the_contract(self) -> None:
        s = resolve({}, {})
        self.assertEqual(s, Settings())
        self.assertEqual((s.port, s.redis, s.database), ("tcp:8080", None, "sqlite:///anonchat.sqlite3"))
        self.assertEqual((s.flush_interval, s.batch_size, s.redis_retain, s.claim_idle), (1.0, 500, 1000, 30.0))
        self.assertEqual((s.nickname_prefix, s.max_content, s.max_frame, s.rate_limit), ("익명", 1000, 65536, 20.0))
        self.assertEqual((s.max_send_buffer, s.allowed_origins, s.max_connections_per_ip), (524288, None, 0))

    def test_every_option_has_a_settings_field_with_the_same_default(self) -> None:
        fields = {f.name: f.default for f in attrs.fields(Settings)}
        for option in OPTIONS:
            self.assertEqual(fields[attribute(option.name)], option.default, option.name)
        self.assertEqual(len(fields), len(OPTIONS))

    def test_flags_win_over_environment_over_file(self) -> None:
        path = self.write_config("[anonchat]\nmax-content = 10\nrate-limit = 3\nbatch-size = 7\n")
        s = resolve({"config": path, "max-content": "30"}, {"ANONCHAT_RATE_LIMIT": "5", "ANONCHAT_MAX_CONTENT": "20"})
        self.assertEqual((s.max_content, s.rate_limit, s.batch_size), (30, 5.0, 7))

    def test_config_file_may_come_from_the_environment(self) -> None:
        path = self.write_config("[anonchat]\nnickname-prefix = 손님\n")
        self.assertEqual(resolve({}, {"ANONCHAT_CONFIG": path}).nickname_prefix, "손님")

    def test_lists_are_comma_separated(self) -> None:
        s = resolve({"allowed-origins": "https://a.example, https://b.example", "trusted-proxies": "10.0.0.1"}, {})
        self.assertEqual(s.allowed_origins, frozenset({"https://a.example", "https://b.example"}))
        self.assertEqual(s.trusted_proxies, frozenset({"10.0.0.1"}))

    def test_bad_values_are_refused_with_the_option_name(self) -> None:
        with self.assertRaisesRegex(SettingsError, "--batch-size"):
            resolve({"batch-size": "many"}, {})
        with self.assertRaisesRegex(SettingsError, "--rate-limit"):
            resolve({"rate-limit": "-1"}, {})

    def test_missing_config_file_is_an_error(self) -> None:
        with self.assertRaises(SettingsError):
            resolve({"config": "/nonexistent/anonchat.ini"}, {})

    def test_the_example_config_parses(self) -> None:
        import os

        example = os.path.join(os.path.dirname(os.path.dirname(__file__)), "etc", "anonchat.ini")
        s = resolve({"config": example}, {})
        self.assertEqual(s.max_connections_per_ip, 50)


class TwistdOptionsTests(SynchronousTestCase):
    def test_help_documents_every_option(self) -> None:
        text = str(Options())
        for option in OPTIONS:
            self.assertIn(f"--{option.name}", text)

    def test_parse_builds_settings(self) -> None:
        options = Options()
        options.parseOptions(["--port", "tcp:9999", "--max-frame", "1024"])
        self.assertEqual((options.settings.port, options.settings.max_frame), ("tcp:9999", 1024))

    def test_bad_value_is_a_usage_error(self) -> None:
        with self.assertRaises(SystemExit):
            Options().parseOptions(["--max-frame", "big"])


class BadValueTests(SynchronousTestCase):
    """A value the server cannot run with is a usage error, never a traceback at start."""

    def test_zero_where_zero_cannot_work_is_refused(self) -> None:
        for option in ["flush-interval", "batch-size", "node-ttl", "max-frame", "max-content", "connect-timeout",
                       "max-send-buffer", "sockjs-heartbeat", "sockjs-disconnect-delay", "max-subscriptions"]:
            with self.assertRaisesRegex(SettingsError, f"--{option}: 0 must be more than zero"):
                resolve({option: "0"}, {})

    def test_zero_means_off_where_the_contract_says_so(self) -> None:
        s = resolve({"rate-limit": "0", "max-connections-per-ip": "0", "heartbeat": "0", "redis-retain": "0"}, {})
        self.assertEqual((s.rate_limit, s.max_connections_per_ip, s.heartbeat, s.redis_retain), (0.0, 0, 0, 0))

    def test_urls_are_checked_when_parsed(self) -> None:
        with self.assertRaisesRegex(SettingsError, "--redis"):
            resolve({"redis": "http://127.0.0.1:6379"}, {})
        with self.assertRaisesRegex(SettingsError, "--database"):
            resolve({"database": "postgres://x/y"}, {})
        s = resolve({"redis": "rediss://127.0.0.1:6380/2", "database": "mysql://u:p@127.0.0.1:3306/db"}, {})
        self.assertEqual(s.redis, "rediss://127.0.0.1:6380/2")

    def test_a_database_replica_is_a_mysql_url_beside_a_mysql_database(self) -> None:
        primary, replica = "mysql://u:p@10.0.0.1:3306/chat", "mysql://u:p@10.0.0.2:3306/chat?read_timeout=3"
        self.assertIsNone(resolve({}, {}).database_replica)
        s = resolve({"database": primary, "database-replica": replica}, {})
        self.assertEqual((s.database, s.database_replica), (primary, replica))
        self.assertEqual(resolve({"database": primary}, {"ANONCHAT_DATABASE_REPLICA": replica}).database_replica,
                         replica)
        with self.assertRaisesRegex(SettingsError, "--database-replica: .*mysql://"):
            resolve({"database": primary, "database-replica": "sqlite:///replica.sqlite3"}, {})
        with self.assertRaisesRegex(SettingsError, "--database-replica"):
            resolve({"database": primary, "database-replica": "mysql://u:p@10.0.0.2:3306/chat?timeout=3"}, {})
        with self.assertRaisesRegex(SettingsError, "--database-replica needs a mysql:// --database"):
            resolve({"database-replica": replica}, {})


class ConfigFileTests(ConfigWriter):
    """A misspelt key or section is a usage error naming it, never silently ignored."""

    def refused(self, text: str, naming: str) -> None:
        with self.assertRaisesRegex(SettingsError, naming):
            resolve({"config": self.write_config(text)}, {})

    def test_unknown_key_is_refused_naming_it(self) -> None:
        self.refused("[anonchat]\nmax-content = 10\nmax-contnet = 20\n", "unknown key 'max-contnet'")

    def test_unknown_section_is_refused_naming_it(self) -> None:
        self.refused("[anonchat]\nmax-content = 10\n[anonchta]\nrate-limit = 3\n", r"\[anonchta\]")
        self.refused("[chat]\nmax-content = 10\n", r"\[chat\]")

    def test_keys_in_the_default_section_are_checked_too(self) -> None:
        self.refused("[DEFAULT]\nratelimit = 3\n[anonchat]\nmax-content = 10\n", "ratelimit")

    def test_underscore_spelling_of_a_known_key_is_accepted(self) -> None:
        path = self.write_config("[anonchat]\nmax_content = 10\n")
        self.assertEqual(resolve({"config": path}, {}).max_content, 10)


class ValidationTests(SynchronousTestCase):
    def test_origins_need_a_scheme_and_a_host(self) -> None:
        for bad in ["localhost:8097", "chat.example.com", "https://", "https://a.example/", "https://a.example/chat",
                    "https://a.example:port", "https://user@a.example", "https://a.example?x=1"]:
            with self.assertRaisesRegex(SettingsError, "--allowed-origins: .*scheme://host", msg=bad):
                resolve({"allowed-origins": f"https://ok.example,{bad}"}, {})

    def test_origins_with_scheme_host_and_port_are_accepted(self) -> None:
        s = resolve({"allowed-origins": "http://localhost:8097, https://chat.example.com,http://[::1]:8080"}, {})
        self.assertEqual(s.allowed_origins,
                         frozenset({"http://localhost:8097", "https://chat.example.com", "http://[::1]:8080"}))

    def test_secrets_must_not_be_guessable(self) -> None:
        for option in ("admin-token", "access-jwt-secret"):
            with self.assertRaisesRegex(SettingsError, f"--{option}: .*16 characters"):
                resolve({option: "short"}, {})
            self.assertEqual(getattr(resolve({option: "x" * 16}, {}), option.replace("-", "_")), "x" * 16)

    def test_files_must_be_readable_at_start(self) -> None:
        for option in ("admin-token-file", "blocked-words", "access-jwt-public-key"):
            with self.assertRaisesRegex(SettingsError, f"--{option}: cannot read /nonexistent/x"):
                resolve({option: "/nonexistent/x"}, {})

    def test_a_secret_and_its_file_are_exclusive(self) -> None:
        with open(self.mktemp(), "w") as f:
            f.write("x" * 32)
        with self.assertRaisesRegex(SettingsError, "give one of them"):
            resolve({"admin-token": "y" * 20, "admin-token-file": f.name}, {})
        with self.assertRaisesRegex(SettingsError, "give one of them"):
            resolve({"access-jwt-secret": "y" * 20, "access-jwt-public-key": f.name}, {})

    def sender_column_chars(self) -> int:
        import os
        import re

        schema = os.path.join(os.path.dirname(os.path.dirname(__file__)), "anonchat", "sql", "schema-mysql.sql")
        with open(schema, encoding="utf-8") as f:
            found = re.search(r"^\s*sender\s+VARCHAR\((\d+)\)", f.read(), re.MULTILINE | re.IGNORECASE)
        assert found is not None, "no sender column in the MySQL schema"
        return int(found.group(1))

    def test_nickname_prefix_must_fit_the_archive_sender_column(self) -> None:
        longest = self.sender_column_chars() - len("-12345")
        self.assertEqual(resolve({"nickname-prefix": "가" * longest}, {}).nickname_prefix, "가" * longest)
        with self.assertRaisesRegex(SettingsError, f"--nickname-prefix: .*{longest}"):
            resolve({"nickname-prefix": "가" * (longest + 1)}, {})

    def test_nickname_prefix_must_be_storable_text(self) -> None:
        for bad, why in [("bad\udcff", "not valid Unicode"), ("", "empty")]:
            with self.assertRaisesRegex(SettingsError, f"--nickname-prefix: .*{why}"):
                resolve({"nickname-prefix": bad}, {})

    def test_log_format_is_text_or_json(self) -> None:
        self.assertEqual(resolve({"log-format": "json"}, {}).log_format, "json")
        self.assertEqual(resolve({"log-format": "text"}, {}).log_format, "text")
        with self.assertRaisesRegex(SettingsError, "--log-format: .*text or json"):
            resolve({"log-format": "xml"}, {})

    def test_workers_default_to_one_and_must_be_positive(self) -> None:
        self.assertEqual(resolve({}, {}).workers, 1)
        redis = {"redis": "redis://127.0.0.1:6379/0"}
        self.assertEqual(resolve({"workers": "3", **redis}, {}).workers, 3)
        for bad in ("0", "-2", "two"):
            with self.assertRaisesRegex(SettingsError, "^--workers: "):
                resolve({"workers": bad, **redis}, {})

    def test_several_workers_need_redis(self) -> None:
        with self.assertRaisesRegex(SettingsError, "^--workers 2 needs --redis"):
            resolve({"workers": "2"}, {})
        self.assertEqual(resolve({"workers": "1"}, {}).workers, 1)  # one process may keep its state in itself

    def test_several_workers_share_a_tcp_or_tls_port_only(self) -> None:
        redis = {"redis": "redis://127.0.0.1:6379/0", "workers": "2"}
        for port in ("tcp:8080", "tcp:8080:interface=127.0.0.1", "tcp6:8080", "ssl:8443:privateKey=k.pem",
                     "TCP:8080"):
            self.assertEqual(resolve({"port": port, **redis}, {}).port, port)
        for port in ("unix:/run/anonchat.sock", "systemd:domain=INET:index=0", "8080"):
            with self.assertRaisesRegex(SettingsError, "^--workers 2: --port .* tcp:, tcp6: or ssl:"):
                resolve({"port": port, **redis}, {})

    def test_number_errors_say_what_was_expected(self) -> None:
        with self.assertRaisesRegex(SettingsError, "^--max-frame: 'big' is not a whole number$"):
            resolve({"max-frame": "big"}, {})
        with self.assertRaisesRegex(SettingsError, "^--flush-interval: 'soon' is not a number$"):
            resolve({"flush-interval": "soon"}, {})


class UsageOutputTests(SynchronousTestCase):
    def test_help_shows_each_default_once(self) -> None:
        text = " ".join(str(Options()).split())
        for option in OPTIONS:
            start = text.index(f"--{option.name}=")
            end = text.find(" --", start + 1)
            entry = text[start:end]
            self.assertLessEqual(entry.lower().count("default"), 1, entry)
            self.assertNotIn("[default: None]", entry)

    def test_option_error_is_one_line_and_a_hint_not_the_help(self) -> None:
        import io
        import sys

        for argv, why in [(["--max-frame", "big"], "--max-frame: 'big' is not a whole number"),
                          (["--no-such-option"], "option --no-such-option not recognized")]:
            err = io.StringIO()
            self.patch(sys, "stderr", err)
            with self.assertRaises(SystemExit) as raised:
                Options().parseOptions(argv)
            self.assertEqual(raised.exception.code, 1)
            lines = err.getvalue().splitlines()
            self.assertEqual(lines[0], f"twistd anonchat: {why}")
            self.assertEqual(len(lines), 2, lines)
            self.assertIn("--help", lines[1])
