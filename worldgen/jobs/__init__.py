"""Jobs: the state machine, the persistent store (SQLite or PostgreSQL) and its migrations."""
