"""`asya dev`: the local mesh on one machine (supervisor, plan, terminal renderer)."""
