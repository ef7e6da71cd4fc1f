"""Quickstart: the whole flow a vendor implements, end to end, against the embedded sandbox.

Run it with ``python3 scripts/dev.py quickstart`` — or, from an installed package with no
repository, ``dmp-connector demo``. The code lives in the package
(:mod:`dmp_connector.demo`, read it there) so that an installed SDK demonstrates itself:
INSi search and verification, identity qualification, TD0.2/TD0.3, a CDA document deposited,
found and retrieved, MSSanté to the patient and a colleague, the audit trail. It exits with
status 0 only if every check holds.
"""

from __future__ import annotations

from dmp_connector.demo import main

if __name__ == "__main__":
    main()
