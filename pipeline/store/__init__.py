"""Persistence: the tables, the job store (the only writer of a job row) and the migrations."""
