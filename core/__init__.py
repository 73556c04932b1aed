"""The foundation every askdocs command stands on: settings, models, the store and retrieval, the chain and its
check, adapter formats. It imports none of its users (ingestion, finetune, evaluation, app, benchmarks)."""
