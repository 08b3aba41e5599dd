"""The jobs layer: everything that runs in the background, and the only code that imports Celery.

- ``tasks``       the Celery tasks (backup, restore, validate, prune, drill, history snapshot);
- ``launch``      how the console queues them (a Job row, a sealed key, the task sent);
- ``runner``      a Job's life in a worker: claim, throttled progress, heartbeat, cancel, finish;
- ``reaper``      jobs whose worker died become lost, jobs nobody took are failed;
- ``workspace``   where a job's files live on this host, and the only way leftovers are removed;
- ``locks``       one job per target (or database) at a time, across workers and hosts;
- ``handoff``     a secret from the web process to one worker, never through the broker;
- ``handed_keys`` opening the key a job was handed (a passphrase, or an identity file);
- ``uploads``     uploaded ``.dbs`` files waiting for their job;
- ``schedules``   django-celery-beat rows for backups, retention, drills and the reaper;
- ``unattended_alerts`` mail to ADMINS when scheduled work did not happen;
- ``wiring``      what is connected at start-up (post_migrate defaults, the history hook).

The services below (backups, history, drills) never import this package;
the history service reaches it through a hook registered by ``wiring``.
"""
