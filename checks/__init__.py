"""The checks behind ``make check`` (``checks/all.sh`` runs them all, in order)."""
