"""Console routes owned by the catalog."""

from catalog.views import drafts, guide, tools

urlpatterns = [*tools.urlpatterns, *guide.urlpatterns, *drafts.urlpatterns]
