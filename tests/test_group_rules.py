"""The group permission table: its documented copy matches the code, and its promises hold."""
import os
import re

import pytest

from imserver import group_rules as rules
from imserver.errors import ImError

DOCS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "protocol.rst")


def documented_table():
    text = open(DOCS, encoding="utf-8").read()
    table = text.split("permissions-table-start")[1].split("permissions-table-end")[0]
    rows = {}
    for line in table.splitlines():
        cells = re.split(r"\s{2,}", line.strip())
        if len(cells) >= 4 and cells[0] not in ("action",) and not cells[0].startswith("="):
            rows[cells[0]] = dict(zip(rules.ROLES, cells[1:4]))
    return rows


def code_cell(action, role):
    targets = rules.PERMISSIONS[action]
    if role not in targets:
        return "no"
    return "yes" if targets[role] is None else ", ".join(r for r in rules.ROLES if r in targets[role])


def test_docs_show_the_table_in_code():
    assert documented_table() == {action: {role: code_cell(action, role) for role in rules.ROLES}
                                  for action in rules.PERMISSIONS}


@pytest.mark.parametrize("role", rules.ROLES)
def test_nobody_acts_on_the_owner(role):
    for action in ("kick", "set_role", "transfer"):
        assert not rules.allowed(action, role, "owner")


def test_only_admins_kick_members_and_only_the_owner_kicks_admins_or_disbands():
    assert [r for r in rules.ROLES if rules.allowed("kick", r, "member")] == ["owner", "admin"]
    assert [r for r in rules.ROLES if rules.allowed("kick", r, "admin")] == ["owner"]
    assert [r for r in rules.ROLES if rules.allowed("disband", r)] == ["owner"]
    with pytest.raises(ImError) as info:
        rules.check("kick", "admin", "admin")
    assert info.value.code == "forbidden" and "admin" in info.value.message
