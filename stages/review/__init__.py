"""Review gate: refined captions -> review sheet (CSV) -> human decisions -> approved captions."""
