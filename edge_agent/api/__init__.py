"""The edge agent's HTTP service: ``create_app(settings)`` and one router per concern."""
