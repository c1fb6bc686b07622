from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies = []

    operations = [
        migrations.CreateModel(
            name="Member",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("handle", models.CharField(max_length=40, unique=True)),
                ("email", models.EmailField(max_length=254)),
                ("team", models.CharField(max_length=40)),
                ("joined", models.DateField()),
            ],
            options={"ordering": ["id"]},
        ),
    ]
