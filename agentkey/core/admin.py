"""Admin hardening shared by every app's admin."""

from __future__ import annotations

from typing import Any, ClassVar

from django.http import HttpRequest

# What a declared list filter may put in the query string after its field path.
FILTER_SUFFIXES = (
    "",
    "__exact",
    "__isnull",
    "__in",
    "__id__exact",
    "__pk__exact",
    "__gte",
    "__gt",
    "__lte",
    "__lt",
)


class FilterLookupsOnly:
    """Allow only the URL lookups the declared list filters generate.

    Django otherwise accepts any lookup on a model's own fields from the query
    string, which turns a changelist into an oracle: ``?key_hash__startswith=ab``
    or ``?password__startswith=pbkdf2`` answers yes or no about a value the page
    never shows. Mix in before ``ModelAdmin``.
    """

    list_filter: ClassVar[Any]

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest) -> bool:
        paths = []
        for entry in self.list_filter:
            name = entry[0] if isinstance(entry, tuple) else getattr(entry, "parameter_name", entry)
            if isinstance(name, str):
                paths.append(name)
        if not any(lookup == path + suffix for path in paths for suffix in FILTER_SUFFIXES):
            return False
        return bool(super().lookup_allowed(lookup, value, request))  # type: ignore[misc]
