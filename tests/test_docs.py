"""docs/protocol.rst stays true: every error code the server can send is documented."""
import os

from imserver.domains import DEFAULT
from imserver.errors import CODES

DOC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "protocol.rst")


def test_every_error_code_is_documented():
    text = open(DOC, encoding="utf-8").read()
    missing = [code for code in CODES if f"``{code}``" not in text]
    assert missing == []



def test_every_op_is_documented():
    text = open(DOC, encoding="utf-8").read()
    missing = [name for domain in DEFAULT for name in domain.ops.ops if f"``{name}``" not in text]
    assert missing == []
