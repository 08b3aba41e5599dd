"""Per-object version history: snapshots on save, a human-readable tree, diffs, restore and recovery.

Modules, one job each:

* ``context``  who is acting (and why) while a save happens: admin hooks, middleware, restores;
* ``signals``  post_save / m2m_changed / pre_delete of tracked models -> one snapshot per object
  per transaction, handed after commit to the sender the jobs layer registers (a Celery task);
* ``collect``  the committed state of an object as plain data, and the images it references;
* ``store``    the tree on disk (atomic versions, per-object lock, image dedup by hash);
* ``markdown`` the ``<model>.md`` file with YAML front matter;
* ``snapshot`` the worker side: turn a captured state into a stored version plus its index row
  (the task that calls it is ``dbs_admin.jobs.tasks.snapshot_object``);
* ``index``    the ``HistoryVersion`` rows and ``reindex()``;
* ``diff``     field, word, tag and image differences between two versions;
* ``revert``   dry-run plans and restores of a version (also of deleted objects);
* ``importer`` adoption of an existing tree of the blog's original layout;
* ``gitstore`` optional git commits of the tree, pushed to ``HISTORY_GIT_REMOTE``.

The admin pages are ``dbs_admin.console.history_admin`` (``HistoryAdminMixin``).

Bulk ``QuerySet.update()`` sends no signals and so makes no versions: call
:func:`dbs_admin.history.api.snapshot_queryset` after it.
"""
