"""The template and label-mask lint: tells a user, before any GPU time, that a fine-tune will produce a model that
never stops, leaks template tokens, trains on the prompt or trains on nothing.

    setup = evalsuite.lint.setup.from_config("config.yaml")     # or from_options(tokenizer, [data], ...)
    report = evalsuite.lint.runner.run_lint(setup)               # findings + stats; report.exit_code

Families: ``template_rules`` (one render per role sequence), ``rows`` + ``row_rules`` (every row, batched),
``model_rules`` (tokenizer, weights, packing). Rule ids and severities: ``findings.RULES``.
"""
