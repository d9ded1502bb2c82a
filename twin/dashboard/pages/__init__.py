"""One module per page: ``layout(ctx, selected_run)`` and ``register(app, ctx)``."""
