"""The training matrix: curricula, reconciliation (assignments on approval and on role
grants), and its read models."""
