"""Who may do what in a group: the one permission table, checked inside each write transaction.

``PERMISSIONS[action]`` maps the actor's role to the roles of members they may act on (``None``
for actions with no target member). An actor whose role is not a key may not act at all. The
table in docs/protocol.rst ("Group permissions") is this table written out.
"""
from imserver.errors import ImError

ROLES = ("owner", "admin", "member")
POLICIES = ("open", "approval")
_ANY = {"owner": None, "admin": None, "member": None}
_STAFF = {"owner": None, "admin": None}

PERMISSIONS = {
    "read": _ANY,          # group_info details, group_members, group_history, group_mark_read, group_files
    "send": _ANY,          # group_send
    "invite": _ANY,        # group_invite (a member's invite waits for approval in 'approval' groups)
    "add_directly": _STAFF,  # an invite that needs no approval, whatever the policy
    "approve": _STAFF,     # group_approve, group_deny, group_requests
    "update": _STAFF,      # group_update: name, announcement, join policy
    "leave": {"admin": None, "member": None},  # the owner transfers ownership or disbands
    "kick": {"owner": {"admin", "member"}, "admin": {"member"}},
    "set_role": {"owner": {"admin", "member"}},
    "transfer": {"owner": {"admin", "member"}},
    "disband": {"owner": None},
}


def allowed(action, role, target_role=None):
    targets = PERMISSIONS[action]
    if role not in targets:
        return False
    return targets[role] is None or target_role in targets[role]


def check(action, role, target_role=None):
    """Raise ``forbidden`` unless a member with ``role`` may do ``action`` (to ``target_role``)."""
    if not allowed(action, role, target_role):
        whom = f" a group {target_role}" if target_role else ""
        raise ImError("forbidden", f"a group {role} may not {action.replace('_', ' ')}{whom}")
