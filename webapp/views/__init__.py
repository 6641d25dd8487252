"""The web UI's pages: one blueprint module per area (``bp`` in each)."""
