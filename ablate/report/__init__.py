"""Reporting: result tables (results.py); tables, plots and statistics build on them."""
