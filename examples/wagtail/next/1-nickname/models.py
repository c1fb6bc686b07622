from django.db import models


class Member(models.Model):
    """A person in the staff directory: the example's own table, filled by fixtures."""

    handle = models.CharField(max_length=40, unique=True)
    email = models.EmailField()
    team = models.CharField(max_length=40)
    joined = models.DateField()
    nickname = models.CharField(max_length=40, null=True, blank=True)

    class Meta:
        ordering = ["id"]
