"""Building blocks of ``detector.enrich.prompt_features`` (the entry module): hashes and the marker sets."""
