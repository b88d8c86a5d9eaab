"""LLaVA feature extraction: feature specification, store, extractor and the extract command."""
