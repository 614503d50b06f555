"""upsert_contact / upsert_contacts with `at`: the profile change is evaluated at that instant."""
import pytest

import nudge
from conftest import DAY, HOUR, T0, rows, utc

RULES = {
    "segments": [{"name": "vip", "if": {"has_tag": "VIP"}}],
    "rules": [
        {"id": "welcome_vip", "on": {"segment_entered": "vip"},
         "then": [{"do": "send_email", "arg": "vip_welcome"}]},
    ],
    "workflows": [
        {"id": "birthday", "entry": {"yearly": {"detail": "birthday", "at": "09:00"}},
         "steps": [{"id": "wish", "send": {"do": "send_email", "arg": "happy_birthday"}}]},
    ],
}


def engine():
    return nudge.Engine(nudge.Program.from_json(RULES))


def test_upsert_at_an_instant_enters_the_segment_there():
    e = engine()
    assert e.upsert_contact("ann", {"tags": ["VIP"]}) is None  # profile only
    assert e.segment_members("vip") == []
    due = e.upsert_contact("ann", tags=["VIP"], at=utc(T0 + HOUR))
    assert rows(due) == [(T0 + HOUR, "ann", "welcome_vip", "send_email", "vip_welcome")]
    assert e.segment_members("vip") == ["ann"]
    assert e.contact("ann").tags.keys() == {"VIP"}


def test_upsert_contacts_at_schedules_a_birthday_without_events():
    e = engine()
    due = e.upsert_contacts([{"id": "cleo", "details": {"birthday": "1990-01-05"}},
                             {"id": "bob", "tags": ["VIP"]}], at=T0)
    assert rows(due) == [(T0, "bob", "welcome_vip", "send_email", "vip_welcome")]
    birthday = T0 + 4 * DAY + 9 * HOUR  # 2024-01-05T09:00:00Z
    assert rows(e.advance(T0 + 30 * DAY)) == [
        (birthday, "cleo", "birthday/wish", "send_email", "happy_birthday")]


def test_upsert_before_the_contacts_clock_raises_and_changes_nothing():
    e = engine()
    e.process([("ann", "page_view", T0 + DAY, "/home")], now=T0 + DAY)
    with pytest.raises(nudge.InputError, match=r'contact "ann".*before 2024-01-02T00:00:00Z'):
        e.upsert_contacts([{"id": "bob", "tags": ["VIP"]}, {"id": "ann", "tags": ["VIP"]}],
                          at=T0)
    assert e.contact("bob") is None
    assert e.contact("ann").tags == {}
    assert e.segment_members("vip") == []
