"""The backup console: pages, HTMX partials, Celery jobs and the plumbing between them."""
