"""Op handlers, one module per domain; each module declares its ``domain`` (``imserver.domain``).

Importing a module registers nothing: ``imserver.domains.DEFAULT`` lists the domains a server
runs, and ``Server`` builds itself from that list.
"""
