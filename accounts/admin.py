"""The operator console for people, organizations and agents (toolkit: accounts.admin_kit)."""

from __future__ import annotations

import uuid
from typing import Any, cast

from allauth.account.models import EmailAddress
from allauth.mfa.models import Authenticator
from django import forms
from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path
from django.utils import timezone

from accounts.admin_kit import (
    ISSUED_KEY_ATTR,
    REFUSED,
    OrgScopedAdmin,
    ReadOnlyInline,
    ServiceAdmin,
    ServiceForm,
    UserAdminBase,
    UserChangeFormBase,
    UserCreationFormBase,
    actor_for,
    admin_user,
    as_text,
    grace,
    is_staff,
    operator_for,
    report,
)
from accounts.models import Agent, AgentKey, Membership, Organization, Role, User
from accounts.permissions import Capability
from accounts.services import (
    agent_create,
    agent_key_rotate,
    agent_reactivate,
    agent_suspend,
    membership_add,
    org_create,
    user_password_changed,
    user_save,
)
from agentkey.core.admin import FilterLookupsOnly

# --- users ---------------------------------------------------------------------------------------


class UserCreationForm(UserCreationFormBase):
    class Meta:
        model = User
        fields = ("email",)

    def clean_email(self) -> str:
        email = User.objects.normalize_email(self.cleaned_data["email"])
        if User.objects.filter(email__iexact=email).exists():
            raise ValidationError("A user with this email address already exists.")
        return email


class UserEditForm(UserChangeFormBase):
    class Meta:
        model = User
        fields = "__all__"


class UserMembershipInline(ReadOnlyInline):
    model = Membership
    fk_name = "user"
    fields = ("org", "role", "created_at")
    verbose_name_plural = "Organizations"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Membership]:
        return super().get_queryset(request).select_related("org")


@admin.register(User)
class UserAdmin(FilterLookupsOnly, UserAdminBase):
    """People sign in with their email address; roles live on memberships."""

    form = UserEditForm
    add_form = UserCreationForm
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Personal info", {"fields": ("name",)}),
        # Roles live on memberships; Django's groups and model permissions are not used.
        ("Permissions", {"fields": ("is_active", "is_staff", "is_superuser")}),
        ("Important dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = (
        (None, {"classes": ("wide",), "fields": ("email", "usable_password", "password1", "password2")}),
    )
    readonly_fields = ("last_login", "date_joined")
    list_display = ("email", "name", "is_staff", "is_superuser", "is_active", "last_login")
    list_filter = ("is_staff", "is_superuser", "is_active")
    search_fields = ("email", "name")
    ordering = ("email",)
    inlines = (UserMembershipInline,)

    def get_inlines(self, request: HttpRequest, obj: User | None) -> Any:
        return self.inlines if obj is not None else ()

    def has_delete_permission(self, request: HttpRequest, obj: User | None = None) -> bool:
        # Deleting a person would drop their memberships without an audit event and
        # orphan what they decided; deactivate them instead.
        return False

    def save_model(self, request: HttpRequest, obj: User, form: Any, change: bool) -> None:
        user_save(user=obj, actor=operator_for(request), fields=list(form.changed_data))

    def user_change_password(self, request: HttpRequest, id: str, form_url: str = "") -> HttpResponse:
        with transaction.atomic():
            response = super().user_change_password(request, id, form_url)
            if request.method == "POST" and response.status_code == 302:
                user = self.get_object(request, unquote(id))
                if user is not None:
                    user_password_changed(user=user, actor=operator_for(request))
        return response


# --- organizations and members -------------------------------------------------------------------


def _user_by_email(value: str) -> User:
    user = User.objects.filter(email__iexact=value.strip()).first()
    if user is None:
        raise ValidationError("No account uses this email address. The person signs up first.")
    return user


class OrganizationAddForm(ServiceForm):
    owner_email = forms.EmailField(
        required=False,
        label="Owner's email",
        help_text="Optional: an existing account that becomes its owner.",
    )

    def clean_owner_email(self) -> User | None:
        value = self.cleaned_data.get("owner_email") or ""
        return _user_by_email(value) if value else None


class OrganizationMembershipInline(ReadOnlyInline):
    model = Membership
    fields = ("user", "role", "created_at")
    verbose_name_plural = "Members"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Membership]:
        return super().get_queryset(request).select_related("user")


@admin.register(Organization)
class OrganizationAdmin(ServiceAdmin[Organization]):
    org_field = "id"
    add_form = OrganizationAddForm
    add_fields = ("name", "owner_email")
    change_fields = ("id", "name", "slug", "created_at")
    list_display = ("name", "slug", "id", "created_at")
    search_fields = ("name", "slug")
    ordering = ("name",)
    inlines = (OrganizationMembershipInline,)

    def org_id_of(self, obj: Organization) -> uuid.UUID:
        return obj.id

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Creating an organization is an operator's job, outside any organization.
        return is_staff(request) and admin_user(request).is_superuser

    def save_model(self, request: HttpRequest, obj: Organization, form: Any, change: Any) -> None:
        data = form.cleaned_data
        org = org_create(name=data["name"], actor=operator_for(request), owner=data.get("owner_email"))
        self.adopt(obj, org)


class MembershipAddForm(ServiceForm):
    email = forms.EmailField(help_text="The email address of an existing account.")

    def clean_email(self) -> User:
        return _user_by_email(self.cleaned_data["email"])


@admin.register(Membership)
class MembershipAdmin(ServiceAdmin[Membership]):
    add_capability = Capability.MANAGE_MEMBERS
    add_form = MembershipAddForm
    add_fields = ("org", "email", "role")
    change_fields = ("org", "user", "role", "created_at")
    list_display = ("user", "org", "role", "created_at")
    list_select_related = ("user", "org")
    list_filter = ("role", ("org", admin.RelatedOnlyFieldListFilter))
    search_fields = ("user__email", "org__name")
    ordering = ("org__name", "user__email")

    def describe(self, obj: Membership) -> str:
        return f"{obj.user.email} ({obj.role})"

    def save_model(self, request: HttpRequest, obj: Membership, form: Any, change: Any) -> None:
        data = form.cleaned_data
        org = data["org"]
        membership = membership_add(
            org=org, user=data["email"], role=Role(data["role"]), actor=actor_for(request, org.id)
        )
        self.adopt(obj, membership)


# --- agents and their keys -----------------------------------------------------------------------


def key_state(key: AgentKey) -> str:
    if key.revoked_at is not None:
        return "revoked"
    return "live" if key.is_live() else "expired"


class AgentKeyInline(ReadOnlyInline):
    model = AgentKey
    fields = ("prefix", "state", "created_at", "expires_at", "revoked_at")
    ordering = ("-created_at",)
    verbose_name_plural = "Keys (only a prefix is kept; the key itself was shown once)"

    @admin.display(description="state")
    def state(self, obj: AgentKey) -> str:
        return key_state(obj)


class RotateKeyForm(forms.Form):
    grace = forms.ChoiceField(
        label="Old key keeps working for",
        choices=[("none", "No grace: it stops now"), ("1h", "1 hour"), ("1d", "1 day"), ("7d", "7 days")],
        initial="none",
        help_text="A grace period lets you deploy the new key before the old one stops.",
    )


@admin.register(Agent)
class AgentAdmin(ServiceAdmin[Agent]):
    add_capability = Capability.MANAGE_AGENTS
    add_fields = ("org", "name", "description")
    change_fields = (
        "id",
        "org",
        "name",
        "description",
        "status",
        "status_changed_at",
        "created_by",
        "created_at",
    )
    list_display = ("name", "org", "status", "created_by", "created_at", "status_changed_at")
    list_select_related = ("org", "created_by")
    list_filter = ("status", ("org", admin.RelatedOnlyFieldListFilter))
    search_fields = ("name", "description")
    ordering = ("-created_at",)
    inlines = (AgentKeyInline,)
    actions = ("suspend_selected", "reactivate_selected")

    def has_manage_permission(self, request: HttpRequest) -> bool:
        return self.allowed(request, Capability.MANAGE_AGENTS)

    def save_model(self, request: HttpRequest, obj: Agent, form: Any, change: Any) -> None:
        data = form.cleaned_data
        org = data["org"]
        issued = agent_create(
            org=org,
            name=data["name"],
            description=as_text(data["description"]),
            actor=actor_for(request, org.id),
        )
        self.adopt(obj, issued.agent)
        # Handed to response_add on the request object only: the key is never stored.
        setattr(request, ISSUED_KEY_ATTR, issued.key.plaintext)

    def response_add(
        self, request: HttpRequest, obj: Agent, post_url_continue: str | None = None
    ) -> HttpResponse:
        plaintext = cast("str | None", getattr(request, ISSUED_KEY_ATTR, None))
        if plaintext is None:
            return super().response_add(request, obj, post_url_continue)
        return self.key_page(request, obj, plaintext, title=f"Agent “{obj.name}” created")

    def key_page(
        self, request: HttpRequest, agent: Agent, plaintext: str, *, title: str, old_keys: str = ""
    ) -> TemplateResponse:
        """The one time an agent key is shown. Admin views are never cached (admin_view)."""
        context = {
            **self.admin_site.each_context(request),
            "title": title,
            "opts": self.opts,
            "original": agent,
            "change_url": self.change_url(agent),
            "api_key": plaintext,
            "old_keys": old_keys,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/accounts/agent/key_issued.html", context)

    def render_change_form(  # noqa: PLR0917 (Django's signature)
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Agent | None = None,
    ) -> HttpResponse:
        context["can_rotate_key"] = obj is not None and self.allowed(request, Capability.MANAGE_AGENTS, obj)
        return super().render_change_form(request, context, add, change, form_url, obj)

    def get_urls(self) -> list[URLPattern]:
        rotate = path(
            "<path:object_id>/rotate-key/",
            self.admin_site.admin_view(self.rotate_key_view),
            name="accounts_agent_rotate_key",
        )
        return [rotate, *super().get_urls()]

    def rotate_key_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        if not self.has_manage_permission(request):
            raise PermissionDenied
        agent = self.object_or_redirect(request, object_id)
        if isinstance(agent, HttpResponseRedirect):
            return agent
        form = RotateKeyForm(request.POST if request.method == "POST" else None)
        if form.is_bound and form.is_valid():
            keep = grace(form.cleaned_data["grace"])
            try:
                issued = agent_key_rotate(agent=agent, actor=actor_for(request, agent.org_id), grace=keep)
            except REFUSED as exc:
                report(request, exc)
            else:
                end = issued.previous_keys_end
                old_keys = (
                    f"keeps working until {timezone.localtime(end):%Y-%m-%d %H:%M %Z}"
                    if keep and end is not None
                    else "stopped working just now"
                )
                return self.key_page(
                    request, agent, issued.plaintext, title=f"New key for “{agent.name}”", old_keys=old_keys
                )
        return self.object_page(
            request,
            agent,
            title=f"Rotate the key of “{agent.name}”",
            intro="A new key is issued and shown once. The agent's current key stops working now, "
            "or at the end of the grace period.",
            form=form,
            submit="Rotate key",
        )

    @admin.action(description="Suspend selected agents", permissions=["manage"])
    def suspend_selected(self, request: HttpRequest, queryset: QuerySet[Agent]) -> None:
        agents = self.selection(request, queryset)
        self.apply_each(
            request,
            agents,
            lambda agent, actor: agent_suspend(agent=agent, actor=actor),
            done="Suspended {count} agent(s). Their keys are refused until they are reactivated.",
        )

    @admin.action(description="Reactivate selected agents", permissions=["manage"])
    def reactivate_selected(self, request: HttpRequest, queryset: QuerySet[Agent]) -> None:
        agents = self.selection(request, queryset)
        self.apply_each(
            request,
            agents,
            lambda agent, actor: agent_reactivate(agent=agent, actor=actor),
            done="Reactivated {count} agent(s).",
        )


@admin.register(AgentKey)
class AgentKeyAdmin(OrgScopedAdmin[AgentKey]):
    """Read-only. Only the prefix is shown: the key was shown once, its hash never is."""

    org_field = "agent__org_id"
    change_fields = ("id", "agent", "prefix", "state", "created_at", "expires_at", "revoked_at")
    list_display = ("prefix", "agent", "agent_org", "state", "created_at", "expires_at", "revoked_at")
    list_select_related = ("agent", "agent__org")
    list_filter = (("agent__org", admin.RelatedOnlyFieldListFilter),)
    search_fields = ("prefix", "agent__name")
    ordering = ("-created_at",)

    def org_id_of(self, obj: AgentKey) -> uuid.UUID:
        return obj.agent.org_id

    def get_queryset(self, request: HttpRequest) -> QuerySet[AgentKey]:
        return super().get_queryset(request).defer("key_hash")

    @admin.display(description="state")
    def state(self, obj: AgentKey) -> str:
        return key_state(obj)

    @admin.display(description="organization", ordering="agent__org__name")
    def agent_org(self, obj: AgentKey) -> str:
        return obj.agent.org.name


# --- allauth's models: replace its admins with read-only ones -------------------------------------
# allauth's Authenticator admin shows the ``data`` JSON (the sealed TOTP key, recovery seed);
# operators need to see that someone has MFA, never its material.

admin.site.unregister(Authenticator)
admin.site.unregister(EmailAddress)


@admin.register(Authenticator)
class AuthenticatorAdmin(FilterLookupsOnly, admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("user", "type", "created_at", "last_used_at")
    list_filter = ("type",)
    list_select_related = ("user",)
    fields = ("user", "type", "created_at", "last_used_at")
    readonly_fields = fields
    search_fields = ("user__email",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Deleting an authenticator resets someone's MFA: not from here, and never unaudited.
        return False


@admin.register(EmailAddress)
class EmailAddressAdmin(FilterLookupsOnly, admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("email", "user", "primary", "verified")
    list_filter = ("primary", "verified")
    list_select_related = ("user",)
    fields = ("email", "user", "primary", "verified")
    readonly_fields = fields
    search_fields = ("email", "user__email")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


# Roles live on memberships; Django's groups and model permissions are not used.
admin.site.unregister(Group)
