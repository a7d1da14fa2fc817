"""The app's settings: typed, read again when they change, and named when wrong."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured
from pytest_django.fixtures import Settings

from queues.conf import app_settings


def test_defaults_apply_where_the_project_sets_nothing(settings: Settings) -> None:
    settings.ENTROQ = {}
    assert app_settings().DASHBOARD_PAGE_SIZE == 50
    assert app_settings().API_MAX_WAITING_CLAIMS is None


def test_settings_given_as_text_are_read_as_their_kind(settings: Settings) -> None:
    # As they come from the environment.
    settings.ENTROQ = {
        "API_MAX_WAIT_SECONDS": "2.5",
        "DASHBOARD_PAGE_SIZE": "20",
        "PREPARE_STATEMENTS": "off",
        "METRICS_ALLOW_ANONYMOUS": "yes",
        "API_MAX_WAITING_CLAIMS": "4",
    }
    current = app_settings()
    assert current.API_MAX_WAIT_SECONDS == 2.5
    assert current.DASHBOARD_PAGE_SIZE == 20
    assert current.PREPARE_STATEMENTS is False
    assert current.METRICS_ALLOW_ANONYMOUS is True
    assert current.API_MAX_WAITING_CLAIMS == 4


def test_a_change_of_settings_is_seen_at_once(settings: Settings) -> None:
    settings.ENTROQ = {"BULK_TYPED_CONFIRM": 5}
    assert app_settings().BULK_TYPED_CONFIRM == 5
    settings.ENTROQ = {"BULK_TYPED_CONFIRM": 7}
    assert app_settings().BULK_TYPED_CONFIRM == 7


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DASHBOARD_PAGE_SIZE", "fifty"),
        ("DASHBOARD_PAGE_SIZE", 2.5),  # not made 2
        ("DASHBOARD_PAGE_SIZE", True),
        ("API_MAX_WAIT_SECONDS", float("nan")),
        ("METRICS_BEARER_TOKEN", None),  # not the token "None"
        ("PREPARE_STATEMENTS", "enable"),  # neither on nor off: not silently off
        ("METRICS_ALLOW_ANONYMOUS", "ture"),
    ],
)
def test_a_setting_of_the_wrong_kind_is_named(settings: Settings, name: str, value: object) -> None:
    settings.ENTROQ = {name: value}
    with pytest.raises(ImproperlyConfigured, match=rf"ENTROQ\['{name}'\] must be"):
        app_settings()
