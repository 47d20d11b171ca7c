"""Console routes that need grants."""

from grants.views import agents, alerts, audit, decisions, home, inbox, members, reviews, tools

urlpatterns = [
    *home.urlpatterns,
    *inbox.urlpatterns,
    *decisions.urlpatterns,
    *agents.urlpatterns,
    *tools.urlpatterns,
    *audit.urlpatterns,
    *alerts.urlpatterns,
    *members.urlpatterns,
    *reviews.urlpatterns,
]
