"""Building blocks of ``detector.enrich.prompt_features`` (the entry module): hashes, the marker sets,
the tunables and tables (``tables.py``) and the expression builders (``exprs.py``)."""
