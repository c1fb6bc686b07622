from django.db import migrations, models


class Migration(migrations.Migration):
    """Safe: a nullable column is a catalog change, whatever the table's size."""

    dependencies = [("staff", "0001_initial")]

    operations = [
        migrations.AddField(
            model_name="member",
            name="nickname",
            field=models.CharField(blank=True, max_length=40, null=True),
        ),
    ]
