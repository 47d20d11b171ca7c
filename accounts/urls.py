"""Console routes owned by accounts."""

from accounts.views import agents, orgs

urlpatterns = [*orgs.urlpatterns, *agents.urlpatterns]
