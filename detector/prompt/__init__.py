"""Building blocks of ``detector.prompt_features`` (the entry module): hashes and the marker sets."""
