"""Pure domain: the lifecycle, errors, budgets, ids and tokens. No I/O, no framework."""
