"""Every NOTIFIER_* setting is read somewhere: a setting nothing reads documents behaviour that does not
exist (NOTIFIER_ACCEPTED_GRACE_SECONDS once promised a grace the sweeper never applied)."""
import re
from pathlib import Path

from notifier_project import settings

ROOT = Path(__file__).resolve().parents[1]


def code_outside_settings() -> str:
    files = [*(ROOT / "notifier").rglob("*.py"), *(ROOT / "notifier_project").glob("*.py"), ROOT / "celeryconfig.py"]
    return "\n".join(path.read_text() for path in files if path.name not in ("settings.py", "test_settings.py"))


def test_every_notifier_setting_is_read_by_the_code():
    code = code_outside_settings()
    names = [name for name in dir(settings) if name.startswith("NOTIFIER_")]

    unread = [name for name in names if not re.search(rf"\b{name}\b", code)]

    assert names and unread == []
