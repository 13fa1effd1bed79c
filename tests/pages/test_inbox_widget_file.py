"""The inbox widget is one small file that notifier serves itself, and it never puts data in as HTML."""
import re
from pathlib import Path

import pytest
from django.contrib.staticfiles import finders
from django.test import Client

WIDGET = Path(__file__).resolve().parents[2] / "notifier" / "static" / "notifier" / "inbox.js"


def test_the_widget_stays_under_20_kb_unminified():
    assert WIDGET.stat().st_size < 20 * 1024


def test_the_widget_is_a_static_file_collectstatic_finds():
    assert Path(finders.find("notifier/inbox.js")) == WIDGET


def test_the_widget_never_writes_html_and_needs_nothing_else():
    source = WIDGET.read_text()

    assert not re.search(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function", source)
    assert not re.search(r"^\s*import\s|require\(", source, re.MULTILINE)


@pytest.mark.django_db
def test_the_demo_page_shows_the_widget_for_the_demo_user(settings):
    settings.NOTIFIER_DEMO_PAGES = True

    html = Client().get("/demo/inbox").content.decode()

    assert '<script src="/static/notifier/inbox.js" defer></script>' in html
    assert re.search(r'<notifier-inbox user-token="rt_[^"]+" api="http://testserver">', html)
    assert re.search(r'<a href="http://127.0.0.1:8000/preferences/[^"]+">Open u_42’s notification preferences', html)


@pytest.mark.django_db
def test_the_demo_page_is_off_unless_asked_for(settings):
    settings.NOTIFIER_DEMO_PAGES = False

    assert Client().get("/demo/inbox").status_code == 404
