from typing import Any

from django.apps import AppConfig
from django.core import checks
from django.db.models.signals import post_migrate

from queues.permissions import ROLES


def create_roles(using: str = "default", **kwargs: Any) -> None:
    """Create the role groups with their permissions (they are never taken away)."""
    from django.contrib.auth.models import Group, Permission

    granted: list[str] = []
    for name, codenames in ROLES.items():
        granted += codenames
        group, _ = Group.objects.using(using).get_or_create(name=name)
        permissions = Permission.objects.using(using).filter(
            content_type__app_label="queues", codename__in=granted
        )
        group.permissions.add(*permissions)


class QueuesConfig(AppConfig):
    name = "queues"
    verbose_name = "EntroQ queues"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from queues import checks as app_checks

        # After Django's own handler has created the permissions.
        post_migrate.connect(create_roles, sender=self)
        checks.register(app_checks.check_settings, "entroq")
        checks.register(app_checks.check_client_addresses, "entroq")
        checks.register(app_checks.check_project, "entroq")
