"""``python -m imclient``: the command-line client (see ``imclient.cli``)."""
from imclient.cli import main

main()
