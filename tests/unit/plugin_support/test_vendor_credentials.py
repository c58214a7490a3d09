"""plugin_support.redaction.Redactor with a vendor's own credential pattern (Braze's echo)."""

from __future__ import annotations

from plugin_support.redaction import Redactor
from target_braze.braze_rules import ECHOED_KEY

KEY = "b1e2c3d4-0000-1111-2222-333344445555"


def test_a_key_the_vendor_echoes_is_masked_even_when_it_is_not_the_configured_one() -> None:
    redact = Redactor([KEY], [ECHOED_KEY])
    answer = 'The API key "other-instance-key-1234" is invalid; yours: ' + KEY
    assert redact(answer) == 'The API key "***" is invalid; yours: ***'


def test_without_the_pattern_only_the_secrets_are_masked() -> None:
    assert Redactor([KEY])('api key "other-instance-key-1234"') == \
        'api key "other-instance-key-1234"'
