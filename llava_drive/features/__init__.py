"""
LLaVA feature extraction: feature specification, store, extractor and the extract command.

Public API: :class:`~.spec.FeatureSpec`, :class:`~.extractor.LlavaFeatureExtractor`,
:func:`~.store.write_feature_file` / ``load_feature_file``, :func:`~.extract_bags.extract_bags`,
:func:`~.route_prompt.render_prompt` (route-conditioned prompts),
:func:`~.tiny_model.create_tiny_llava` (a small random LLaVA); the ``extract`` command in
:mod:`.cli`.
"""
