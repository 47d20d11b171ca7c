"""Dashboard pages owned by accounts (each module exports ``urlpatterns``)."""
