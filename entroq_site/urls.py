from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from queues import monitoring

urlpatterns = [
    # First: workers call the API thousands of times a second; each pattern tried
    # before it costs every call.
    path("api/v1/", include("queues.api_urls")),
    path("", include("queues.urls")),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("healthz", monitoring.healthz, name="healthz"),
    path("readyz", monitoring.readyz, name="readyz"),
    path("metrics", monitoring.prometheus, name="metrics"),
]
