"""Console routes owned by accounts."""

from accounts.views import agents, killswitch, orgs

urlpatterns = [*orgs.urlpatterns, *agents.urlpatterns, *killswitch.urlpatterns]
