"""`manage.py pending_sql`: the SQL of every migration not yet applied to the database, each
after a `-- stagectl:migration APP.NAME` line, for `stagectl check migrations` to lint."""

from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import connection
from django.db.migrations.executor import MigrationExecutor


class Command(BaseCommand):
    help = "Print the SQL of the unapplied migrations, one marked block per migration."

    def handle(self, *args, **options):
        executor = MigrationExecutor(connection)
        plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
        for migration, _backwards in plan:
            self.stdout.write(f"-- stagectl:migration {migration.app_label}.{migration.name}")
            self.stdout.flush()
            call_command("sqlmigrate", migration.app_label, migration.name, stdout=self.stdout)
