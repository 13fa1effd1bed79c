"""What a production deployment must set, and what happens when it does not: with DEBUG off the app refuses
to start without a real SECRET_KEY, `make run` keeps a random one in var/secret-key, and the settings the
README's "Production" section documents pass `manage.py check --deploy`."""
import os
import re
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import override_settings

from tests.e2e.conftest import API_SERVER, free_port

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
README = (ROOT / "README.md").read_text()
PUBLIC_DEVELOPMENT_KEY = "notifier-insecure-development-key-change-me-in-production"
# Settings this file's tests give explicitly; whatever the test run's own environment says is left out.
OWN_SETTINGS = ("SECRET_KEY", "SECRET_KEY_FILE", "DEBUG", "ALLOWED_HOSTS", "DATABASE_URL", "NOTIFIER_PUBLIC_URL",
                "SECURE_SSL_REDIRECT", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "SECURE_HSTS_SECONDS",
                "SECURE_HSTS_INCLUDE_SUBDOMAINS", "SECURE_HSTS_PRELOAD", "SECURE_PROXY_SSL_HEADER")


def production_env(tmp_path, **settings) -> dict:
    """The process environment of a production process: our settings module, no key unless given (and no
    var/secret-key of this checkout: SECRET_KEY_FILE points at a file that does not exist)."""
    env = {name: value for name, value in os.environ.items() if name not in OWN_SETTINGS}
    env.update(DJANGO_SETTINGS_MODULE="notifier_project.settings", SECRET_KEY_FILE=str(tmp_path / "no-such-file"))
    env.update(settings)
    return env


def manage(env, *args) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "python"), "manage.py", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)


def readme_production_settings() -> dict:
    """The NAME=value lines of the first sh block in the README's "Production" section."""
    section = README[README.index("\n## Production\n"):]
    block = section[section.index("```sh\n") + 6:section.index("\n```", section.index("```sh\n"))]
    return dict(re.findall(r"^([A-Z][A-Z0-9_]*)=(\S+)", block, re.MULTILINE))


class TestSecretKey:
    @pytest.mark.parametrize("key", [None, "", "  ", PUBLIC_DEVELOPMENT_KEY, "x", "changeme", "ab" * 30],
                             ids=["unset", "empty", "blank", "public", "one-letter", "short", "few-distinct"])
    def test_with_debug_off_the_app_refuses_to_start_without_a_real_key(self, tmp_path, key):
        env = production_env(tmp_path) if key is None else production_env(tmp_path, SECRET_KEY=key)

        result = manage(env, "check")

        assert result.returncode != 0
        assert result.stderr.strip().count("\n") == 0, result.stderr  # one line, no traceback
        assert "SECRET_KEY" in result.stderr and "DEBUG" in result.stderr
        assert "secrets.token_urlsafe" in result.stderr  # it says how to make one

    def test_a_key_file_that_cannot_be_read_is_the_same_one_line_refusal(self, tmp_path):
        env = production_env(tmp_path, SECRET_KEY_FILE=str(tmp_path))  # a directory, not a file

        result = manage(env, "check")

        assert result.returncode != 0
        assert result.stderr.strip().count("\n") == 0, result.stderr
        assert "SECRET_KEY_FILE" in result.stderr

    def test_with_a_real_key_it_starts(self, tmp_path):
        result = manage(production_env(tmp_path, SECRET_KEY=secrets.token_urlsafe(50)), "check")

        assert result.returncode == 0, result.stderr

    def test_it_reads_the_key_from_secret_key_file(self, tmp_path):
        key = secrets.token_urlsafe(50)
        (tmp_path / "secret-key").write_text(key + "\n")
        env = production_env(tmp_path, SECRET_KEY_FILE=str(tmp_path / "secret-key"))

        result = subprocess.run([str(BIN / "python"), "-c", "from django.conf import settings; print(settings.SECRET_KEY)"],
                                cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)

        assert result.stdout.strip() == key, result.stderr

    def test_with_debug_on_it_starts_with_the_development_key(self, tmp_path):
        result = manage(production_env(tmp_path, DEBUG="true"), "check")

        assert result.returncode == 0, result.stderr

    def test_the_api_server_refuses_to_start_rather_than_restart_its_workers_forever(self, tmp_path):
        server = subprocess.Popen([str(BIN / "granian"), *API_SERVER, "--port", str(free_port()), "--workers", "1"],
                                  cwd=ROOT, env=production_env(tmp_path), stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True)
        try:
            output, _ = server.communicate(timeout=30)
        finally:
            if server.poll() is None:
                server.kill()

        assert server.returncode != 0
        assert "SECRET_KEY" in output and "Worker crash loop detected" in output


@pytest.fixture
def fresh_clone(tmp_path) -> Path:
    """What `make run` needs of a checkout, copied without var/ (no key yet), as a fresh clone has it."""
    clone = tmp_path / "clone"
    clone.mkdir()
    for name in ("Makefile", "manage.py", "celeryconfig.py", "requirements.txt", "requirements-test.txt",
                 "requirements-bench.txt"):
        shutil.copy(ROOT / name, clone / name)
    for name in ("notifier", "notifier_project", "templates"):
        shutil.copytree(ROOT / name, clone / name, ignore=shutil.ignore_patterns("__pycache__"))
    return clone


class TestMakeRunKeepsARandomKey:
    def make(self, directory: Path, *args) -> subprocess.CompletedProcess:
        return subprocess.run(["make", *args], cwd=directory, capture_output=True, text=True, timeout=60)

    def test_the_first_start_writes_a_random_key_that_later_starts_reuse(self, tmp_path, fresh_clone):
        other = tmp_path / "other"
        other.mkdir()
        shutil.copy(ROOT / "Makefile", other / "Makefile")

        assert self.make(fresh_clone, "var/secret-key").returncode == 0
        key = (fresh_clone / "var" / "secret-key").read_text().strip()
        self.make(fresh_clone, "var/secret-key")
        self.make(other, "var/secret-key")

        assert len(key) >= 50
        assert (fresh_clone / "var" / "secret-key").read_text().strip() == key  # reused
        assert (other / "var" / "secret-key").read_text().strip() != key  # random
        assert (fresh_clone / "var" / "secret-key").stat().st_mode & 0o077 == 0  # readable by its owner only

    def test_make_run_makes_the_key_before_anything_loads_the_settings(self, fresh_clone):
        commands = self.make(fresh_clone, "--dry-run", "run").stdout.splitlines()

        makes_key = next(i for i, line in enumerate(commands) if "secrets.token_urlsafe" in line)
        migrates = next(i for i, line in enumerate(commands) if "manage.py migrate" in line)
        assert makes_key < migrates

    def test_with_the_key_make_run_keeps_the_app_starts_with_no_environment(self, tmp_path, fresh_clone):
        self.make(fresh_clone, "var/secret-key")
        env = production_env(tmp_path)
        del env["SECRET_KEY_FILE"]

        result = subprocess.run([str(BIN / "python"), "manage.py", "check"], cwd=fresh_clone, env=env,
                                capture_output=True, text=True, timeout=60)

        assert result.returncode == 0, result.stderr


class TestDeployCheck:
    def test_the_production_settings_the_readme_documents_pass_check_deploy(self, tmp_path):
        documented = readme_production_settings()
        assert "SECRET_KEY" in documented and "SECURE_SSL_REDIRECT" in documented
        documented["SECRET_KEY"] = secrets.token_urlsafe(50)  # the README shows a placeholder

        result = manage(production_env(tmp_path, **documented), "check", "--deploy", "--fail-level", "WARNING")

        assert result.returncode == 0, result.stderr

    def test_healthz_answers_plain_http_probes_when_https_is_enforced(self, client, db):
        with override_settings(SECURE_SSL_REDIRECT=True):
            assert client.get("/healthz").status_code == 200
            assert client.get("/api/v1/notifications/x").status_code == 301

    @pytest.mark.parametrize("left_out", ["ALLOWED_HOSTS", "DATABASE_URL", "NOTIFIER_PUBLIC_URL"])
    def test_check_deploy_names_a_production_setting_left_at_its_local_default(self, tmp_path, left_out):
        documented = {**readme_production_settings(), "SECRET_KEY": secrets.token_urlsafe(50)}
        del documented[left_out]

        result = manage(production_env(tmp_path, **documented), "check", "--deploy", "--fail-level", "WARNING")

        assert result.returncode != 0
        [warning] = [line for line in result.stderr.splitlines() if "(notifier." in line]
        assert left_out in warning and "README, 'Production'" in result.stderr
