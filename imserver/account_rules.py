"""What a username and a password must be: shared by the ``register`` op and ``imserver.admin``."""
import re

from imserver.errors import ImError

USERNAME = re.compile(r"^[a-z0-9_.-]{3,32}$")
USERNAME_RULE = "username must be 3-32 characters of a-z, 0-9, '_', '.', '-'"
MIN_PASSWORD = 8


def username(name):
    """The normalised username (trimmed, lower case); ``bad_request`` if it breaks the rule."""
    name = name.strip().lower()
    if not USERNAME.match(name):
        raise ImError("bad_request", USERNAME_RULE)
    return name


def check_password(password):
    if len(password) < MIN_PASSWORD:
        raise ImError("bad_request", f"password must be at least {MIN_PASSWORD} characters")
