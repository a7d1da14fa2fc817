from django.apps import AppConfig


class QueuesConfig(AppConfig):
    name = "queues"
    verbose_name = "EntroQ queues"
    default_auto_field = "django.db.models.BigAutoField"
