"""Personal data kept out of what aimass stores: the values of a model's personal (`pii`) features are
erased or tokenised wherever requests and rows are written (capture, rejected batch rows, and so the
monitor's statistics of them); the model itself still sees the raw values (docs/privacy.md).

A token is `tok:` and the first 24 hex digits (96 bits) of HMAC-SHA256 of the value under the stack's
key: the same value gives the same token under one key (counts, joins and distinct values still
work), and nobody without the key can test a guessed value against it, as they could against a plain
hash of a phone number or a birth date. The key is `AIMASS_PII_KEY` (hex or text), else the Secrets
Manager secret named by `AIMASS_PII_KEY_SECRET` (the template's PiiKeySecret), read once per
container and only when a token is first made.

Powertools' data masking (aws_lambda_powertools.utilities.data_masking) is not used: its `erase`
replaces values by "*****" over JSONPath-selected fields, which this module does in a dict
comprehension without the dependency, and it has no keyed hash to tokenise with (its `encrypt` needs
a KMS call per value and gives a different ciphertext each time, so equal values do not match).
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aimass.contracts.quality import PiiProtection, QualityPolicy
from aimass.contracts.registry import Signature

log = logging.getLogger(__name__)

ERASED = "[erased]"
TOKEN_PREFIX = "tok:"
TOKEN_HEX_DIGITS = 24
# A rejected row's reason about a personal feature: its message may quote the value.
WITHHELD = "the value of a personal feature; not kept"


def personal_features(signature: Signature, policy: QualityPolicy | None = None) -> frozenset[str]:
    """The version's features that are personal: marked so in its signature, or by the model's policy."""
    names = {f.name for f in signature.features or []}
    marked = {f.name for f in signature.features or [] if f.pii}
    return frozenset(marked | (names & set(policy.pii_features if policy is not None else ())))


def _canonical(value: Any) -> bytes:
    """A value as one text for every way it is written: 42, 42.0 and a float32 read back are one
    number; strings, numbers and booleans never the same text. (Typed prefixes rather than JSON: a
    third of the cost of a token.)"""
    if isinstance(value, bool):
        return b"b:true" if value else b"b:false"
    if isinstance(value, float):
        if not value.is_integer():
            return b"n:" + repr(value).encode()
        value = int(value)
    if isinstance(value, int):
        return b"n:" + str(value).encode()
    if isinstance(value, str):
        return b"s:" + value.encode()
    return b"j:" + json.dumps(value, separators=(",", ":"), sort_keys=True, default=str).encode()


def token(key: bytes, value: Any) -> str:
    # hmac.digest: OpenSSL's one-shot HMAC, several times faster than an hmac.new object per value
    digest = hmac.digest(key, _canonical(value), "sha256").hex()
    return TOKEN_PREFIX + digest[:TOKEN_HEX_DIGITS]


@dataclass(eq=False)  # one per version and policy, shared: compared (and hashed) by identity
class Masker:
    """What a stored copy of a version's rows holds of its personal features. A missing value (None)
    stays missing: completeness is not personal. The key is asked for when the first token is made."""

    personal: frozenset[str]
    mode: PiiProtection = "erase"
    # Personal features of a numeric type: a CSV cell's text "41.5" is tokenised as the number the
    # model sees, so a file's rows and the API's requests give one token for one value.
    numeric: frozenset[str] = frozenset()
    key_source: Callable[[], bytes] | None = None
    _key: bytes | None = field(default=None, repr=False)
    _asked: bool = field(default=False, repr=False)

    @property
    def active(self) -> bool:
        return bool(self.personal)

    def value(self, value: Any) -> Any:
        if value is None:
            return None
        if self.mode == "erase":
            return ERASED
        if not self._asked:
            self._key, self._asked = self._read_key(), True
        return ERASED if self._key is None else token(self._key, value)

    def _read_key(self) -> bytes | None:
        """The key; None (values erased instead: never a raw value) when it cannot be had."""
        try:
            if self.key_source is None:
                raise LookupError("no key source")
            return self.key_source()
        except Exception as error:  # a missing setting, a secret that cannot be read
            log.error(
                "personal values are erased, not tokenised: no key (%s: %s)", type(error).__name__, error
            )
            return None

    def field(self, name: str, value: Any) -> Any:
        """A value of the named feature (or column) as stored."""
        if name not in self.personal:
            return value
        if name in self.numeric and isinstance(value, str):
            with contextlib.suppress(ValueError):  # not a number: tokenised as the text it is
                value = float(value)
        return self.value(value)

    def record(self, record: Any, features: list[str]) -> Any:
        """A record as read from a file, as stored: an object's personal fields masked, a row of the
        features' values in order likewise; anything else (a line that could not be read) erased
        whole, since which of its text is personal cannot be told."""
        if not self.personal:
            return record
        if isinstance(record, dict):
            return self.row(record)
        if isinstance(record, list) and len(record) == len(features):
            return [self.field(name, v) for name, v in zip(features, record, strict=True)]
        return ERASED

    def row(self, row: dict[str, Any]) -> dict[str, Any]:
        """A row keyed by feature (or column) name, its personal values masked (a new dict)."""
        if not self.personal:
            return row
        return {k: self.field(k, v) if k in self.personal else v for k, v in row.items()}

    def rows(self, rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        return [self.row(r) for r in rows]


NO_MASK = Masker(frozenset())


def masker(
    signature: Signature, policy: QualityPolicy | None, key_source: Callable[[], bytes] | None
) -> Masker:
    personal = personal_features(signature, policy)
    if not personal:
        return NO_MASK
    numeric = frozenset(f.name for f in signature.features or [] if f.dtype in ("float", "int")) & personal
    return Masker(personal, policy.pii if policy is not None else "erase", numeric, key_source)


def key_from_text(text: str) -> bytes:
    """A key as given in a setting or a secret: hex digits as their bytes, any other text as UTF-8."""
    text = text.strip()
    try:
        return bytes.fromhex(text)
    except ValueError:
        return text.encode()
