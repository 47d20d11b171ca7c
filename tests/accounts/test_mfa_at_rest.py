"""MFA secrets are sealed under the master keys and never shown, and they follow a key rotation."""

from __future__ import annotations

import io
import json

import pytest
from allauth.mfa.models import Authenticator
from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret, hotp_value
from django.conf import settings as django_settings
from django.core.management import call_command

from tests import factories
from tests.support.secret_watch import WATCH

pytestmark = pytest.mark.django_db


def test_a_totp_secret_is_sealed_at_rest_and_still_verifies():
    person = factories.make_user()
    secret = generate_totp_secret()
    WATCH.register(secret)
    totp = TOTP.activate(person, secret)
    stored = Authenticator.objects.get(pk=totp.instance.pk).data["secret"]
    assert stored.startswith("ak1:testA:")
    assert secret not in json.dumps(Authenticator.objects.get(pk=totp.instance.pk).data)
    import time

    code = format(hotp_value(secret, int(time.time()) // 30), "06d")
    assert TOTP(Authenticator.objects.get(pk=totp.instance.pk)).validate_code(code)


def test_the_admin_never_shows_mfa_material(console_client):
    person = factories.make_user()
    secret = generate_totp_secret()
    WATCH.register(secret)
    authenticator = TOTP.activate(person, secret).instance
    sealed = Authenticator.objects.get(pk=authenticator.pk).data["secret"]
    page = console_client.get(f"/admin/mfa/authenticator/{authenticator.pk}/change/").content.decode()
    assert person.email in page
    assert secret not in page
    assert sealed.split(":")[2][:20] not in page


def test_rotating_the_master_key_reseals_mfa_secrets(settings):
    person = factories.make_user()
    secret = generate_totp_secret()
    WATCH.register(secret)
    authenticator = TOTP.activate(person, secret).instance
    settings.AGENTKEY_MASTER_KEYS = f"{django_settings.TEST_MASTER_KEY_B},{django_settings.TEST_MASTER_KEY_A}"
    out = io.StringIO()
    call_command("rotate_master_key", "--json", stdout=out)
    report = json.loads(out.getvalue())
    assert report["mfa_secrets_resealed"] == 1
    assert report["retirable_keys"] == ["testA"]
    settings.AGENTKEY_MASTER_KEYS = django_settings.TEST_MASTER_KEY_B
    row = Authenticator.objects.get(pk=authenticator.pk)
    assert row.data["secret"].startswith("ak1:testB:")
    import time

    code = format(hotp_value(secret, int(time.time()) // 30), "06d")
    assert TOTP(row).validate_code(code)


@pytest.fixture
def console_client(admin_client_for):
    return admin_client_for()
