"""The admin toolkit shared by every app's admin: who is asking, scoping, refusals, base classes.

The admin is one more interface onto the services (DESIGN §2, §6): it parses input, calls
the service that owns the change and reports the outcome. It never saves a domain row
itself. Non-superusers see the rows of their own organizations only; the services check
their role on every change, and a refusal is shown as an error message, never a 500.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar, cast

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import unquote
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm
from django.db.models import ForeignKey, Model, QuerySet
from django.forms.models import ModelChoiceField
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone

from accounts.models import Membership, Organization, User
from accounts.permissions import ROLE_CAPABILITIES, WRONG_ORGANIZATION, Capability, HumanActor, Operator
from accounts.selectors import actor_for_user
from agentkey.core.admin import FilterLookupsOnly
from agentkey.core.durations import parse_duration
from agentkey.core.errors import CryptoError, DomainError, Forbidden

_M = TypeVar("_M", bound=Model)

# django-stubs types these Django classes as generic; at runtime they are not subscriptable.
if TYPE_CHECKING:
    GenericModelAdmin = admin.ModelAdmin
    _ModelForm = forms.ModelForm[Any]
    _ModelChoiceField = ModelChoiceField[Any]
    _TabularInline = admin.TabularInline[Any, Any]
    UserAdminBase = DjangoUserAdmin[User]
    UserCreationFormBase = AdminUserCreationForm[User]
    UserChangeFormBase = UserChangeForm[User]
else:

    class GenericModelAdmin(admin.ModelAdmin, Generic[_M]):
        pass

    _ModelForm = forms.ModelForm
    _ModelChoiceField = ModelChoiceField
    _TabularInline = admin.TabularInline
    UserAdminBase = DjangoUserAdmin
    UserCreationFormBase = AdminUserCreationForm
    UserChangeFormBase = UserChangeForm

#: What a service may refuse with. CryptoError (a missing or wrong master key) names the
#: secret and the key id only, so its text is safe to show.
REFUSED = (DomainError, CryptoError)

NOT_VISIBLE = (
    "{count} of the selected items are not in an organization you are a member of "
    "(or no longer exist); nothing was done to them."
)

# Request attributes: per-request caches and hand-offs, never persisted.
_ROLES = "_agentkey_admin_roles"
_ACTORS = "_agentkey_admin_actors"
_REFUSAL = "_agentkey_admin_refusal"
ISSUED_KEY_ATTR = "_agentkey_admin_issued_key"


# --- who is asking -------------------------------------------------------------------------------


def admin_user(request: HttpRequest) -> User:
    """The signed-in person (the admin site lets only authenticated staff in)."""
    return cast(User, request.user)


def is_staff(request: HttpRequest) -> bool:
    user = request.user
    return bool(user.is_authenticated and user.is_active and getattr(user, "is_staff", False))


def roles_of(request: HttpRequest) -> dict[uuid.UUID, str]:
    """The signed-in person's role in each of their organizations (one query per request)."""
    roles = cast("dict[uuid.UUID, str] | None", getattr(request, _ROLES, None))
    if roles is None:
        roles = dict(Membership.objects.filter(user_id=admin_user(request).pk).values_list("org_id", "role"))
        setattr(request, _ROLES, roles)
    return roles


def orgs_with(request: HttpRequest, capability: Capability) -> set[uuid.UUID] | None:
    """The organizations in which the signed-in person has ``capability``; None means every one."""
    if admin_user(request).is_superuser:
        return None
    return {
        org_id
        for org_id, role in roles_of(request).items()
        if capability in ROLE_CAPABILITIES.get(role, frozenset())
    }


def scoped(
    queryset: QuerySet[_M], request: HttpRequest, capability: Capability, org_field: str
) -> QuerySet[_M]:
    orgs = orgs_with(request, capability)
    return queryset if orgs is None else queryset.filter(**{f"{org_field}__in": orgs})


def actor_for(request: HttpRequest, org_id: uuid.UUID) -> HumanActor:
    """Who the signed-in person acts as in ``org_id``; Forbidden when they are nobody there."""
    cache = cast("dict[uuid.UUID, HumanActor | None]", getattr(request, _ACTORS, {}))
    if org_id not in cache:
        cache[org_id] = actor_for_user(admin_user(request), org_id)
        setattr(request, _ACTORS, cache)
    actor = cache[org_id]
    if actor is None:
        raise Forbidden(WRONG_ORGANIZATION)
    return actor


def operator_for(request: HttpRequest) -> Operator:
    """A superuser acting outside any organization (creating one), labelled as actor_for_user does."""
    user = admin_user(request)
    return Operator(label=f"superuser {user.email}", user=user)


# --- reporting -----------------------------------------------------------------------------------


def refusal_text(exc: Exception) -> str:
    if isinstance(exc, DomainError):
        return f"{exc.error} {exc.hint}"
    return f"{exc} Check AGENTKEY_MASTER_KEYS."


def report(request: HttpRequest, exc: Exception, subject: str = "") -> None:
    text = refusal_text(exc)
    messages.error(request, f"{subject}: {text}" if subject else text)


def expiry(choice: str) -> datetime | None:
    """``none`` or a duration such as ``8h`` from a choice field, as a moment from now."""
    return None if choice == "none" else timezone.now() + parse_duration(choice)


def grace(choice: str) -> timedelta | None:
    return None if choice == "none" else parse_duration(choice)


def write_only_field(*, required: bool, help_text: str, label: str = "Credential") -> forms.CharField:
    """A secret input that is never rendered back, not even after a failed submit."""
    return forms.CharField(
        label=label,
        required=required,
        help_text=help_text,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
    )


def as_text(value: str) -> str:
    """Textarea input as the services store it: browsers send CRLF line breaks."""
    return value.replace("\r\n", "\n")


# --- base admin classes --------------------------------------------------------------------------


class OrgLabelledChoiceField(_ModelChoiceField):
    """A choice of agent, tool, ... labelled with its organization, which names alone do not tell."""

    def label_from_instance(self, obj: Any) -> str:
        return f"{obj} ({obj.org.name})"


class OrgScopedAdmin(FilterLookupsOnly, GenericModelAdmin[_M]):
    """Rows of the signed-in person's organizations; what they may do follows their roles.

    Superusers see everything (they hold the server's keys anyway). Nothing is ever
    deleted from here: rows change only through a service, which writes an audit event.
    Add and change pages show exactly ``add_fields`` / ``change_fields``; on a change
    page only ``editable_fields`` are editable.
    """

    org_field: ClassVar[str] = "org_id"
    view_capability: ClassVar[Capability] = Capability.VIEW
    add_capability: ClassVar[Capability | None] = None
    change_capability: ClassVar[Capability | None] = None
    add_fields: ClassVar[Sequence[str]] = ()
    change_fields: ClassVar[Sequence[str]] = ()
    editable_fields: ClassVar[Sequence[str]] = ()

    def org_id_of(self, obj: _M) -> uuid.UUID:
        return cast(uuid.UUID, obj.org_id)  # type: ignore[attr-defined]

    def describe(self, obj: _M) -> str:
        """How one row is named in messages."""
        return str(obj)

    def allowed(self, request: HttpRequest, capability: Capability, obj: _M | None = None) -> bool:
        if not is_staff(request):
            return False
        orgs = orgs_with(request, capability)
        if orgs is None:
            return True
        return bool(orgs) if obj is None else self.org_id_of(obj) in orgs

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self.allowed(request, self.view_capability)

    def has_view_permission(self, request: HttpRequest, obj: _M | None = None) -> bool:
        return self.allowed(request, self.view_capability, obj)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return self.add_capability is not None and self.allowed(request, self.add_capability)

    def has_change_permission(self, request: HttpRequest, obj: _M | None = None) -> bool:
        return self.change_capability is not None and self.allowed(request, self.change_capability, obj)

    def has_delete_permission(self, request: HttpRequest, obj: _M | None = None) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet[_M]:
        return scoped(super().get_queryset(request), request, self.view_capability, self.org_field)

    def get_fields(self, request: HttpRequest, obj: _M | None = None) -> list[Any]:
        return list(self.add_fields if obj is None else self.change_fields)

    def get_readonly_fields(self, request: HttpRequest, obj: _M | None = None) -> list[str]:
        if obj is None:
            return []
        return [name for name in self.change_fields if name not in self.editable_fields]

    def get_inlines(self, request: HttpRequest, obj: _M | None) -> Any:
        return self.inlines if obj is not None else ()

    def formfield_for_foreignkey(
        self, db_field: ForeignKey[Any, Any], request: HttpRequest, **kwargs: Any
    ) -> ModelChoiceField[Any] | None:
        """Offer only the organizations (and their agents, tools, ...) the person may act in."""
        related = db_field.related_model
        capability = self.add_capability or self.view_capability
        if related is Organization:
            kwargs["queryset"] = scoped(Organization.objects.order_by("name"), request, capability, "id")
        elif any(f.name == "org" for f in related._meta.fields):
            by_name = ["name"] if any(f.name == "name" for f in related._meta.fields) else []
            queryset = related._default_manager.select_related("org").order_by("org__name", *by_name)
            kwargs["queryset"] = scoped(queryset, request, capability, "org_id")
            kwargs["form_class"] = OrgLabelledChoiceField
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def render_change_form(  # noqa: PLR0917 (Django's signature)
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: _M | None = None,
    ) -> HttpResponse:
        if obj is not None:
            context["subtitle"] = self.describe(obj)
        return super().render_change_form(request, context, add, change, form_url, obj)

    # --- bulk actions ---

    def selection(self, request: HttpRequest, queryset: QuerySet[_M]) -> list[_M]:
        """The selected rows the person can see; the others are reported, never acted on."""
        objects = list(queryset)
        if request.POST.get("select_across") != "1":
            missing = len(set(request.POST.getlist(helpers.ACTION_CHECKBOX_NAME))) - len(objects)
            if missing > 0:
                messages.error(request, NOT_VISIBLE.format(count=missing))
        return objects

    def apply_each(
        self,
        request: HttpRequest,
        objects: Iterable[_M],
        service: Callable[[_M, HumanActor], object],
        *,
        done: str,
    ) -> int:
        """Call ``service`` for each row, each in its own transaction; report every refusal."""
        count = 0
        for obj in objects:
            try:
                service(obj, actor_for(request, self.org_id_of(obj)))
            except REFUSED as exc:
                report(request, exc, subject=self.describe(obj))
            else:
                count += 1
        if count:
            messages.success(request, done.format(count=count))
        return count

    def confirmation(
        self,
        request: HttpRequest,
        objects: Sequence[_M],
        *,
        action: str,
        title: str,
        question: str,
        form: forms.Form,
        submit: str,
        notes: dict[Any, str] | None = None,
    ) -> TemplateResponse:
        """The intermediate page of an action, like Django's delete confirmation.

        Its form posts back to the changelist with the same action and selection plus
        ``apply=1`` and its own fields.
        """
        notes = notes or {}
        context = {
            **self.admin_site.each_context(request),
            "title": title,
            "question": question,
            "opts": self.opts,
            "rows": [(self.describe(obj), notes.get(obj.pk, "")) for obj in objects],
            "queryset": objects,
            "form": form,
            "action": action,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "submit": submit,
            "media": self.media + form.media,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/agentkey/confirm_action.html", context)

    # --- custom per-object views ---

    def object_or_redirect(self, request: HttpRequest, object_id: str) -> _M | HttpResponseRedirect:
        obj = self.get_object(request, unquote(object_id))
        if obj is None:
            messages.error(
                request, f"There is no {self.opts.verbose_name} with ID “{object_id}” that you can see."
            )
            return HttpResponseRedirect(
                reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_changelist")
            )
        return obj

    def change_url(self, obj: _M) -> str:
        return reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_change", args=[obj.pk])

    def object_page(
        self, request: HttpRequest, obj: _M, *, title: str, form: forms.Form, submit: str, intro: str = ""
    ) -> TemplateResponse:
        context = {
            **self.admin_site.each_context(request),
            "title": title,
            "intro": intro,
            "opts": self.opts,
            "original": obj,
            "original_label": self.describe(obj),
            "change_url": self.change_url(obj),
            "form": form,
            "submit": submit,
            "media": self.media + form.media,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/agentkey/object_form.html", context)


class ServiceForm(_ModelForm):
    """An admin form that only parses input; the service validates and writes.

    It neither copies values onto the instance nor runs model validation, which would
    duplicate the service's rules (and refuse what a service allows, such as assigning
    access on a grant row that already exists). When the service refused the previous
    attempt, ``refusal`` is set and the form shows it (see ServiceAdmin.changeform_view).
    """

    refusal: ClassVar[Exception | None] = None

    def _post_clean(self) -> None:
        pass

    def clean(self) -> dict[str, Any] | None:
        cleaned = super().clean()
        refusal = self.refusal
        if refusal is not None:
            placed = False
            for detail in getattr(refusal, "details", ()):
                if detail.field in self.fields:
                    self.add_error(detail.field, detail.message)
                    placed = True
            if not placed:
                self.add_error(None, getattr(refusal, "error", str(refusal)))
        return cleaned


class ServiceAdmin(OrgScopedAdmin[_M]):
    """Add and change pages whose save is a service call (save_model); see ServiceForm."""

    form = ServiceForm
    add_form: ClassVar[type[ServiceForm] | None] = None

    def get_form(
        self, request: HttpRequest, obj: _M | None = None, change: bool = False, **kwargs: Any
    ) -> type[forms.ModelForm[_M]]:
        if obj is None and self.add_form is not None:
            kwargs.setdefault("form", self.add_form)
        form = super().get_form(request, obj, change, **kwargs)
        refusal = getattr(request, _REFUSAL, None)
        if refusal is None:
            return form
        return cast("type[forms.ModelForm[_M]]", type(form.__name__, (form,), {"refusal": refusal}))

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except REFUSED as exc:
            if request.method != "POST" or hasattr(request, _REFUSAL):
                raise
            # The service refused inside Django's transaction for this save, which has
            # rolled back. Render the bound form again with the refusal attached, so
            # nothing is saved and the operator keeps what they typed (secrets excepted).
            report(request, exc)
            setattr(request, _REFUSAL, exc)
            return super().changeform_view(request, object_id, form_url, extra_context)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: Any) -> None:
        """Inlines are read-only and the service wrote everything: nothing to save here."""

    def construct_change_message(
        self, request: HttpRequest, form: Any, formsets: Any, add: bool = False
    ) -> list[dict[str, dict[str, list[str]]]]:
        # The read-only inlines were never saved, so only the form describes the change.
        return super().construct_change_message(request, form, [], add)

    @staticmethod
    def adopt(obj: _M, saved: Model) -> None:
        """Make the unsaved instance Django's add view holds the row the service created,
        so the admin log and the response name the real row."""
        obj.pk = saved.pk
        obj.refresh_from_db()
        obj._state.adding = False


class ReadOnlyInline(_TabularInline):
    """History shown under its parent; the parent admin already checked who may see it."""

    extra = 0
    can_delete = False
    show_change_link = False

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [name for name in self.fields or () if isinstance(name, str)]

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
