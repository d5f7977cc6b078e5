"""The chat is for this machine unless a password guards it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from kbqa.access import DiskScope, LoginThrottle, check_exposure, is_loopback, password_ok
from kbqa.errors import SettingError


@pytest.mark.parametrize(("address", "loopback"), [
    ("127.0.0.1", True), ("localhost", True), ("::1", True), ("[::1]", True),
    ("127.0.0.2", True), ("0.0.0.0", False), ("192.168.1.5", False), ("::", False),
    ("myhost.example", False)])
def test_loopback_addresses(address: str, loopback: bool) -> None:
    assert is_loopback(address) is loopback


def test_serving_beyond_this_machine_needs_a_password() -> None:
    check_exposure("127.0.0.1", "")
    check_exposure("0.0.0.0", "s3cret")
    with pytest.raises(SettingError, match="KBQA_UI_PASSWORD"):
        check_exposure("0.0.0.0", "")


def test_passwords_compare_exactly() -> None:
    assert password_ok("s3cret", "s3cret")
    assert not password_ok("s3cre", "s3cret")
    assert not password_ok("", "")  # no password set admits nobody through the form


def test_wrong_passwords_slow_the_login_down() -> None:
    now = [100.0]
    throttle = LoginThrottle(free_tries=3, max_wait_s=10, clock=lambda: now[0])
    for _ in range(3):
        assert throttle.wait_s() == 0
        throttle.failed()
    assert throttle.wait_s() == 2  # the fourth try waits 2 s after the third failure
    now[0] += 2
    assert throttle.wait_s() == 0
    throttle.failed()
    assert throttle.wait_s() == 4  # then 4, 8, ... up to the cap
    for _ in range(5):
        throttle.failed()
    assert throttle.wait_s() == 10
    throttle.succeeded()
    assert throttle.wait_s() == 0


def test_serve_refuses_an_open_address_without_a_password(tmp_path: Path) -> None:
    env = {**os.environ, "KBQA_HOME": str(tmp_path)}
    env.pop("KBQA_UI_PASSWORD", None)
    result = subprocess.run([sys.executable, "-m", "kbqa", "serve", "--host", "0.0.0.0"],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode != 0
    assert "KBQA_UI_PASSWORD" in result.stderr


def test_an_exposed_server_ingests_only_its_folders_and_loads_only_its_models(
        tmp_path: Path) -> None:
    uploads, shared, private, models = (tmp_path / n for n in ("uploads", "team", "etc", "m"))
    for folder in (uploads, shared, private, models):
        folder.mkdir()
    (shared / "escape").symlink_to(private)  # a link out of a listed folder
    local = DiskScope.of("127.0.0.1", uploads, [str(shared)], models)
    exposed = DiskScope.of("0.0.0.0", uploads, [str(shared)], models)
    assert not local.folder_problem(private) and not local.model_problem(private / "x.gguf")
    assert not exposed.folder_problem(uploads / "zip-contents")
    assert not exposed.folder_problem(shared)
    for outside in (private, tmp_path, shared / ".." / "etc", shared / "escape", Path("/")):
        problem = exposed.folder_problem(outside)
        assert "KBQA_INGEST_FOLDERS" in problem and str(shared) in problem, outside
    assert not exposed.model_problem(models / "mine.gguf")
    for outside in (private / "x.gguf", models / ".." / "etc" / "x.gguf", Path("/etc/passwd")):
        assert str(models) in exposed.model_problem(outside), outside
