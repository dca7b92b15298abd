"""The results report: tables and plots."""
