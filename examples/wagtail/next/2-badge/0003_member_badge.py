from django.db import migrations, models


class Migration(migrations.Migration):
    """Risky: db_index=True builds the index with a plain CREATE INDEX, which blocks every
    write to the table for the whole build (and the column's ALTER TABLE holds its lock until
    the migration commits)."""

    dependencies = [("staff", "0002_member_nickname")]

    operations = [
        migrations.AddField(
            model_name="member",
            name="badge",
            field=models.CharField(db_index=True, default="none", max_length=20),
        ),
    ]
