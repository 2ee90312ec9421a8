"""Kiln's index: what the farm planned, built and published, in its own SQL database
(SQLite by default, PostgreSQL in production), never in Buildbot's.

The registry stays the truth; the index is what the console reads, so that a page
of a thousand packages is one query, not a thousand registry round trips."""
