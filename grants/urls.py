"""Console routes that need grants."""

from grants.views import agents, audit, decisions, home, inbox, tools

urlpatterns = [
    *home.urlpatterns,
    *inbox.urlpatterns,
    *decisions.urlpatterns,
    *agents.urlpatterns,
    *tools.urlpatterns,
    *audit.urlpatterns,
]
