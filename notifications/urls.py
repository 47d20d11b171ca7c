"""Console routes owned by notifications."""

from notifications import views

urlpatterns = [*views.urlpatterns]
