"""The column types the revisions in versions/ spell, per dialect: written once, and FROZEN.

A revision must stay what it was when it shipped, whatever the models' Python types (database/types.py)
become later; so the revisions take their types from here, never from the models, and no definition here
may change once a revision uses it: a revision that needs another type defines a new name.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

TS = sa.DateTime(timezone=True)  # timestamptz on PostgreSQL, UTC text on SQLite
DEC = sa.Text().with_variant(postgresql.NUMERIC(), "postgresql")  # exact: canonical text on SQLite, NUMERIC on PostgreSQL
JSONT = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")  # JSONB on PostgreSQL
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite autoincrements only an INTEGER key
