"""The console: every page of the Backups section (admin registrations, views, forms, urls, HTMX partials).

The top layer, beside the management commands. It asks the jobs layer to
queue work (``dbs_admin.jobs.launch``) and reads the services for what it
shows; it never imports Celery itself (``make lint`` checks).
"""
