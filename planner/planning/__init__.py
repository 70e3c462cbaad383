"""Planning queries: one module per query, closed forms first, cvxpy problems compiled once."""
