"""Index stage: annotation lists or video folders -> one row per usable clip (results/{ds}/index.parquet)."""
