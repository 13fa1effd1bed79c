"""The README tells a user what they will meet: every notification status, where admin test sends go, and
the sections other files point at."""
import re
import subprocess
from pathlib import Path

from notifier.admin_tools import ADMIN_PRODUCER
from notifier.models import NotificationStatus

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_the_readme_describes_every_notification_status():
    paragraph = README[README.index("A notification's `status`:"):].split("\n\n")[0]

    assert [status for status in NotificationStatus.values if f"`{status}`" not in paragraph] == []


def test_the_readme_names_the_producer_admin_test_sends_belong_to():
    assert f"`{ADMIN_PRODUCER}`" in README


def test_every_readme_section_the_requirements_point_at_exists():
    headings = set(re.findall(r"^#+ (.+)$", README, re.MULTILINE))
    pointers = [name for path in ROOT.glob("requirements*.txt")
                for name in re.findall(r'README "([^"]+)"', path.read_text())]

    assert pointers and [name for name in pointers if name not in headings] == []


def test_the_docs_point_at_nothing_outside_the_repository():
    # A user's clone has only the repository: the architecture lives in docs/architecture.md.
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split()
    texts = [ROOT / name for name in files if name.endswith((".md", ".py", ".txt", ".yml", ".cfg", ".ini"))]

    outside = [str(path.relative_to(ROOT)) for path in texts
               if path.exists() and path != Path(__file__) and "../shared" in path.read_text()]
    links = re.findall(r"\]\(([^)#]+)\)", README)

    assert outside == []
    assert "docs/architecture.md" in links
    assert [link for link in links if not link.startswith("http") and not (ROOT / link).exists()] == []
